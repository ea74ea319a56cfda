"""The one base of every typed config: strict and frozen.

Strict, because a misspelt key silently ignored is a setting silently not applied; frozen,
because a config is saved beside its results and hashed. Where a config names its keys for
people (``unknown_key``), a misspelt one is answered with the nearest valid name; otherwise
pydantic's own "extra inputs" error reaches the caller's formatter (the study config's
names the dotted key).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator

from eeg2bold.errors import did_you_mean


class StrictConfig(BaseModel):
    """Strict, frozen config; set ``unknown_key`` (e.g. "option") to answer a misspelt key
    with the nearest valid one and the list of valid keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    unknown_key: ClassVar[str | None] = None

    @model_validator(mode="before")
    @classmethod
    def _suggest_names(cls, data: Any) -> Any:
        if cls.unknown_key and isinstance(data, dict):
            known = list(cls.model_fields)
            for key in data:
                if key not in known:
                    hint = did_you_mean(str(key), known)
                    raise ValueError(
                        f"unknown {cls.unknown_key} {key!r}{hint} (valid: {', '.join(known)})"
                    )
        return data

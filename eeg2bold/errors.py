"""Errors a user can act on.

Anything raised as an :class:`Eeg2BoldError` is printed by the CLI as one line (no traceback
unless ``--debug``): the message must name the file or run and the problem.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any


class Eeg2BoldError(Exception):
    """Base class for errors caused by input or configuration, not by a bug."""


class DatasetError(Eeg2BoldError):
    """A dataset store is missing, not a dataset, corrupt, or incompatible with a request."""


class RunValidationError(DatasetError):
    """A run was refused before it was stored; the store is unchanged."""


class ConfigError(Eeg2BoldError):
    """A configuration value is invalid."""


class Eeg2BoldWarning(UserWarning):
    """Something a user should know that does not stop the work; the CLI prints it as one
    ``eeg2bold: warning: …`` line."""


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the nearest of ``known`` to a mistyped ``name``, or ''
    (one wording for every unknown name a user can type)."""
    near = difflib.get_close_matches(str(name), list(known), n=1)
    return f" (did you mean {near[0]!r}?)" if near else ""


def invalid_options(
    exc: Any, *, names: Mapping[str, str] | None = None, prefix: str = "invalid option(s): "
) -> str:
    """A pydantic ``ValidationError`` as one line: 'invalid option(s): section.option: problem;
    ...'; ``names`` renames a location's leading part (``"train.loss"`` or a field name, e.g.
    to the flag that sets it)."""
    renames = sorted((names or {}).items(), key=lambda kv: -len(kv[0]))
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        for old, new in renames:
            if loc == old or loc.startswith(old + "."):
                loc = new + loc[len(old) :]
                break
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return prefix + "; ".join(parts)

"""Channel typing and selection: which channels of a recording are stored, and which are bad.

Decided from the header alone, so the engine can agree on one channel list across runs before
any signal is read. Every channel the user names must exist; otherwise the run is refused with
the file and the unknown names (and the nearest existing ones).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import mne

from eeg2bold.errors import did_you_mean
from eeg2bold.ingest.config import ChannelConfig
from eeg2bold.ingest.errors import IngestError

#: Stored channel types; "cwl" (carbon-wire loops) is carried as MNE "misc".
MNE_TYPE = {"eeg": "eeg", "eog": "eog", "ecg": "ecg", "emg": "emg", "cwl": "misc", "misc": "misc"}


@dataclass(frozen=True, kw_only=True)
class ChannelPlan:
    """The outcome of the channel rules for one recording (channels in file order)."""

    keep: tuple[str, ...]
    types: dict[str, str]
    bads: tuple[str, ...]
    dropped: dict[str, str] = field(default_factory=dict)

    def record(self) -> dict[str, object]:
        return {
            "kept": len(self.keep),
            "types": {t: sum(1 for v in self.types.values() if v == t) for t in MNE_TYPE},
            "bads": list(self.bads),
            "dropped": dict(self.dropped),
        }


def classify(raw: mne.io.BaseRaw, *, patterns: dict[str, str]) -> dict[str, str]:
    """Type of every channel: the file's own type, or a name rule for channels typed EEG."""
    compiled = [(kind, re.compile(p, re.IGNORECASE)) for kind, p in patterns.items()]
    out = {}
    for name, file_type in zip(raw.ch_names, raw.get_channel_types(), strict=True):
        if file_type == "eeg":
            kind = next((k for k, rx in compiled if rx.search(name)), "eeg")
        elif file_type in ("eog", "ecg", "emg", "stim"):
            kind = file_type
        else:
            kind = "misc"
        out[name] = kind
    return out


def plan_channels(
    raw: mne.io.BaseRaw,
    *,
    config: ChannelConfig,
    path: Path,
    reference: Sequence[str] = (),
) -> ChannelPlan:
    """Apply the channel rules of ``config`` to one recording's header."""
    names = list(raw.ch_names)
    for option, named in (
        ("include", config.include or ()),
        ("exclude", config.exclude),
        ("bad_channels", config.bad_channels),
        ("reference", reference),
    ):
        _require(named, names, option=option, path=path)
    types = classify(raw, patterns=config.type_patterns)
    dropped: dict[str, str] = {}
    if config.include is not None:
        keep = list(config.include)
        dropped.update({n: "not in include" for n in names if n not in config.include})
    else:
        keep = []
        for name in names:
            kind = types[name]
            if name in config.exclude:
                dropped[name] = "excluded"
            elif kind == "eeg" or kind in config.keep_types:
                keep.append(name)
            else:
                dropped[name] = f"type {kind}"
    kept = set(keep)
    bads = [n for n in names if n in kept and (n in raw.info["bads"] or n in config.bad_channels)]
    if config.bads == "drop":
        for name in bads:
            dropped[name] = "bad"
        keep = [n for n in keep if n not in bads]
    for name in reference:
        if name not in keep or types[name] != "eeg":
            raise IngestError(
                f"{path}: reference channel {name!r} is not a kept EEG channel "
                f"({dropped.get(name, 'type ' + types[name])})"
            )
    if not any(types[n] == "eeg" for n in keep):
        raise IngestError(f"{path}: no EEG channel left after the channel rules")
    return ChannelPlan(
        keep=tuple(keep),
        types={n: types[n] for n in keep},
        bads=tuple(bads),
        dropped=dropped,
    )


def _require(named: Sequence[str], names: list[str], *, option: str, path: Path) -> None:
    missing = [n for n in named if n not in names]
    if not missing:
        return
    hints = []
    for name in missing:
        hints.append(f"{name!r}{did_you_mean(name, names)}")
    raise IngestError(
        f"{path}: unknown channel(s) in {option}: {', '.join(hints)}; the recording has "
        f"{len(names)} channels: {_preview(names)}"
    )


def _preview(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... (+{len(names) - limit})" if len(names) > limit else "")

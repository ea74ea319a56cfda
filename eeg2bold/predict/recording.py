"""A new recording, made to look like the training data: channels, sampling rate, units and
exactly the preprocessing the training dataset records.

For ingested training data the dataset's ``preprocessing`` attrs hold the whole
:class:`~eeg2bold.ingest.IngestConfig`; the same :func:`~eeg2bold.ingest.preprocess.preprocess_eeg`
runs with it on the model's channels (resampling, notch, band-pass, montage, bad channels,
re-reference, float32 microvolts), so a recording goes through the very code its training
data went through. Simulated training data record no preprocessing: the recording's sampling
rate must then equal the model's, and only the conversion to the training units is applied.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eeg2bold.errors import Eeg2BoldError
from eeg2bold.ingest.channels import ChannelPlan, classify
from eeg2bold.ingest.config import IngestConfig
from eeg2bold.ingest.preprocess import preprocess_eeg
from eeg2bold.ingest.readers import read_eeg
from eeg2bold.ingest.specs import EEGFormat, EEGSource, MatOptions, eeg_format
from eeg2bold.predict.models import ModelSet, PredictError, normaliser_scale

#: Scale from volts (what the readers return) to a dataset's EEG units.
UNIT_FROM_VOLTS = {"V": 1.0, "mV": 1e3, "uV": 1e6, "µV": 1e6}
#: A recording whose median channel SD differs from the training data's by more than this
#: factor is refused (a header with the wrong units, say); ``check_amplitude=False`` skips it.
AMPLITUDE_FACTOR = 100.0


@dataclass
class Recording:
    """EEG ready for the model: float32 [n_channels, n_samples] in the model's channel order
    and units, at the model's sampling rate; sample 0 is 0 s on the recording's clock."""

    path: str
    eeg: np.ndarray
    sfreq: float
    channels: tuple[str, ...]
    units: str
    steps: list[dict[str, Any]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return self.eeg.shape[1] / self.sfreq


def read_recording(
    path: str | Path,
    *,
    models: ModelSet,
    fmt: EEGFormat | None = None,
    mat: MatOptions | None = None,
    bad_channels: Sequence[str] = (),
    preprocess: bool = True,
    check_amplitude: bool = True,
    echo: Callable[[str], None] | None = None,
) -> Recording:
    """Read ``path`` and bring it to the model's channels, rate, units and preprocessing.

    ``preprocess=False`` takes the recording as already preprocessed like the training data
    (only channel selection and unit conversion). ``bad_channels`` are treated as the file's
    own bad marks (interpolated when the training data interpolated bad channels).
    """
    path = Path(path)
    say = echo or (lambda _msg: None)
    fmt = fmt or eeg_format(path)
    if fmt is None:
        raise PredictError(
            f"{path}: unknown EEG format (expected .set, .vhdr, .edf, .bdf, .fif, .mat; or "
            "give the format)"
        )
    if fmt == "bids":
        raise PredictError(f"{path}: give the BIDS recording's EEG file itself (e.g. its .vhdr)")
    if fmt == "mat" and mat is None:
        raise PredictError(f"{path}: MATLAB EEG needs a variable name and a sampling rate")
    log: list[str] = []
    raw = read_eeg(EEGSource(path=path, format=fmt, mat=mat), log=log)
    needed = models.channels
    renames = case_matches(have=list(raw.ch_names), needed=needed)
    if renames:  # FZ for Fz, FFC1H for FFC1h: the same electrode, written in other case
        raw.rename_channels(renames, verbose="error")
        log.append(
            f"matched {len(renames)} channel name(s) ignoring case: "
            + _preview([f"{a} -> {b}" for a, b in renames.items()])
        )
    _check_channels(path, have=list(raw.ch_names), needed=needed)
    unknown_bads = [c for c in bad_channels if c not in needed]
    if unknown_bads:
        raise PredictError(f"{path}: bad channel(s) {unknown_bads} are not channels the model uses")
    dropped = [c for c in raw.ch_names if c not in needed]
    notes = [f"{path.name}: {m}" for m in log]
    if dropped:
        notes.append(
            f"{path.name}: dropped {len(dropped)} channel(s) the model does not use: "
            f"{_preview(dropped)}"
        )
    units = models.units
    if units not in UNIT_FROM_VOLTS:
        raise PredictError(
            f"{path}: the model was trained on EEG in {units!r}, which a recording (read in "
            "volts) cannot be converted to"
        )
    sfreq_in = float(raw.info["sfreq"])
    record = models.preprocessing
    say(
        f"reading {path.name}: {len(raw.ch_names)} channels, {raw.n_times / sfreq_in / 60:.1f} "
        f"min at {sfreq_in:g} Hz"
    )
    if record and preprocess:
        eeg, steps, more = _preprocess_as_recorded(
            raw, path=path, models=models, record=record, bad_channels=bad_channels
        )
        notes += more
    else:
        if sfreq_in != models.sfreq:
            why = (
                "the training data recorded no resampling step"
                if not record
                else "preprocessing is off (resample the recording to the model's rate)"
            )
            raise PredictError(
                f"{path}: {sfreq_in:g} Hz but the model was trained at {models.sfreq:g} Hz and "
                f"{why}"
            )
        if bad_channels:
            raise PredictError(
                f"{path}: bad channels cannot be repaired: the training data recorded no "
                "preprocessing (no montage or bad-channel rule to repeat)"
            )
        marked = [c for c in needed if c in raw.info["bads"]]
        if marked:
            notes.append(
                f"{path.name}: channel(s) {marked} marked bad in the file are used as recorded "
                "(the training data recorded no bad-channel rule)"
            )
        if record:
            notes.append(
                f"{path.name}: training preprocessing not re-applied (preprocessing off): the "
                "recording must already be preprocessed like the training data"
            )
        data = raw.get_data(picks=list(needed), verbose="error")
        if not np.isfinite(data).all():
            raise PredictError(f"{path}: EEG holds NaN or infinite samples")
        scale = UNIT_FROM_VOLTS[units]
        eeg = (data * scale).astype(np.float32)
        steps = [
            {"step": "pick", "channels": len(needed), "dropped": dropped},
            {"step": "units", "to": units, "scale": scale, "dtype": "float32"},
        ]
    recording = Recording(
        path=str(path),
        eeg=eeg,
        sfreq=models.sfreq,
        channels=needed,
        units=units,
        steps=steps,
        dropped=dropped,
        notes=notes,
    )
    if check_amplitude:
        amplitude_check(recording, models=models)
    return recording


def case_matches(*, have: Sequence[str], needed: Sequence[str]) -> dict[str, str]:
    """Recording names to rename to the model's: a needed channel absent by exact name whose
    name matches exactly one of the recording's channels when case is ignored (and that
    channel is not itself a needed one)."""
    out = {}
    for name in needed:
        if name in have:
            continue
        same = [h for h in have if h.casefold() == name.casefold() and h not in needed]
        if len(same) == 1:
            out[same[0]] = name
    return out


def _check_channels(path: Path, *, have: list[str], needed: Sequence[str]) -> None:
    missing = [c for c in needed if c not in have]
    if not missing:
        return
    near = []
    for name in missing:
        match = difflib.get_close_matches(name, have, n=1)
        if match:
            near.append(f"{name!r}: {match[0]!r}")
    hint = f" (nearest in the recording: {', '.join(near)})" if near else ""
    raise PredictError(f"recording {path} lacks channels {missing} the model needs{hint}")


def _preprocess_as_recorded(
    raw: Any,
    *,
    path: Path,
    models: ModelSet,
    record: dict[str, Any],
    bad_channels: Sequence[str],
) -> tuple[np.ndarray, list[dict[str, Any]], list[str]]:
    """The ingest preprocessing, rebuilt from the record, on the model's channels."""
    config = recorded_ingest_config(
        models, instead="preprocess the recording the same way yourself and turn preprocessing off"
    )
    sfreq_in = float(raw.info["sfreq"])
    sfreq_out = float(config.eeg.sfreq) if config.eeg.sfreq is not None else sfreq_in
    if sfreq_out != models.sfreq:
        why = (
            "the training data recorded no resampling step"
            if config.eeg.sfreq is None
            else f"the recorded resampling goes to {sfreq_out:g} Hz"
        )
        raise PredictError(
            f"{path}: {sfreq_in:g} Hz but the model was trained at {models.sfreq:g} Hz and {why}"
        )
    if models.units != "uV":
        raise PredictError(
            f"{models.source}: ingested training data in {models.units!r}, expected 'uV'"
        )
    needed = models.channels
    types = classify(raw, patterns=config.channels.type_patterns)
    marked = set(raw.info["bads"]) | set(bad_channels)
    plan = ChannelPlan(
        keep=tuple(needed),
        types={c: types[c] for c in needed},
        bads=tuple(c for c in needed if c in marked),
        dropped={c: "not used by the model" for c in raw.ch_names if c not in needed},
    )
    notes = []
    if plan.bads and config.channels.bads != "interpolate":
        notes.append(
            f"{path.name}: bad channel(s) {list(plan.bads)} kept as recorded (the training data "
            f"used bads={config.channels.bads!r}; the model needs every channel)"
        )
    result = preprocess_eeg(
        raw,
        plan=plan,
        channels=needed,
        eeg=config.eeg,
        channel_config=config.channels,
        path=path,
    )
    notes += [w for w in result.warnings[:10]]
    notes.append(f"{path.name}: preprocessing as at training: {describe_steps(result.steps)}")
    return result.data, result.steps, notes


def recorded_ingest_config(models: ModelSet, *, instead: str) -> IngestConfig:
    """The ingest config the training data's preprocessing record holds (for ``predict`` and
    the live twin to repeat), or a one-line error saying what to do ``instead``."""
    record = models.preprocessing
    if "config" not in record:
        raise PredictError(
            f"{models.source}: the training data's preprocessing record ({sorted(record)}) holds "
            f"no ingest config to repeat; {instead}"
        )
    try:
        return IngestConfig.from_record(record["config"], where="the model's preprocessing record")
    except Eeg2BoldError as exc:
        raise PredictError(f"{models.source}: {exc}") from None


def describe_steps(steps: Sequence[dict[str, Any]]) -> str:
    """A short summary of preprocessing step records (as :func:`preprocess_eeg` returns)."""
    parts = []
    for s in steps:
        kind = s.get("step")
        if kind == "resample":
            parts.append(f"resample {s['from_hz']:g}->{s['to_hz']:g} Hz")
        elif kind == "notch":
            parts.append("notch " + "/".join(f"{f:g}" for f in s["freqs"]) + " Hz")
        elif kind == "bandpass":
            lo = "-" if s.get("l_freq") is None else f"{s['l_freq']:g}"
            hi = "-" if s.get("h_freq") is None else f"{s['h_freq']:g}"
            parts.append(f"band-pass {lo}..{hi} Hz")
        elif kind == "bads" and s.get("channels"):
            parts.append(f"bad channels {s['channels']} ({s.get('mode')})")
        elif kind == "reference":
            ref = s.get("kind")
            parts.append(
                "reference " + (",".join(s["channels"]) if ref == "channels" else str(ref))
            )
    return ", ".join(parts) or "none"


def amplitude_check(recording: Recording, *, models: ModelSet) -> None:
    """Refuse EEG whose scale is far from the training data's (wrong units in a header)."""
    sd = recording.eeg.std(axis=1, dtype=np.float64)
    train = normaliser_scale(models)
    ok = (sd > 0) & (train > 0)
    if not ok.any():
        raise PredictError(f"{recording.path}: every channel the model uses is flat")
    ratio = float(np.median(sd[ok] / train[ok]))
    if not 1 / AMPLITUDE_FACTOR <= ratio <= AMPLITUDE_FACTOR:
        raise PredictError(
            f"{recording.path}: EEG amplitude is {ratio:.2g} x that of the training data "
            f"(median channel SD {np.median(sd[ok]):.3g} vs {np.median(train[ok]):.3g} "
            f"{recording.units}): wrong units in the file? (skip this check to predict anyway)"
        )


def _preview(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... (+{len(names) - limit})" if len(names) > limit else "")

"""EEG preprocessing with MNE, a channel group at a time so memory stays near one output run.

Per channel group, on float64 volts read straight from the file: resampling to the output rate
(FFT, with its anti-alias low-pass), then notch (mains and harmonics) and band-pass at that
rate — or, when upsampling, the filters first. Then, on the resampled data of all channels:
montage, bad channels (flag / interpolate), re-reference, and float32 microvolts.

Why this order is the textbook result: notch, band-pass and resampling act on each channel
alone and are linear and time-invariant (they commute within the pass band), and interpolation
and re-referencing are fixed linear combinations across channels, so they commute with the
per-channel steps. Filtering after downsampling costs a fraction of filtering at the recording
rate, and the whole recording is never held in float64. Every step and its parameters are
returned for provenance.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import mne
import numpy as np

from eeg2bold.ingest.channels import MNE_TYPE, ChannelPlan
from eeg2bold.ingest.config import ChannelConfig, EEGConfig
from eeg2bold.ingest.errors import IngestError

DEFAULT_MONTAGE = "spherical_1005"
DEFAULT_GROUP = 16
_NOTCH_MARGIN_HZ = 2.0


@dataclass(kw_only=True)
class EEGResult:
    """Preprocessed EEG: float32 microvolts [n_channels, n_samples] at ``sfreq``."""

    data: np.ndarray
    channels: tuple[str, ...]
    sfreq: float
    bad_channels: list[str]
    steps: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)


def notch_frequencies(line_freq: float | None, *, sfreq_in: float, sfreq_out: float) -> list[float]:
    """Mains frequency and harmonics below both Nyquist frequencies (with a margin).

    Harmonics above the output Nyquist frequency are removed by the resampling filter anyway.
    """
    if line_freq is None:
        return []
    limit = min(sfreq_in, sfreq_out) / 2 - _NOTCH_MARGIN_HZ
    return [line_freq * k for k in range(1, int(limit // line_freq) + 1)]


def preprocess_eeg(
    raw: mne.io.BaseRaw,
    *,
    plan: ChannelPlan,
    channels: Sequence[str],
    eeg: EEGConfig,
    channel_config: ChannelConfig,
    path: Path,
    samples: tuple[int, int] | None = None,
    group_size: int = DEFAULT_GROUP,
) -> EEGResult:
    """Preprocess the ``channels`` of ``raw`` (a subset of ``plan.keep``, in storage order)."""
    sfreq_in = float(raw.info["sfreq"])
    sfreq_out = float(eeg.sfreq) if eeg.sfreq is not None else sfreq_in
    start, stop = samples if samples is not None else (0, raw.n_times)
    if eeg.h_freq is not None and eeg.h_freq >= sfreq_in / 2:
        raise IngestError(
            f"{path}: h_freq {eeg.h_freq:g} Hz is not below the recording's Nyquist frequency "
            f"({sfreq_in / 2:g} Hz)"
        )
    if eeg.l_freq is not None and eeg.l_freq >= sfreq_in / 2:
        raise IngestError(f"{path}: l_freq {eeg.l_freq:g} Hz is not below the Nyquist frequency")
    ops = filter_operations(eeg, sfreq_in=sfreq_in, sfreq_out=sfreq_out)
    steps: list[dict[str, Any]] = [
        {"step": "pick", "channels": len(channels), "dropped": dict(plan.dropped)},
    ]
    if (start, stop) != (0, raw.n_times):
        steps.append(
            {
                "step": "crop",
                "start_s": start / sfreq_in,
                "stop_s": stop / sfreq_in,
                "samples": [start, stop],
            }
        )
    steps.extend(op.record for op in ops)
    log: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = _filter_groups(
            raw,
            channels=list(channels),
            start=start,
            stop=stop,
            ops=ops,
            group_size=group_size,
            path=path,
        )
        result_raw = _as_raw(out, channels=channels, types=plan.types, sfreq=sfreq_out)
        del out
        montage = _set_montage(result_raw, source=raw, montage=channel_config.montage, path=path)
        steps.append(montage)
        bads = [b for b in plan.bads if b in channels]
        result_raw.info["bads"] = list(bads)
        if bads:
            steps.append(_handle_bads(result_raw, bads=bads, mode=channel_config.bads, path=path))
        steps.append(_reference(result_raw, eeg=eeg, path=path))
    log.extend(f"{path.name}: {w.message}" for w in caught)
    data = result_raw.get_data()
    data *= 1e6
    steps.append({"step": "units", "to": "uV", "scale": 1e6, "dtype": "float32"})
    return EEGResult(
        data=data.astype(np.float32),
        channels=tuple(channels),
        sfreq=sfreq_out,
        bad_channels=list(bads),
        steps=steps,
        warnings=log,
    )


@dataclass(frozen=True)
class _Operation:
    """One per-channel filtering step: its provenance record and how to apply it."""

    record: dict[str, Any]
    apply: Callable[[np.ndarray], np.ndarray]


def filter_operations(eeg: EEGConfig, *, sfreq_in: float, sfreq_out: float) -> list[_Operation]:
    """Notch, band-pass and resampling, in the order they run.

    When downsampling, the resampling (whose own low-pass removes everything above the output
    Nyquist frequency) runs first and the notch and band-pass filters run at the output rate:
    the same pass band for a fraction of the work. Otherwise the filters run first.
    """
    ratio = Fraction(sfreq_out / sfreq_in).limit_denominator(10_000)
    down = sfreq_out < sfreq_in
    rate = sfreq_out if down else sfreq_in
    notch = notch_frequencies(eeg.line_freq, sfreq_in=sfreq_in, sfreq_out=sfreq_out)
    filters: list[_Operation] = []
    if notch:
        filters.append(
            _Operation(
                record={
                    "step": "notch",
                    "freqs": notch,
                    "at_hz": rate,
                    "method": "fir",
                    "phase": "zero",
                    "function": "mne.filter.notch_filter",
                },
                apply=lambda x: mne.filter.notch_filter(
                    x, rate, notch, copy=False, verbose="error"
                ),
            )
        )
    if eeg.l_freq is not None or eeg.h_freq is not None:
        filters.append(
            _Operation(
                record={
                    "step": "bandpass",
                    "l_freq": eeg.l_freq,
                    "h_freq": eeg.h_freq,
                    "at_hz": rate,
                    "method": "fir",
                    "phase": "zero",
                    "fir_design": "firwin",
                    "function": "mne.filter.filter_data",
                },
                apply=lambda x: mne.filter.filter_data(
                    x, rate, eeg.l_freq, eeg.h_freq, copy=False, verbose="error"
                ),
            )
        )
    if ratio == 1:
        return filters
    resample = _Operation(
        record={
            "step": "resample",
            "from_hz": sfreq_in,
            "to_hz": sfreq_out,
            "up": ratio.numerator,
            "down": ratio.denominator,
            "method": eeg.resample_method,
            "npad": "auto",
            "function": "mne.filter.resample",
        },
        # npad "auto": a fast FFT length (MNE's default of 100 can hit large prime factors)
        apply=lambda x: mne.filter.resample(
            x,
            up=ratio.numerator,
            down=ratio.denominator,
            method=eeg.resample_method,
            npad="auto",
            verbose="error",
        ),
    )
    return [resample, *filters] if down else [*filters, resample]


def _filter_groups(
    raw: mne.io.BaseRaw,
    *,
    channels: list[str],
    start: int,
    stop: int,
    ops: list[_Operation],
    group_size: int,
    path: Path,
) -> np.ndarray:
    out: np.ndarray | None = None
    for first in range(0, len(channels), max(1, group_size)):
        group = channels[first : first + group_size]
        try:
            x = raw.get_data(picks=group, start=start, stop=stop, verbose="error")
        except Exception as exc:
            raise IngestError(f"{path}: cannot read the EEG samples ({_short(exc)})") from None
        if not np.isfinite(x).all():
            raise IngestError(f"{path}: EEG holds NaN or infinite samples (channels {group})")
        for op in ops:
            x = op.apply(x)
        if out is None:
            out = np.empty((len(channels), x.shape[1]), dtype=np.float64)
        out[first : first + len(group)] = x
        del x
    assert out is not None
    return out


def _as_raw(
    data: np.ndarray, *, channels: Sequence[str], types: dict[str, str], sfreq: float
) -> mne.io.RawArray:
    ch_types = [MNE_TYPE.get(types.get(c, "eeg"), "misc") for c in channels]
    info = mne.create_info(list(channels), sfreq, ch_types)
    return mne.io.RawArray(data, info, copy=None, verbose="error")


def _file_positions(raw: mne.io.BaseRaw, names: Sequence[str]) -> mne.channels.DigMontage | None:
    """The recording's own montage if it places every named channel, else None."""
    try:
        montage = raw.get_montage()
    except Exception:
        return None
    if montage is None:
        return None
    pos = montage.get_positions()["ch_pos"]
    ok = all(n in pos and np.isfinite(pos[n]).all() and np.any(pos[n] != 0) for n in names)
    return montage if ok else None


def _set_montage(
    raw: mne.io.RawArray, *, source: mne.io.BaseRaw, montage: str, path: Path
) -> dict[str, Any]:
    eeg_names = [
        n for n, t in zip(raw.ch_names, raw.get_channel_types(), strict=True) if t == "eeg"
    ]
    if montage == "none":
        return {"step": "montage", "name": None}
    chosen: Any = None
    name = montage
    if montage in ("auto", "file"):
        chosen = _file_positions(source, eeg_names)
        name = "file"
        if chosen is None and montage == "auto":
            name = DEFAULT_MONTAGE
    if chosen is None and name != "file":
        try:
            if name in mne.channels.get_builtin_montages():
                chosen = mne.channels.make_standard_montage(name)
            elif Path(name).exists():
                chosen = mne.channels.read_custom_montage(name)
            else:
                raise IngestError(
                    f"montage {name!r} is neither an MNE built-in "
                    f"({', '.join(mne.channels.get_builtin_montages()[:6])}, ...) nor a file"
                )
        except IngestError:
            raise
        except Exception as exc:
            raise IngestError(f"{name}: cannot read montage ({_short(exc)})") from None
    if chosen is None:
        return {"step": "montage", "name": "file", "placed": 0, "unplaced": eeg_names}
    try:
        raw.set_montage(chosen, match_case=False, on_missing="ignore", verbose="error")
    except Exception as exc:
        raise IngestError(f"{path}: cannot apply montage {name!r} ({_short(exc)})") from None
    unplaced = _unplaced(raw, eeg_names)
    return {
        "step": "montage",
        "name": name,
        "placed": len(eeg_names) - len(unplaced),
        "unplaced": unplaced,
    }


def _unplaced(raw: mne.io.BaseRaw, names: Sequence[str]) -> list[str]:
    out = []
    for ch in raw.info["chs"]:
        if ch["ch_name"] in names:
            loc = ch["loc"][:3]
            if not np.isfinite(loc).all() or not np.any(loc != 0):
                out.append(ch["ch_name"])
    return out


def _handle_bads(raw: mne.io.RawArray, *, bads: list[str], mode: str, path: Path) -> dict[str, Any]:
    if mode == "flag":
        return {"step": "bads", "mode": "flag", "channels": bads}
    if mode == "interpolate":
        eeg_bads = [b for b in bads if b in _eeg_names(raw)]
        unplaced = _unplaced(raw, _eeg_names(raw))
        if set(eeg_bads) & set(unplaced):
            raise IngestError(
                f"{path}: cannot interpolate bad channel(s) {sorted(set(eeg_bads) & set(unplaced))}"
                ": no electrode position (choose a montage with --montage, or --bads flag|drop)"
            )
        try:
            raw.interpolate_bads(reset_bads=True, exclude=unplaced, verbose="error")
        except Exception as exc:
            raise IngestError(f"{path}: interpolation of {bads} failed ({_short(exc)})") from None
        return {
            "step": "bads",
            "mode": "interpolate",
            "channels": bads,
            "method": "spherical spline (mne interpolate_bads)",
        }
    return {"step": "bads", "mode": mode, "channels": bads}


def _eeg_names(raw: mne.io.BaseRaw) -> list[str]:
    return [n for n, t in zip(raw.ch_names, raw.get_channel_types(), strict=True) if t == "eeg"]


def _reference(raw: mne.io.RawArray, *, eeg: EEGConfig, path: Path) -> dict[str, Any]:
    if eeg.reference == "none":
        return {"step": "reference", "kind": "none (as recorded)"}
    ref: Any = "average" if eeg.reference == "average" else list(eeg.reference_channels())
    try:
        mne.set_eeg_reference(raw, ref, copy=False, projection=False, verbose="error")
    except Exception as exc:
        raise IngestError(f"{path}: re-referencing failed ({_short(exc)})") from None
    return {
        "step": "reference",
        "kind": "average" if ref == "average" else "channels",
        "channels": ref if ref != "average" else None,
        "excludes_bads": bool(raw.info["bads"]),
        "applies_to": "EEG channels only",
    }


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."

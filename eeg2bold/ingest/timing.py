"""Volume timing: when each fMRI volume was acquired, in seconds on the EEG clock.

Two sources: scanner markers in the EEG annotations (one per volume), or a start time plus
one TR per volume. A marker count that differs from the volume count is resolved only by an
explicit rule (:attr:`TimingConfig.mismatch`), and whatever it drops is logged and recorded.
Times here are relative to the recording's first sample; cropping shifts them
(:meth:`VolumeTiming.shifted`) and resampling leaves seconds unchanged.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mne
import numpy as np

from eeg2bold.ingest.config import TimingConfig
from eeg2bold.ingest.errors import IngestError


@dataclass(frozen=True, kw_only=True)
class VolumeTiming:
    """Onsets of the kept volumes and which BOLD volumes they are (``start:stop``)."""

    times: np.ndarray
    start: int
    stop: int
    record: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def shifted(self, offset_s: float) -> VolumeTiming:
        """The same volumes on a clock that starts ``offset_s`` later (after cropping)."""
        record = {**self.record, "crop_offset_s": float(offset_s)}
        return VolumeTiming(
            times=self.times - offset_s,
            start=self.start,
            stop=self.stop,
            record=record,
            notes=self.notes,
        )


def marker_matches(description: str, names: Sequence[str]) -> bool:
    """Exact name, or the part after the last '/' (BrainVision 'Response/R128')."""
    text = description.strip()
    tail = text.rsplit("/", 1)[-1].strip()
    return any(text == n or tail == n for n in names)


def find_markers(raw: mne.io.BaseRaw, *, names: Sequence[str]) -> np.ndarray:
    """Onsets (s from the first sample) of annotations matching ``names``, sorted."""
    ann = raw.annotations
    hits = [i for i, d in enumerate(ann.description) if marker_matches(str(d), names)]
    onsets = np.asarray(ann.onset, dtype=np.float64)[hits] - raw.first_time
    return np.sort(onsets)


def annotation_summary(raw: mne.io.BaseRaw, limit: int = 6) -> str:
    counts = Counter(str(d) for d in raw.annotations.description)
    if not counts:
        return "no annotations at all"
    common = ", ".join(f"{d!r} x{n}" for d, n in counts.most_common(limit))
    more = f", ... ({len(counts) - limit} more kinds)" if len(counts) > limit else ""
    return f"found {common}{more}"


def volume_timing(
    *,
    n_volumes: int,
    tr: float,
    config: TimingConfig,
    eeg_path: Path,
    bold_path: Path,
    eeg_duration_s: float,
    markers: np.ndarray | None = None,
    start_s: float | None = None,
    annotations_hint: str = "",
) -> VolumeTiming:
    """Place ``n_volumes`` volumes on the EEG clock, or refuse with both files named.

    ``markers`` are the matching marker onsets (source 'markers'); ``start_s`` the layout's
    onset of the first volume (source 'start', used when the config gives none).
    """
    if config.source == "start":
        start = config.start_s if config.start_s is not None else start_s
        if start is None:
            raise IngestError(
                f"{bold_path}: no onset for the first volume: give a start time (--start) "
                "or use scanner markers"
            )
        times = start + tr * np.arange(n_volumes, dtype=np.float64)
        record = {"source": "start", "start_s": float(start), "tr": tr, "n_volumes": n_volumes}
        timing = VolumeTiming(times=times, start=0, stop=n_volumes, record=record)
    else:
        timing = _from_markers(
            markers=np.asarray(markers if markers is not None else [], dtype=np.float64),
            n_volumes=n_volumes,
            tr=tr,
            config=config,
            eeg_path=eeg_path,
            bold_path=bold_path,
            annotations_hint=annotations_hint,
        )
    last = float(timing.times[-1])
    if last > eeg_duration_s:
        late = int(np.sum(timing.times > eeg_duration_s))
        if config.source == "start" and config.mismatch == "first" and late < len(timing.times):
            return _drop_late(timing, late=late, eeg_duration_s=eeg_duration_s)
        hint = " (--marker-mismatch first drops them)" if config.source == "start" else ""
        raise IngestError(
            f"{eeg_path}: EEG ends at {eeg_duration_s:.3f} s but {late} volume(s) of {bold_path} "
            f"fall after it (last at {last:.3f} s){hint}"
        )
    return timing


def _drop_late(timing: VolumeTiming, *, late: int, eeg_duration_s: float) -> VolumeTiming:
    """Rule 'first' with a start time: keep the volumes that fall inside the EEG."""
    keep = len(timing.times) - late
    note = (
        f"{late} volume(s) after the end of the EEG ({eeg_duration_s:.3f} s): rule 'first' "
        "dropped them at the end"
    )
    record = {**timing.record, "dropped_volumes": late, "kept_volumes": [0, keep], "note": note}
    return VolumeTiming(times=timing.times[:keep], start=0, stop=keep, record=record, notes=(note,))


def _from_markers(
    *,
    markers: np.ndarray,
    n_volumes: int,
    tr: float,
    config: TimingConfig,
    eeg_path: Path,
    bold_path: Path,
    annotations_hint: str,
) -> VolumeTiming:
    names = "/".join(config.markers)
    n_markers = len(markers)
    if n_markers == 0:
        hint = f" ({annotations_hint})" if annotations_hint else ""
        raise IngestError(f"{eeg_path}: no {names!r} volume markers{hint}")
    if n_markers > 1:
        steps = np.diff(markers)
        if (steps <= 0).any():
            i = int(np.argmax(steps <= 0))
            raise IngestError(
                f"{eeg_path}: two {names!r} markers at the same time ({markers[i]:.3f} s)"
            )
        spacing = float(np.median(steps))
        if abs(spacing - tr) > config.spacing_tolerance * tr:
            raise IngestError(
                f"{eeg_path}: {names!r} markers are {spacing:.4g} s apart (median), not one "
                f"TR ({tr:g} s): wrong marker name, wrong TR, or one marker per slice?"
            )
    record: dict[str, Any] = {
        "source": "markers",
        "markers": list(config.markers),
        "n_markers": n_markers,
        "n_volumes": n_volumes,
        "rule": config.mismatch,
        "tr": tr,
    }
    notes: tuple[str, ...] = ()
    if n_markers == n_volumes:
        start, stop, times = 0, n_volumes, markers
    elif config.mismatch == "error":
        more = "fewer" if n_volumes < n_markers else "more"
        raise IngestError(
            f"{bold_path}: {n_volumes} volumes ({more} than the {n_markers} {names!r} markers "
            f"in {eeg_path.name}); use --marker-mismatch first|last to align them explicitly"
        )
    else:
        k = min(n_markers, n_volumes)
        if config.mismatch == "first":
            times = markers[:k]
            start, stop = 0, k
            where = "end"
        else:
            times = markers[n_markers - k :]
            start, stop = n_volumes - k, n_volumes
            where = "start"
        drop_m, drop_v = n_markers - k, n_volumes - k
        what = f"{drop_m} marker(s)" if drop_m else f"{drop_v} volume(s)"
        note = (
            f"{n_markers} {names!r} markers vs {n_volumes} volumes: rule '{config.mismatch}' "
            f"dropped {what} at the {where}"
        )
        notes = (note,)
        record.update(dropped_markers=drop_m, dropped_volumes=drop_v, note=note)
    record.update(first_s=float(times[0]), last_s=float(times[-1]), kept_volumes=[start, stop])
    return VolumeTiming(times=np.array(times), start=start, stop=stop, record=record, notes=notes)


def crop_samples(
    timing: VolumeTiming, *, tr: float, margin_s: float | None, sfreq: float, n_samples: int
) -> tuple[int, int]:
    """Sample range [start, stop) of the EEG to keep: the scan plus a margin, or everything."""
    if margin_s is None:
        return 0, n_samples
    first = float(timing.times[0]) - margin_s
    last = float(timing.times[-1]) + tr + margin_s
    start = max(0, int(np.floor(first * sfreq)))
    stop = min(n_samples, int(np.ceil(last * sfreq)) + 1)
    return start, stop

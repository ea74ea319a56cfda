"""The table of samples a protocol splits: one row per (run, target volume) with a full window.

A sample pairs the EEG window ``[t - delay_s - window_s, t - delay_s]`` with the BOLD at volume
time ``t`` (DESIGN.md "Samples"). Its *footprint* is ``[t - delay_s - window_s, t]``: every
instant whose data the sample touches (EEG and BOLD). Splitters assign samples to blocks by
footprint, so no sample straddles two blocks. Only volume times are read to build the table.

A *common footprint* (``footprint_s`` longer than ``window_s + delay_s``) makes every sample
count as touching ``[t - footprint_s, t]``: configurations of one sweep that differ in window or
delay then keep exactly the same volumes in the same blocks, so their val and test r are
computed on the same data and can be ranked against each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from eeg2bold.errors import ConfigError, DatasetError
from eeg2bold.geometry import WindowGeometry
from eeg2bold.storage import Dataset, RunKey


@dataclass(frozen=True)
class SampleTable:
    """Every valid sample of a dataset for one (window_s, delay_s); arrays share one index."""

    window_s: float
    delay_s: float
    sfreq: float
    runs: tuple[RunKey, ...]
    subjects: tuple[str, ...]
    run_duration: np.ndarray  # [n_runs] seconds
    run_subject: np.ndarray  # [n_runs] index into subjects
    run: np.ndarray  # [N] index into runs
    volume: np.ndarray  # [N] volume index within the run
    time: np.ndarray  # [N] target time t (s, run clock)
    # [n_runs] each run's stored attributes (session, task, provenance, ...): what grouped
    # protocols read; empty for tables built by hand
    run_attrs: tuple[Mapping[str, Any], ...] = ()
    # a common footprint longer than window_s + delay_s (see the module docstring), or None
    common_footprint_s: float | None = None

    def __len__(self) -> int:
        return int(self.run.size)

    @property
    def subject(self) -> np.ndarray:
        """[N] subject index of each sample."""
        return self.run_subject[self.run]

    @property
    def geometry(self) -> WindowGeometry:
        return WindowGeometry(self.window_s, self.delay_s, self.sfreq)

    @property
    def footprint_s(self) -> float:
        """Seconds before its target time that each sample counts as touching."""
        own = self.window_s + self.delay_s
        return own if self.common_footprint_s is None else max(own, self.common_footprint_s)

    @property
    def start(self) -> np.ndarray:
        """[N] start of each sample's footprint (its EEG window's start, or earlier under a
        common footprint), seconds."""
        return self.time - self.footprint_s

    @property
    def start_sample(self) -> np.ndarray:
        """[N] first EEG sample of each window (the window reader's geometry)."""
        return self.geometry.starts(self.time)

    def of_subject(self, subject: str) -> np.ndarray:
        """Indices of every sample of ``subject``."""
        return np.flatnonzero(self.subject == self.subjects.index(subject))

    def run_attribute(self, name: str) -> tuple[str, ...]:
        """Each run's value of attribute ``name`` (a stored run attribute such as ``session``,
        or one of its provenance, such as a simulated ``site``), as text."""
        values = []
        for key, attrs in zip(self.runs, self.run_attrs or [{}] * len(self.runs), strict=True):
            value = attrs.get(name)
            if value is None:
                value = (attrs.get("provenance") or {}).get(name)
            if value is None:
                raise ConfigError(
                    f"run {key} has no attribute {name!r} (known: "
                    f"{', '.join(sorted(k for k, v in attrs.items() if v is not None)) or 'none'}"
                    f"; provenance: {', '.join(sorted(attrs.get('provenance') or {})) or 'none'})"
                )
            values.append(str(value))
        return tuple(values)


def build_sample_table(
    dataset: Dataset,
    *,
    window_s: float,
    delay_s: float = 0.0,
    footprint_s: float | None = None,
    runs: list[RunKey] | None = None,
) -> SampleTable:
    """Sample table of ``dataset`` (or of the given runs) for one window/delay setting; with
    ``footprint_s``, only volumes whose common footprint lies inside their run."""
    geometry = WindowGeometry(float(window_s), float(delay_s), dataset.info.eeg.sfreq)
    if footprint_s is not None and footprint_s < window_s + delay_s - 1e-9:
        raise ConfigError(
            f"footprint_s={footprint_s:g} s is shorter than window_s + delay_s "
            f"({window_s:g} + {delay_s:g} s)"
        )
    keys = tuple(sorted(runs if runs is not None else dataset.runs()))
    if not keys:
        raise DatasetError(f"{dataset.url}: the dataset has no runs")
    sfreq = dataset.info.eeg.sfreq
    subjects = tuple(sorted({k.subject for k in keys}))
    cols: dict[str, list[np.ndarray]] = {"run": [], "volume": [], "time": []}
    durations, run_subject, run_attrs = [], [], []
    for i, key in enumerate(keys):
        attrs = dataset.run_attrs(key)
        run_attrs.append(attrs)
        n_samples = int(attrs["n_samples"])
        times = np.asarray(dataset.array(key, "volume_times")[...], dtype=np.float64)
        valid = geometry.valid(times, n_samples)
        if footprint_s is not None:  # the same volumes whatever the window and delay
            half = 0.5 / sfreq
            valid &= (times - footprint_s >= -half) & (times <= n_samples / sfreq + half)
        ok = np.flatnonzero(valid)
        cols["run"].append(np.full(ok.size, i, dtype=np.int64))
        cols["volume"].append(ok.astype(np.int64))
        cols["time"].append(times[ok])
        durations.append(n_samples / sfreq)
        run_subject.append(subjects.index(key.subject))
    table = SampleTable(
        window_s=float(window_s),
        delay_s=float(delay_s),
        sfreq=float(sfreq),
        runs=keys,
        subjects=subjects,
        run_duration=np.asarray(durations),
        run_subject=np.asarray(run_subject, dtype=np.int64),
        run=np.concatenate(cols["run"]),
        volume=np.concatenate(cols["volume"]),
        time=np.concatenate(cols["time"]),
        run_attrs=tuple(run_attrs),
        common_footprint_s=None if footprint_s is None else float(footprint_s),
    )
    if len(table) == 0:
        raise ConfigError(
            f"no run of {dataset.url} is long enough for window_s={window_s:g} s + "
            f"delay_s={delay_s:g} s"
            + ("" if footprint_s is None else f" (footprint_s={footprint_s:g} s)")
        )
    return table

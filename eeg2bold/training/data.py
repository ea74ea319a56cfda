"""Windows → batches on the training device, with normalisation fitted on training data only.

A :class:`FoldData` holds every run a fold touches as one EEG tensor on the device (runs laid
end to end) plus a table of targets, so a batch is one ``unfold`` view and one gather: data
loading never dominates a step. Normalisation (EEG per-channel mean/scale, target z-scores)
is computed from the fold's *training* samples only and stored with the model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import Tensor

from eeg2bold.errors import ConfigError, DatasetError
from eeg2bold.geometry import COMMON_MODE, WindowGeometry, with_common_mode
from eeg2bold.models import DataSpec
from eeg2bold.protocols import Fold, SampleTable
from eeg2bold.storage import Dataset, RunData, RunKey
from eeg2bold.strict_config import StrictConfig
from eeg2bold.training.alignment import Alignment, Moments, coverage, euclidean_alignment
from eeg2bold.training.inputs import InputMap, Normaliser
from eeg2bold.training.streaming import (
    DEFAULT_CACHE_MB,
    SPAN_BATCHES,
    ChunkCache,
    ChunkedRun,
    DataPath,
    Prefetcher,
    choose_path,
    eeg_array,
)


class SampleConfig(StrictConfig):
    """How samples and targets are formed (DESIGN.md "Samples, targets and the one metric")."""

    window_s: float = Field(10.0, gt=0, le=120, description="EEG window length in seconds.")
    delay_s: float = Field(
        0.0, ge=0, le=30, description="Gap between the window's end and the BOLD target time."
    )
    footprint_s: float | None = Field(
        None,
        gt=0,
        le=150,
        description=(
            "Seconds before each target volume every sample counts as touching when the "
            "protocol cuts blocks (which volumes a block keeps, the guard gap); default "
            "window_s + delay_s. A sweep sets it to the largest window_s + delay_s its space "
            "allows, so configurations that differ in window or delay are trained, selected "
            "and tested on the same volumes."
        ),
    )
    target: Literal["seq2one", "seq2seq"] = Field(
        "seq2one",
        description="seq2one: BOLD at the volume time; seq2seq: the BOLD trace over the window.",
    )
    target_hz: float = Field(
        0.5, gt=0, le=10, description="seq2seq only: rate of the predicted BOLD trace (Hz)."
    )
    rois: tuple[str, ...] | None = Field(None, description="ROIs to predict (default: all).")
    common_mode: bool = Field(
        False,
        description="Remove the mean over ROIs from each ROI and predict it as its own output.",
    )
    align: Literal["none", "euclidean"] = Field(
        "none",
        description=(
            "Subject alignment: 'euclidean' re-centres each subject's EEG by the inverse "
            "square root of its own mean spatial covariance (He and Wu 2019), from its EEG "
            "only — its training windows, or for a subject without any (an unseen subject) "
            "its own unlabelled EEG; predict aligns a new recording by its own EEG."
        ),
    )

    @model_validator(mode="after")
    def _check(self) -> SampleConfig:
        if self.target == "seq2seq" and self.n_out < 2:
            raise ValueError("seq2seq needs window_s * target_hz >= 2 output steps")
        if self.footprint_s is not None and self.footprint_s < self.window_s + self.delay_s - 1e-9:
            raise ValueError(
                f"footprint_s ({self.footprint_s:g}) must be at least window_s + delay_s "
                f"({self.window_s:g} + {self.delay_s:g})"
            )
        return self

    @property
    def n_out(self) -> int:
        """Output steps per window."""
        return 1 if self.target == "seq2one" else int(round(self.window_s * self.target_hz))

    def output_names(self, dataset_rois: tuple[str, ...]) -> tuple[str, ...]:
        rois = self.rois or dataset_rois
        return (*rois, COMMON_MODE) if self.common_mode else tuple(rois)


def _targets(
    bold: np.ndarray, vol_times: np.ndarray, t: np.ndarray, *, config: SampleConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Targets [n, R, n_out] and their times [n, n_out] for target times ``t`` of one run."""
    times = WindowGeometry(config.window_s, config.delay_s, 1.0).output_times(t, config.n_out)
    values = np.stack([np.interp(times, vol_times, row) for row in bold], axis=1)
    return values, times


def _check_finite(dataset: Dataset, key: RunKey, run: RunData) -> None:
    """NaN or inf read from a store is damage (a missing chunk reads as NaN), not a property
    of the hyperparameters: name the run and the array before anything trains on it."""
    for name in ("eeg", "bold", "volume_times"):
        values = getattr(run, name)
        if not np.isfinite(values).all():
            bad = int(values.size - np.count_nonzero(np.isfinite(values)))
            raise DatasetError(
                f"{dataset.url}: run {key}: {name} holds {bad} non-finite value(s) (a missing "
                f"or damaged chunk?); check the store with `eeg2bold inspect {dataset.url} "
                "--verify`"
            )


class FoldData:
    """One fold's data: the EEG of the runs it touches (as read, never copied), targets and
    normaliser; :meth:`batch` cuts, aligns and normalises windows batch by batch.

    The run arrays are used as they come from ``read_run``, so fold actors that share one
    read-only copy of a run (Ray's object store, one per node) share it here too: per fold
    there is no normalised or aligned copy of the data, only the batch being built. On a GPU
    the runs are copied to the device once if they fit ``device_budget_mb`` (default: a
    quarter of the free device memory); otherwise every batch is cut on the host into pinned
    memory and copied asynchronously.
    """

    def __init__(
        self,
        dataset: Dataset,
        samples: SampleTable,
        fold: Fold,
        *,
        config: SampleConfig,
        device: torch.device | str = "cpu",
        normaliser: Normaliser | None = None,
        read_run: Callable[[RunKey], RunData] | None = None,
        device_budget_mb: float | None = None,
        path: DataPath | None = None,
        cache_mb: float = DEFAULT_CACHE_MB,
    ):
        if (samples.window_s, samples.delay_s) != (config.window_s, config.delay_s):
            raise ValueError("sample table and sample config disagree on window/delay")
        self.samples, self.fold, self.config = samples, fold, config
        self.device = torch.device(device)
        info = dataset.info
        self.channels = info.eeg.channels
        self.sfreq = info.eeg.sfreq
        rois = config.rois or info.bold.rois
        unknown = [r for r in rois if r not in info.bold.rois]
        if unknown:
            raise ConfigError(f"unknown ROI(s) {unknown}; the dataset has {list(info.bold.rois)}")
        roi_idx = [info.bold.rois.index(r) for r in rois]
        self.outputs = config.output_names(info.bold.rois)
        self.n_window = samples.geometry.n_window

        used = np.flatnonzero(np.isin(np.arange(len(samples.runs)), samples.run[self._all()]))
        touched_mb = sum(
            4e-6 * len(self.channels) * int(dataset.run_attrs(samples.runs[r])["n_samples"])
            for r in used
        )
        self.path: DataPath = path or choose_path(touched_mb)
        # run index -> EEG [C, N]: as read (shared), or read chunk by chunk from the store
        self._runs: dict[int, Any] = {}
        self._cache = ChunkCache(cache_mb) if self.path == "stream" else None
        n = len(samples)
        targets = np.zeros((n, len(self.outputs), config.n_out), dtype=np.float64)
        target_times = np.zeros((n, config.n_out))
        for r in used:
            key = samples.runs[r]
            if self._cache is not None:
                run = _without_eeg(dataset, key)
                where = f"{dataset.url}: run {key}"
                array = eeg_array(dataset, key)
                self._runs[int(r)] = ChunkedRun(array, int(r), self._cache, where=where)
            else:
                run = (read_run or dataset.read_run)(key)
                self._runs[int(r)] = np.asarray(run.eeg, dtype=np.float32)
            _check_finite(dataset, key, run)
            rows = np.flatnonzero(samples.run == r)
            bold = run.bold[roi_idx].astype(np.float64)
            if config.common_mode:
                bold = with_common_mode(bold)
            values, times = _targets(bold, run.volume_times, samples.time[rows], config=config)
            targets[rows], target_times[rows] = values, times
        self.target_times = target_times
        self.alignment: dict[str, Alignment] = {}
        if config.align == "euclidean":
            self.alignment = self._align()
        self.normaliser = normaliser or self._fit_normaliser(targets)
        norm = self.normaliser
        targets = (targets - norm.target_mean[None, :, None]) / norm.target_scale[None, :, None]
        self.targets = torch.as_tensor(targets, dtype=torch.float32, device=self.device)
        self._maps = self._input_maps()
        self._resident = self._to_device(device_budget_mb)
        self._prefetch = Prefetcher(self._runs, self.n_window, self._cache) if self._cache else None

    def _all(self) -> np.ndarray:
        return np.concatenate([self.fold.train, self.fold.val, self.fold.test])

    def _coverage(self, rows: np.ndarray, r: int) -> np.ndarray:
        """The samples of run ``r`` under the windows of sample indices ``rows``."""
        mine = rows[self.samples.run[rows] == r]
        return coverage(self.samples.start_sample[mine], self.n_window, self._runs[r].shape[1])

    def _subject_runs(self, s: int) -> list[int]:
        return [r for r in self._runs if self.samples.run_subject[r] == s]

    def _align(self) -> dict[str, Alignment]:
        """Each subject's Euclidean alignment from its own EEG under its training windows;
        a subject without any (LOSO's held-out one) from its own unlabelled windows."""
        samples, out = self.samples, {}
        for s in sorted({int(samples.run_subject[r]) for r in self._runs}):
            source, rows = "train", self.fold.train[samples.subject[self.fold.train] == s]
            if rows.size == 0:
                others = np.concatenate([self.fold.val, self.fold.test])
                source, rows = "unlabelled", others[samples.subject[others] == s]
            parts = [(self._runs[r], self._coverage(rows, r)) for r in self._subject_runs(s)]
            out[samples.subjects[s]] = euclidean_alignment(parts, source=source)
        return out

    def _fit_normaliser(self, targets: np.ndarray) -> Normaliser:
        """Statistics over the EEG samples covered by training windows (after alignment,
        where set) and over the training targets, from streaming float64 sums: neither a
        float64 nor an aligned copy of the training span is made."""
        train = self.fold.train
        n_ch = len(self.channels)
        total, first, second = 0, np.zeros(n_ch), np.zeros(n_ch)
        for s in sorted({int(self.samples.run_subject[r]) for r in self._runs}):
            aligned = self.alignment.get(self.samples.subjects[s])
            moments = Moments(n_ch)
            for r in self._subject_runs(s):
                moments.add(self._runs[r], self._coverage(train, r), cross=aligned is not None)
            if moments.n == 0:
                continue
            if aligned is None:
                m1, m2 = moments.mean, moments.sumsq / moments.n
            else:  # moments of y = W (x - mu), exactly, from those of x
                w, d = aligned.matrix, moments.mean - aligned.mean
                second_x = moments.cross / moments.n
                centred = (
                    second_x
                    - np.outer(moments.mean, aligned.mean)
                    - np.outer(aligned.mean, moments.mean)
                    + np.outer(aligned.mean, aligned.mean)
                )
                m1, m2 = w @ d, np.einsum("ij,jk,ik->i", w, centred, w)
            total += moments.n
            first += moments.n * m1
            second += moments.n * m2
        mean = first / max(total, 1)
        scale = np.sqrt(np.maximum(second / max(total, 1) - mean**2, 0.0))
        scale = np.where(scale > 0, scale, 1.0)
        t = targets[train].transpose(1, 0, 2).reshape(targets.shape[1], -1)
        t_mean, t_scale = t.mean(axis=1), t.std(axis=1)
        t_scale = np.where(t_scale > 0, t_scale, 1.0)
        return Normaliser(eeg_mean=mean, eeg_scale=scale, target_mean=t_mean, target_scale=t_scale)

    def _input_maps(self) -> dict[int, InputMap] | InputMap:
        """The model-input map: one for every run, or per run its subject's alignment."""
        if not self.alignment:
            return InputMap(self.normaliser)
        return {
            r: InputMap(
                self.normaliser, self.alignment[self.samples.subjects[self.samples.run_subject[r]]]
            )
            for r in self._runs
        }

    def _to_device(self, budget_mb: float | None) -> dict[int, Tensor] | None:
        """The runs copied to an accelerator if they fit the budget (None: on the CPU, or too
        large, batches are cut on the host from the arrays as read)."""
        if self.device.type == "cpu" or self.path == "stream":
            return None
        size_mb = sum(x.nbytes for x in self._runs.values()) / 1e6
        if budget_mb is None:
            budget_mb = _free_device_mb(self.device) / 4
        if size_mb > budget_mb:
            return None
        maps = self._maps.values() if isinstance(self._maps, dict) else [self._maps]
        for m in maps:
            m.to(self.device)
        return {r: torch.as_tensor(np.array(x), device=self.device) for r, x in self._runs.items()}

    @property
    def spec(self) -> DataSpec:
        return DataSpec(
            n_channels=len(self.channels),
            n_rois=len(self.outputs),
            sfreq=self.sfreq,
            window_s=self.config.window_s,
            n_out=self.config.n_out,
        )

    def will_read(
        self, batches: Sequence[Tensor | np.ndarray], *, group: int = SPAN_BATCHES
    ) -> None:
        """The coming batches, in order: the streaming path decodes their chunks ahead,
        ``group`` batches per store read (a block of the training order; 1 for evaluation's
        batches, each a contiguous stretch already)."""
        if self._prefetch is not None:
            plan = []
            for idx in batches:
                index = np.asarray(idx.cpu() if isinstance(idx, Tensor) else idx, dtype=np.int64)
                plan.append((self.samples.run[index], self.samples.start_sample[index]))
            self._prefetch.start(plan, group=group)

    def batch(self, idx: Tensor | np.ndarray) -> tuple[Tensor, Tensor]:
        """EEG windows [B, C, T] (aligned where set, normalised) and targets [B, R, n_out] of
        sample indices ``idx``."""
        index = np.asarray(idx.cpu() if isinstance(idx, Tensor) else idx, dtype=np.int64)
        runs = self.samples.run[index]
        starts = self.samples.start_sample[index]
        eeg = self._cut(index, runs, starts)
        if not isinstance(self._maps, dict):
            eeg = self._maps(eeg, inplace=True)  # a fresh batch
        else:
            for r in np.unique(runs):
                sel = torch.as_tensor(np.flatnonzero(runs == r), device=eeg.device)
                eeg[sel] = self._maps[int(r)](eeg[sel])
        return eeg, self.targets[torch.as_tensor(index, device=self.device)]

    def _cut(self, index: np.ndarray, runs: np.ndarray, starts: np.ndarray) -> Tensor:
        """The raw windows [B, C, T] of the samples, on the device."""
        n_ch, n = len(self.channels), self.n_window
        if self._resident is not None and self.device.type != "cpu":
            windows = [
                self._resident[int(r)][:, int(s) : int(s) + n]
                for r, s in zip(runs, starts, strict=True)
            ]
            return torch.stack(windows)
        host = np.empty((index.size, n_ch, n), dtype=np.float32)
        if self._prefetch is not None:
            self._prefetch.take(runs, starts)
        if self._cache is not None:  # grouped store reads and one cache lookup per run
            for r in np.unique(runs).tolist():
                pos = np.flatnonzero(runs == r)
                self._runs[r].gather(starts[pos], n, host, pos.tolist())
        else:
            for j, (r, s) in enumerate(zip(runs.tolist(), starts.tolist(), strict=True)):
                host[j] = self._runs[r][:, s : s + n]  # one memcpy per window
        if self.device.type == "cpu":
            return torch.from_numpy(host)
        return torch.from_numpy(host).pin_memory().to(self.device, non_blocking=True)

    def segments(self, idx: np.ndarray) -> list[np.ndarray]:
        """Split sample indices into contiguous stretches (same run, consecutive volumes)."""
        idx = np.asarray(idx)
        order = idx[np.lexsort((self.samples.volume[idx], self.samples.run[idx]))]
        run, vol = self.samples.run[order], self.samples.volume[order]
        breaks = np.flatnonzero((np.diff(run) != 0) | (np.diff(vol) != 1)) + 1
        return [s for s in np.split(order, breaks) if s.size]

    def describe(self) -> dict[str, Any]:
        """Sizes for logs and results."""
        host_mb = sum(x.nbytes for x in self._runs.values()) / 1e6
        return {
            "n_train": int(self.fold.train.size),
            "n_val": int(self.fold.val.size),
            "n_test": int(self.fold.test.size),
            "eeg_mb": host_mb,
            "eeg_mb_on_device": host_mb if self._resident is not None else 0.0,
            "alignment": {s: a.source for s, a in self.alignment.items()},
            "data_path": self.path,
            "chunks_decoded": None if self._cache is None else self._cache.decoded,
        }


def _without_eeg(dataset: Dataset, key: RunKey) -> RunData:
    """A run's BOLD and volume times (its EEG stays in the store: the streaming path)."""
    return RunData(
        subject=key.subject,
        run=key.run,
        eeg=np.zeros((len(dataset.info.eeg.channels), 0), dtype=np.float32),
        bold=np.asarray(dataset.array(key, "bold")[...], dtype=np.float32),
        volume_times=np.asarray(dataset.array(key, "volume_times")[...], dtype=np.float64),
    )


def _free_device_mb(device: torch.device) -> float:
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return free / 1e6
    return float("inf")  # other accelerators (mps): no query; the runs go to the device

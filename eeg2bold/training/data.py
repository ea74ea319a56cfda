"""Windows → batches on the training device, with normalisation fitted on training data only.

A :class:`FoldData` holds every run a fold touches as one EEG tensor on the device (runs laid
end to end) plus a table of targets, so a batch is one ``unfold`` view and one gather: data
loading never dominates a step. Normalisation (EEG per-channel mean/scale, target z-scores)
is computed from the fold's *training* samples only and stored with the model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor

from eeg2bold.errors import ConfigError, DatasetError
from eeg2bold.geometry import COMMON_MODE, WindowGeometry, with_common_mode
from eeg2bold.models import DataSpec
from eeg2bold.protocols import Fold, SampleTable
from eeg2bold.storage import Dataset, RunData, RunKey
from eeg2bold.training.alignment import Alignment, Moments, coverage, euclidean_alignment


class SampleConfig(BaseModel):
    """How samples and targets are formed (DESIGN.md "Samples, targets and the one metric")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window_s: float = Field(10.0, gt=0, le=120, description="EEG window length in seconds.")
    delay_s: float = Field(
        0.0, ge=0, le=30, description="Gap between the window's end and the BOLD target time."
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
        return self

    @property
    def n_out(self) -> int:
        """Output steps per window."""
        return 1 if self.target == "seq2one" else int(round(self.window_s * self.target_hz))

    def output_names(self, dataset_rois: tuple[str, ...]) -> tuple[str, ...]:
        rois = self.rois or dataset_rois
        return (*rois, COMMON_MODE) if self.common_mode else tuple(rois)


@dataclass(frozen=True)
class Normaliser:
    """Affine maps fitted on training data: EEG per channel, targets per output."""

    eeg_mean: np.ndarray
    eeg_scale: np.ndarray
    target_mean: np.ndarray
    target_scale: np.ndarray

    def state(self) -> dict[str, Tensor]:
        return {k: torch.as_tensor(v, dtype=torch.float64) for k, v in self.__dict__.items()}

    @classmethod
    def from_state(cls, state: dict[str, Tensor]) -> Normaliser:
        return cls(**{k: np.asarray(v.cpu().numpy(), dtype=np.float64) for k, v in state.items()})


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
    """All data of one fold on ``device``: EEG of the runs it touches, targets, normaliser."""

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
        eeg_parts: dict[int, np.ndarray] = {}
        offsets, total = np.full(len(samples.runs), -1, dtype=np.int64), 0
        n = len(samples)
        targets = np.zeros((n, len(self.outputs), config.n_out), dtype=np.float64)
        target_times = np.zeros((n, config.n_out))
        for r in used:
            run = (read_run or dataset.read_run)(samples.runs[r])
            _check_finite(dataset, samples.runs[r], run)
            offsets[r] = total
            total += run.eeg.shape[1]
            eeg_parts[int(r)] = run.eeg
            rows = np.flatnonzero(samples.run == r)
            bold = run.bold[roi_idx].astype(np.float64)
            if config.common_mode:
                bold = with_common_mode(bold)
            values, times = _targets(bold, run.volume_times, samples.time[rows], config=config)
            targets[rows], target_times[rows] = values, times
        self._run_offset = offsets
        self.target_times = target_times
        self.alignment: dict[str, Alignment] = {}
        if config.align == "euclidean":
            self.alignment = self._align(eeg_parts)
            eeg_parts = {
                r: self.alignment[samples.subjects[samples.run_subject[r]]].apply(x)
                for r, x in eeg_parts.items()
            }
        eeg = np.concatenate([eeg_parts[int(r)] for r in used], axis=1)
        del eeg_parts
        self._start = offsets[samples.run] + samples.start_sample  # invalid for unused runs
        self.normaliser = normaliser or self._fit_normaliser(eeg, targets)
        norm = self.normaliser
        eeg = (eeg - norm.eeg_mean[:, None].astype(np.float32)) / norm.eeg_scale[:, None].astype(
            np.float32
        )
        targets = (targets - norm.target_mean[None, :, None]) / norm.target_scale[None, :, None]
        self.eeg = torch.as_tensor(eeg, dtype=torch.float32, device=self.device)
        self.targets = torch.as_tensor(targets, dtype=torch.float32, device=self.device)
        self.starts = torch.as_tensor(self._start, device=self.device)
        self._windows = self.eeg.unfold(1, self.n_window, 1)  # [C, N - n + 1, n] view

    def _all(self) -> np.ndarray:
        return np.concatenate([self.fold.train, self.fold.val, self.fold.test])

    def _align(self, eeg: dict[int, np.ndarray]) -> dict[str, Alignment]:
        """Each subject's Euclidean alignment from its own EEG under its training windows;
        a subject without any (LOSO's held-out one) from its own unlabelled windows."""
        samples, out = self.samples, {}
        for s in sorted({int(samples.run_subject[r]) for r in eeg}):
            source, rows = "train", self.fold.train[samples.subject[self.fold.train] == s]
            if rows.size == 0:
                others = np.concatenate([self.fold.val, self.fold.test])
                source, rows = "unlabelled", others[samples.subject[others] == s]
            parts = [
                (
                    x,
                    coverage(
                        samples.start_sample[rows[samples.run[rows] == r]],
                        self.n_window,
                        x.shape[1],
                    ),
                )
                for r, x in eeg.items()
                if samples.run_subject[r] == s
            ]
            out[samples.subjects[s]] = euclidean_alignment(parts, source=source)
        return out

    def _fit_normaliser(self, eeg: np.ndarray, targets: np.ndarray) -> Normaliser:
        """Statistics over the EEG samples covered by training windows and training targets
        (streaming float64 sums: no float64 copy of the training span)."""
        train = self.fold.train
        moments = Moments(eeg.shape[0])
        moments.add(eeg, coverage(self._start[train], self.n_window, eeg.shape[1]))
        mean = moments.mean
        scale = moments.std
        scale = np.where(scale > 0, scale, 1.0)
        t = targets[train].transpose(1, 0, 2).reshape(targets.shape[1], -1)
        t_mean, t_scale = t.mean(axis=1), t.std(axis=1)
        t_scale = np.where(t_scale > 0, t_scale, 1.0)
        return Normaliser(eeg_mean=mean, eeg_scale=scale, target_mean=t_mean, target_scale=t_scale)

    @property
    def spec(self) -> DataSpec:
        return DataSpec(
            n_channels=len(self.channels),
            n_rois=len(self.outputs),
            sfreq=self.sfreq,
            window_s=self.config.window_s,
            n_out=self.config.n_out,
        )

    def batch(self, idx: Tensor | np.ndarray) -> tuple[Tensor, Tensor]:
        """EEG windows [B, C, T] and targets [B, R, n_out] of sample indices ``idx``."""
        index = torch.as_tensor(idx, device=self.device)
        eeg = self._windows[:, self.starts[index]].permute(1, 0, 2)
        return eeg, self.targets[index]

    def segments(self, idx: np.ndarray) -> list[np.ndarray]:
        """Split sample indices into contiguous stretches (same run, consecutive volumes)."""
        idx = np.asarray(idx)
        order = idx[np.lexsort((self.samples.volume[idx], self.samples.run[idx]))]
        run, vol = self.samples.run[order], self.samples.volume[order]
        breaks = np.flatnonzero((np.diff(run) != 0) | (np.diff(vol) != 1)) + 1
        return [s for s in np.split(order, breaks) if s.size]

    def describe(self) -> dict[str, Any]:
        """Sizes for logs and results."""
        return {
            "n_train": int(self.fold.train.size),
            "n_val": int(self.fold.val.size),
            "n_test": int(self.fold.test.size),
            "eeg_mb_on_device": self.eeg.numel() * 4 / 1e6,
            "alignment": {s: a.source for s, a in self.alignment.items()},
        }

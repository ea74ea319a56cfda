"""The digital twin applied causally to EEG that arrives in chunks (no LSL here: see
:mod:`eeg2bold.live.lsl`).

The stream's own clock starts at its first sample received (0 s) and counts samples, so a live
update is the offline prediction at the same instant: every ``every_s`` seconds of samples,
the window of the model's ``window_s`` ending at the newest sample predicts the BOLD at that
sample's time plus ``delay_s`` (a model trained with a delay forecasts). Each fold model turns
raw EEG into its input through :meth:`~eeg2bold.training.trained.TrainedFold.input_map` (the
one transform training, ``predict`` and the report use) and maps its output back to BOLD
units with its own target statistics; the fold models are averaged, as ``predict`` does.

What differs from ``predict``, and why:

- seq2seq models: ``predict`` averages every window's output at an instant, later windows
  included; live, only the newest window exists, so an update is its last output step;
- ``data.align: euclidean``: ``predict`` aligns a recording by its own EEG under every window
  it predicts; live, by the first ``warmup_s`` seconds of the stream (nothing is emitted
  before), then held fixed.

A gap in the stream (a stall, a reconnection) ends a segment: the windows never straddle it,
the next update comes once a full window has arrived again, and the updates the gap cost are
returned as rows of NaN at their instants so a consumer sees the hole.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from eeg2bold.live.options import DEFAULT_EVERY_S, DEFAULT_WARMUP_S
from eeg2bold.predict.models import ModelSet, PredictError
from eeg2bold.training.alignment import Alignment, euclidean_alignment
from eeg2bold.training.data import COMMON_MODE


@dataclass(frozen=True)
class Update:
    """One live prediction: ``values`` [n_outputs] in BOLD units at ``time_s`` (the stream's
    clock: its first sample is 0 s), computed from the window ending at the EEG sample whose
    LSL timestamp is ``lsl_time``; NaN values (and ``lsl_time``) mark an update a gap cost."""

    time_s: float
    lsl_time: float
    values: np.ndarray

    @property
    def missing(self) -> bool:
        return bool(np.isnan(self.values).all())


class LiveTwin:
    """A model set applied to EEG chunks as they arrive (channels in the model's order, in its
    units and preprocessing), one update every ``every_s`` seconds of samples."""

    def __init__(
        self,
        models: ModelSet,
        *,
        every_s: float = DEFAULT_EVERY_S,
        warmup_s: float = DEFAULT_WARMUP_S,
        recombine: bool = True,
    ):
        self.models = models
        self.sfreq = models.sfreq
        step = every_s * self.sfreq
        if not every_s > 0 or abs(step - round(step)) > 1e-6:
            raise PredictError(
                f"the update interval must be a positive whole number of samples at "
                f"{self.sfreq:g} Hz, got {every_s:g} s"
            )
        self.every = int(round(step))
        self.n_window = models.first.n_window
        self.aligns = models.sample.align == "euclidean"
        if self.aligns and warmup_s * self.sfreq < self.n_window:
            raise PredictError(
                f"the warm-up ({warmup_s:g} s) must cover at least one window "
                f"({models.sample.window_s:g} s)"
            )
        self.n_warmup = int(round(warmup_s * self.sfreq)) if self.aligns else 0
        self.recombine = (
            recombine and models.sample.common_mode and (models.outputs[-1:] == (COMMON_MODE,))
        )
        self.alignment: Alignment | None = None
        self._maps = [m.input_map(None) for m in models.members] if not self.aligns else []
        self.n_channels = len(models.channels)
        self.clock = 0  # samples on the stream's clock (gaps included)
        self._segment_start = 0  # clock of the current segment's first sample
        self._buf = np.zeros((self.n_channels, 0), dtype=np.float32)
        self._buf_start = 0  # clock of the buffer's first sample
        self._stamps = np.zeros(0)

    @property
    def outputs(self) -> tuple[str, ...]:
        return self.models.outputs

    @property
    def ready(self) -> bool:
        """Whether the twin emits (the warm-up, if any, is over)."""
        return not self.aligns or self.alignment is not None

    def push(self, chunk: np.ndarray, stamps: np.ndarray | None = None) -> list[Update]:
        """Take EEG samples [C, n] (with their LSL timestamps [n]) and return the updates whose
        windows they complete, oldest first."""
        chunk = np.asarray(chunk, dtype=np.float32)
        if chunk.ndim != 2 or chunk.shape[0] != self.n_channels:
            raise PredictError(
                f"EEG chunks must be [{self.n_channels} channels, samples], got {chunk.shape}"
            )
        n = chunk.shape[1]
        if n == 0:
            return []
        if not np.isfinite(chunk).all():
            raise PredictError("the stream sent NaN or infinite samples")
        stamps = np.full(n, np.nan) if stamps is None else np.asarray(stamps, dtype=np.float64)
        self._buf = np.concatenate([self._buf, chunk], axis=1)
        self._stamps = np.concatenate([self._stamps, stamps])
        before, self.clock = self.clock, self.clock + n
        if self.aligns and self.alignment is None:
            if self.clock - self._segment_start < self.n_warmup:
                return []
            warm = self._buf[:, : self.n_warmup].astype(np.float64)
            self.alignment = euclidean_alignment([(warm, None)], source="stream warm-up")
            self._maps = [m.input_map(self.alignment) for m in self.models.members]
            before = self._segment_start + self.n_warmup - 1
        first_ready = self._segment_start + self.n_window
        ends = [
            e
            for e in range(self.every * -(-(before + 1) // self.every), self.clock + 1, self.every)
            if e >= first_ready
        ]
        updates = self._apply(ends) if ends else []
        keep = max(0, self._buf.shape[1] - self.n_window)
        if not (self.aligns and self.alignment is None):
            self._buf, self._stamps = self._buf[:, keep:], self._stamps[keep:]
            self._buf_start += keep
        return updates

    def gap(self, n_samples: int) -> list[Update]:
        """``n_samples`` of the stream were lost: a new segment starts after them, and every
        update whose instant fell in the gap or needs a window reaching into it is a NaN row."""
        if n_samples < 0:
            raise ValueError("a gap cannot be negative")
        start = self.clock
        self.clock += n_samples
        self._segment_start = self.clock
        self._buf = self._buf[:, :0]
        self._stamps = self._stamps[:0]
        self._buf_start = self.clock
        nan = np.full(len(self.outputs), np.nan)
        end = self.clock + self.n_window - 1  # the first full window after the gap ends later
        first = self.every * -(-(start + 1) // self.every)
        return [
            Update(time_s=self._time(e), lsl_time=float("nan"), values=nan.copy())
            for e in range(first, end + 1, self.every)
            if self.ready
        ]

    def _time(self, end: int) -> float:
        return end / self.sfreq + self.models.sample.delay_s

    @torch.no_grad()
    def _apply(self, ends: list[int]) -> list[Update]:
        offsets = np.asarray(ends) - self._buf_start
        batch = np.stack([self._buf[:, o - self.n_window : o] for o in offsets])
        x = torch.as_tensor(batch)
        lines = []
        for member, input_map in zip(self.models.members, self._maps, strict=True):
            out = member.module(input_map(x)).float().numpy().astype(np.float64)
            last = out[:, :, -1]  # [B, R]: the output at the update's instant
            norm = member.normaliser
            lines.append(last * norm.target_scale[None] + norm.target_mean[None])
        if not all(np.isfinite(line).all() for line in lines):
            raise PredictError("the model predicts non-finite values")
        values = np.mean(lines, axis=0)
        if self.recombine:
            values[:, :-1] += values[:, -1:]
        return [
            Update(time_s=self._time(e), lsl_time=float(self._stamps[o - 1]), values=v)
            for e, o, v in zip(ends, offsets, values, strict=True)
        ]

"""Leave-one-subject-out protocols: how much survives on a subject the model has never seen."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from eeg2bold.errors import ConfigError
from eeg2bold.protocols.base import Fold, Splitter, guard_gap, register_protocol, subject_blocks
from eeg2bold.protocols.samples import SampleTable


def _check_fraction(name: str, value: float) -> float:
    if not 0 < value < 1:
        raise ConfigError(f"{name} must be in (0, 1), got {value}")
    return float(value)


@register_protocol("loso")
class LeaveOneSubjectOut(Splitter):
    """Train on N−1 subjects (minus their last block, which selects), test on the whole N-th."""

    def __init__(self, *, val_fraction: float = 0.2, **kw: Any):
        super().__init__(**kw)
        self.val_fraction = _check_fraction("loso: val_fraction", val_fraction)

    def split(self, samples: SampleTable) -> Iterator[Fold]:
        if len(samples.subjects) < 2:
            raise ConfigError("loso needs at least 2 subjects")
        gap = guard_gap(samples, self.min_gap_s)
        fractions = (1 - self.val_fraction, self.val_fraction)
        blocks = [
            subject_blocks(samples, s, fractions, gap_s=gap) for s in range(len(samples.subjects))
        ]
        for s, subject in enumerate(samples.subjects):
            others = [b for o, b in enumerate(blocks) if o != s]
            train = np.sort(np.concatenate([b[0] for b in others]))
            val = np.sort(np.concatenate([b[1] for b in others]))
            yield Fold("loso", s, subject, train, val, samples.of_subject(subject))

    def options(self) -> dict[str, Any]:
        return {**super().options(), "val_fraction": self.val_fraction}


@register_protocol("loso_calibrated")
class CalibratedLeaveOneSubjectOut(Splitter):
    """LOSO plus a short calibration block of the new subject: the practical digital-twin case.

    Train: every sample of the N−1 other subjects plus the first block of the held-out subject;
    val: its next block; test: its last block.
    """

    def __init__(self, *, calibration_fraction: float = 0.2, val_fraction: float = 0.2, **kw: Any):
        super().__init__(**kw)
        self.calibration_fraction = _check_fraction(
            "loso_calibrated: calibration_fraction", calibration_fraction
        )
        self.val_fraction = _check_fraction("loso_calibrated: val_fraction", val_fraction)
        if calibration_fraction + val_fraction >= 1:
            raise ConfigError("loso_calibrated: calibration_fraction + val_fraction must be < 1")

    def split(self, samples: SampleTable) -> Iterator[Fold]:
        if len(samples.subjects) < 2:
            raise ConfigError("loso_calibrated needs at least 2 subjects")
        gap = guard_gap(samples, self.min_gap_s)
        cal, val = self.calibration_fraction, self.val_fraction
        for s, subject in enumerate(samples.subjects):
            calib, val_idx, test = subject_blocks(samples, s, (cal, val, 1 - cal - val), gap_s=gap)
            others = np.flatnonzero(samples.subject != s)
            yield Fold(
                "loso_calibrated",
                s,
                subject,
                np.sort(np.concatenate([others, calib])),
                val_idx,
                test,
            )

    def options(self) -> dict[str, Any]:
        return {
            **super().options(),
            "calibration_fraction": self.calibration_fraction,
            "val_fraction": self.val_fraction,
        }

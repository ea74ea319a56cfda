"""Leave-one-subject-out protocols: how much survives on a subject the model has never seen."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from eeg2bold.errors import ConfigError
from eeg2bold.protocols.base import (
    Fold,
    Splitter,
    check_fraction,
    guard_gap,
    register_protocol,
    subject_blocks,
)
from eeg2bold.protocols.samples import SampleTable


@register_protocol("loso")
class LeaveOneSubjectOut(Splitter):
    """Train on N−1 subjects (minus their last block, which selects), test on the whole N-th.

    ``group_by`` (a run attribute: ``site``, ``dataset``, …) holds out a whole group of
    subjects at a time instead: one fold per group, named by the group, which is then the
    statistical unit. Each subject must belong to one group.

    ``val_subjects`` = k > 0 selects on k whole other subjects (groups) instead of the
    training subjects' last blocks (the next k after the held-out one, in order; the rest
    train on all their data): selection then rewards what LOSO measures, a model that carries
    to subjects it has not seen, rather than one that fits the training subjects' later data.
    """

    val_from_other_subjects = True  # the training subjects' last blocks, or other subjects

    def __init__(
        self,
        *,
        val_fraction: float = 0.2,
        group_by: str | None = None,
        val_subjects: int = 0,
        **kw: Any,
    ):
        super().__init__(**kw)
        self.val_fraction = check_fraction("loso: val_fraction", val_fraction)
        if group_by is not None and (not isinstance(group_by, str) or not group_by):
            raise ConfigError(f"loso: group_by must name a run attribute, got {group_by!r}")
        self.group_by = group_by
        if isinstance(val_subjects, bool) or not isinstance(val_subjects, int) or val_subjects < 0:
            raise ConfigError(
                f"loso: val_subjects must be a whole number >= 0, got {val_subjects!r}"
            )
        self.val_subjects = val_subjects

    def _groups(self, samples: SampleTable) -> list[tuple[str, list[int]]]:
        """(name, subject indices) of every held-out unit: each subject, or each group."""
        if self.group_by is None:
            return [(subject, [s]) for s, subject in enumerate(samples.subjects)]
        values = samples.run_attribute(self.group_by)
        of_subject: dict[int, set[str]] = {}
        for r, value in enumerate(values):
            of_subject.setdefault(int(samples.run_subject[r]), set()).add(value)
        mixed = [samples.subjects[s] for s, v in of_subject.items() if len(v) > 1]
        if mixed:
            raise ConfigError(
                f"loso: group_by={self.group_by!r}: subject(s) {', '.join(mixed)} have runs in "
                "several groups; a grouped hold-out needs each subject in one group"
            )
        groups: dict[str, list[int]] = {}
        for s in sorted(of_subject):
            groups.setdefault(next(iter(of_subject[s])), []).append(s)
        return sorted(groups.items())

    def split(self, samples: SampleTable) -> Iterator[Fold]:
        groups = self._groups(samples)
        if len(groups) < 2:
            what = "subjects" if self.group_by is None else f"values of {self.group_by!r}"
            raise ConfigError(f"loso needs at least 2 {what}, the dataset has {len(groups)}")
        gap = guard_gap(samples, self.min_gap_s)
        fractions = (1 - self.val_fraction, self.val_fraction)
        blocks = [
            subject_blocks(samples, s, fractions, gap_s=gap) for s in range(len(samples.subjects))
        ]
        if self.val_subjects and self.val_subjects > len(groups) - 2:
            raise ConfigError(
                f"loso: val_subjects={self.val_subjects} leaves no subject to train on "
                f"({len(groups)} held-out units)"
            )
        for index, (name, members) in enumerate(groups):
            test = np.flatnonzero(np.isin(samples.subject, members))
            if self.val_subjects:
                chosen = [
                    groups[(index + k) % len(groups)][1] for k in range(1, 1 + self.val_subjects)
                ]
                selecting = [s for g in chosen for s in g]
                val = np.flatnonzero(np.isin(samples.subject, selecting))
                training = np.isin(samples.subject, members + selecting, invert=True)
                yield Fold("loso", index, name, np.flatnonzero(training), val, test)
                continue
            others = [b for o, b in enumerate(blocks) if o not in members]
            train = np.sort(np.concatenate([b[0] for b in others]))
            val = np.sort(np.concatenate([b[1] for b in others]))
            yield Fold("loso", index, name, train, val, test)

    def options(self) -> dict[str, Any]:
        out = {**super().options(), "val_fraction": self.val_fraction}
        if self.val_subjects:
            out["val_subjects"] = self.val_subjects
        return out if self.group_by is None else out | {"group_by": self.group_by}


@register_protocol("loso_calibrated")
class CalibratedLeaveOneSubjectOut(Splitter):
    """LOSO plus some data of the new subject: the practical digital-twin case.

    Two designs:

    - by fractions (default): train = every sample of the N−1 other subjects plus the first
      ``calibration_fraction`` of the held-out subject's time line; val = its next block; test =
      its last block.
    - by amount (``calibration_s`` set; the calibration curve): test = the held-out subject's
      last ``test_fraction``, the same block whatever the amount; train = the other subjects'
      train blocks plus the first ``calibration_s`` seconds of the held-out subject (0: plain
      LOSO scored on that block); val = the other subjects' last ``val_fraction`` (as in
      ``loso``), so selection never sees the new subject and every amount is selected alike.
      Guard gaps as everywhere.
    """

    def __init__(
        self,
        *,
        calibration_fraction: float = 0.2,
        val_fraction: float = 0.2,
        calibration_s: float | None = None,
        test_fraction: float = 0.4,
        **kw: Any,
    ):
        super().__init__(**kw)
        self.calibration_fraction = check_fraction(
            "loso_calibrated: calibration_fraction", calibration_fraction
        )
        self.val_fraction = check_fraction("loso_calibrated: val_fraction", val_fraction)
        self.test_fraction = check_fraction("loso_calibrated: test_fraction", test_fraction)
        if calibration_s is not None and calibration_s < 0:
            raise ConfigError(f"loso_calibrated: calibration_s must be >= 0, got {calibration_s}")
        self.calibration_s = None if calibration_s is None else float(calibration_s)
        if self.calibration_s is None and calibration_fraction + val_fraction >= 1:
            raise ConfigError("loso_calibrated: calibration_fraction + val_fraction must be < 1")

    def split(self, samples: SampleTable) -> Iterator[Fold]:
        if len(samples.subjects) < 2:
            raise ConfigError("loso_calibrated needs at least 2 subjects")
        if self.calibration_s is not None:
            yield from self._by_amount(samples, self.calibration_s)
            return
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

    def _by_amount(self, samples: SampleTable, amount_s: float) -> Iterator[Fold]:
        gap = guard_gap(samples, self.min_gap_s)
        loso = (1 - self.val_fraction, self.val_fraction)
        blocks = [subject_blocks(samples, s, loso, gap_s=gap) for s in range(len(samples.subjects))]
        for s, subject in enumerate(samples.subjects):
            pool, test = subject_blocks(
                samples, s, (1 - self.test_fraction, self.test_fraction), gap_s=gap
            )
            runs = np.flatnonzero(samples.run_subject == s)
            available = samples.run_duration[runs].sum() * (1 - self.test_fraction) - gap / 2
            if amount_s > available + 1e-9:
                raise ConfigError(
                    f"loso_calibrated: {subject} has {available:.0f} s before its test block, "
                    f"fewer than calibration_s={amount_s:g}"
                )
            # the first amount_s seconds of the subject's time line (runs end to end)
            offsets = np.concatenate([[0.0], np.cumsum(samples.run_duration[runs])])[:-1]
            run_offset = np.zeros(samples.run_duration.size)
            run_offset[runs] = offsets
            end = run_offset[samples.run[pool]] + samples.time[pool]
            calib = pool[end <= amount_s]
            others = [b for o, b in enumerate(blocks) if o != s]
            train = np.sort(np.concatenate([b[0] for b in others] + [calib]))
            val = np.sort(np.concatenate([b[1] for b in others]))
            yield Fold("loso_calibrated", s, subject, train, val, test)

    def options(self) -> dict[str, Any]:
        out = {**super().options(), "val_fraction": self.val_fraction}
        if self.calibration_s is None:
            return out | {"calibration_fraction": self.calibration_fraction}
        return out | {"calibration_s": self.calibration_s, "test_fraction": self.test_fraction}


def protocol_label(protocol: str, options: dict[str, Any] | None = None) -> str:
    """How results name a protocol: a calibration-curve point carries its amount
    (``loso_calibrated@2min``), a grouped hold-out its group (``loso@site``), so each is its
    own arm in tables and reports."""
    amount = (options or {}).get("calibration_s")
    if protocol == "loso_calibrated" and amount is not None:
        return f"loso_calibrated@{float(amount) / 60:g}min"
    group = (options or {}).get("group_by")
    if protocol == "loso" and group:
        return f"loso@{group}"
    by = (options or {}).get("by")
    if protocol == "leave_one_run_out" and by and by != "run":
        return f"leave_one_run_out@{by}"
    return protocol


def label_amount_s(label: str) -> float | None:
    """The calibration amount (s) a protocol label carries, or None."""
    if not label.startswith("loso_calibrated@") or not label.endswith("min"):
        return None
    return 60.0 * float(label.removeprefix("loso_calibrated@").removesuffix("min"))

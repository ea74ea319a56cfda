"""Cross-session protocols: does a model trained on some recordings of a subject hold up on
another recording of that subject?

Same-session splits (blocks of one recording) inflate EEG→BOLD scores: electrode placement,
impedances, gain and the state of the subject change between sessions, and a model may learn
the session. ``leave_one_run_out`` holds out one whole run (or session) at a time;
``within_run`` is its same-session counterpart, every split cut from inside each run, so the
two side by side measure what crossing a recording costs.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from eeg2bold.errors import ConfigError, Eeg2BoldWarning
from eeg2bold.protocols.base import (
    Fold,
    Splitter,
    check_fraction,
    guard_gap,
    register_protocol,
    timeline_blocks,
)
from eeg2bold.protocols.samples import SampleTable
from eeg2bold.protocols.within import WithinSubject


@register_protocol("leave_one_run_out")
class LeaveOneRunOut(Splitter):
    """Within a subject: train on its other runs (their last ``val_fraction`` selects), test on
    the whole held-out run; one fold per held-out run of every subject with two or more.

    ``by="session"`` (or any run attribute) holds out every run of one session at a time.
    Subjects with a single run (session) have no fold; a warning names them.
    """

    def __init__(self, *, val_fraction: float = 0.2, by: str = "run", **kw: Any):
        super().__init__(**kw)
        self.val_fraction = check_fraction("leave_one_run_out: val_fraction", val_fraction)
        if not by or not isinstance(by, str):
            raise ConfigError(f"leave_one_run_out: by must name a run attribute, got {by!r}")
        self.by = by

    def _units(self, samples: SampleTable) -> tuple[str, ...]:
        if self.by == "run":
            return tuple(key.run for key in samples.runs)
        return samples.run_attribute(self.by)

    def split(self, samples: SampleTable) -> Iterator[Fold]:
        gap = guard_gap(samples, self.min_gap_s)
        units = np.asarray(self._units(samples), dtype=object)
        fractions = (1 - self.val_fraction, self.val_fraction)
        index, single = 0, []
        for s, subject in enumerate(samples.subjects):
            runs = np.flatnonzero(samples.run_subject == s)
            parts = list(dict.fromkeys(units[runs]))  # in recording order
            if len(parts) < 2:
                single.append(subject)
                continue
            for part in parts:
                held = runs[units[runs] == part]
                rest = runs[units[runs] != part]
                train, val = timeline_blocks(samples, rest, fractions, gap_s=gap)
                test = np.flatnonzero(np.isin(samples.run, held))
                yield Fold(self.name, index, subject, train, val, test, held_out=str(part))
                index += 1
        if index == 0:
            raise ConfigError(
                f"leave_one_run_out needs a subject with at least 2 different {self.by} "
                f"values; each of the {len(samples.subjects)} subject(s) here has one"
            )
        if single:
            warnings.warn(
                f"leave_one_run_out: {len(single)} subject(s) with a single {self.by} have no "
                f"fold: {', '.join(single)}",
                Eeg2BoldWarning,
                stacklevel=2,
            )

    def options(self) -> dict[str, Any]:
        return {**super().options(), "val_fraction": self.val_fraction, "by": self.by}


@register_protocol("within_run")
class WithinRun(WithinSubject):
    """Same-session splits: every run of a subject is cut into train, val and test blocks
    (guard gaps between them), and the subject's fold pools each split over its runs."""

    def split(self, samples: SampleTable) -> Iterator[Fold]:
        gap = guard_gap(samples, self.min_gap_s)
        for s, subject in enumerate(samples.subjects):
            parts = [
                self.blocks(samples, np.array([r]), gap)
                for r in np.flatnonzero(samples.run_subject == s)
            ]
            train, val, test = (
                np.sort(np.concatenate(split)) for split in zip(*parts, strict=True)
            )
            yield Fold(self.name, s, subject, train, val, test)

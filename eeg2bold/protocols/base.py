"""Evaluation protocols as index generators (DESIGN.md "Protocols").

A :class:`Splitter` turns a :class:`~eeg2bold.protocols.samples.SampleTable` into folds: sets of
sample indices for train (fitting and normalisation statistics), val (selection and early
stopping) and test (reported only). The engine consumes indices and never re-implements
splitting.

Blocks are cut on each subject's time line (its runs in order, end to end). Between two blocks
of one run lies a guard gap of ``max(min_gap_s, footprint_s)`` seconds (``window_s + delay_s``
unless a common footprint is set), and a sample belongs to a block only if its whole footprint
lies inside the block — so no window or target straddles two blocks, and BOLD autocorrelation
across the boundary is cut by at least ``min_gap_s`` (20 s by default).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np

from eeg2bold.errors import ConfigError, did_you_mean
from eeg2bold.protocols.samples import SampleTable

MIN_GAP_S = 20.0


@dataclass(frozen=True)
class Fold:
    """One fold: sorted sample indices per split, and the subject it is evaluated on.

    ``subject`` is the statistical unit (a grouped hold-out names its group); ``held_out``
    says what is held out when a subject has several folds (``run-2`` under
    ``leave_one_run_out``), empty otherwise.
    """

    protocol: str
    index: int
    subject: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    held_out: str = ""

    @property
    def label(self) -> str:
        """The fold's name within its protocol: the subject, or subject~held-out part."""
        return f"{self.subject}~{self.held_out}" if self.held_out else self.subject

    @property
    def name(self) -> str:
        return f"{self.protocol}/{self.label}"

    def split(self, name: str) -> np.ndarray:
        """Indices of ``train``, ``val`` or ``test``."""
        if name not in ("train", "val", "test"):
            raise ValueError(f"unknown split {name!r}")
        return getattr(self, name)


def check_fraction(name: str, value: float) -> float:
    """A share of a time line: in (0, 1), or a one-line error naming the option."""
    if not 0 < value < 1:
        raise ConfigError(f"{name} must be in (0, 1), got {value}")
    return float(value)


def guard_gap(samples: SampleTable, min_gap_s: float = MIN_GAP_S) -> float:
    """Seconds left empty between two blocks of one run."""
    return max(min_gap_s, samples.footprint_s)


def subject_blocks(
    samples: SampleTable,
    subject: int,
    fractions: tuple[float, ...],
    *,
    gap_s: float,
) -> list[np.ndarray]:
    """Split one subject's samples into consecutive blocks of the given duration fractions.

    The subject's runs are laid end to end; block k covers its share of that time line minus
    half a guard gap at each inner boundary. Returns one sorted index array per block.
    """
    runs = np.flatnonzero(samples.run_subject == subject)
    return timeline_blocks(samples, runs, fractions, gap_s=gap_s)


def timeline_blocks(
    samples: SampleTable,
    runs: np.ndarray,
    fractions: tuple[float, ...],
    *,
    gap_s: float,
) -> list[np.ndarray]:
    """:func:`subject_blocks` over the given runs (indices into ``samples.runs``, in order)."""
    if not np.isclose(sum(fractions), 1.0) or min(fractions) <= 0:
        raise ConfigError(f"block fractions must be positive and sum to 1, got {fractions}")
    runs = np.asarray(runs, dtype=np.int64)
    offsets = np.concatenate([[0.0], np.cumsum(samples.run_duration[runs])])
    total = offsets[-1]
    cuts = total * np.cumsum((0.0, *fractions))
    run_offset = np.zeros(samples.run_duration.size)
    run_offset[runs] = offsets[:-1]
    idx = np.flatnonzero(np.isin(samples.run, runs))
    lo = run_offset[samples.run[idx]] + samples.start[idx]
    hi = run_offset[samples.run[idx]] + samples.time[idx]
    blocks = []
    for k in range(len(fractions)):
        begin = cuts[k] + (gap_s / 2 if k > 0 else 0.0)
        end = cuts[k + 1] - (gap_s / 2 if k < len(fractions) - 1 else 0.0)
        blocks.append(np.sort(idx[(lo >= begin) & (hi <= end)]))
    return blocks


def _common(samples: SampleTable) -> str:
    common = samples.common_footprint_s
    return "" if common is None else f", footprint_s={common:g} s"


class Splitter(ABC):
    """Base class of protocols: ``split(samples)`` yields :class:`Fold` objects."""

    name: ClassVar[str] = ""
    # Whether a fold's val data may hold other subjects' data (LOSO: the training subjects'
    # last blocks). Where it never does, a fold's configuration may be selected on the val
    # scores of every other subject's fold too (pooled nested selection: more val data, and
    # still nothing of the fold's own test data); where it may, each fold selects alone.
    val_from_other_subjects: ClassVar[bool] = False

    def __init__(self, *, min_gap_s: float = MIN_GAP_S):
        if min_gap_s < 0:
            raise ConfigError(f"min_gap_s must be >= 0, got {min_gap_s}")
        self.min_gap_s = float(min_gap_s)

    @abstractmethod
    def split(self, samples: SampleTable) -> Iterator[Fold]:
        """Yield the folds of this protocol for ``samples``."""

    def folds(self, samples: SampleTable) -> list[Fold]:
        """All folds, each checked to have non-empty train, val and test sets."""
        out = list(self.split(samples))
        for fold in out:
            for split in ("train", "val", "test"):
                if fold.split(split).size == 0:
                    gap = guard_gap(samples, self.min_gap_s)
                    raise ConfigError(
                        f"protocol {self.name}: fold {fold.label} has no {split} samples "
                        f"(recordings too short for window_s={samples.window_s:g} s, "
                        f"delay_s={samples.delay_s:g} s{_common(samples)} and a {gap:g} s "
                        "guard gap?)"
                    )
        return out

    def options(self) -> dict[str, Any]:
        """The settings that define this splitter (saved with results)."""
        return {"min_gap_s": self.min_gap_s}


S = TypeVar("S", bound=type[Splitter])
_PROTOCOLS: dict[str, type[Splitter]] = {}


def register_protocol(name: str) -> Callable[[S], S]:
    """Class decorator: make a splitter available by protocol name."""

    def decorate(cls: S) -> S:
        cls.name = name
        _PROTOCOLS[name] = cls
        return cls

    return decorate


def protocol_names() -> list[str]:
    return sorted(_PROTOCOLS)


def protocol_class(name: str) -> type[Splitter]:
    """The splitter class of a protocol; unknown names fail with the known ones."""
    try:
        return _PROTOCOLS[name]
    except KeyError:
        hint = did_you_mean(name, _PROTOCOLS)
        raise ConfigError(
            f"unknown protocol {name!r}{hint}; known protocols: {', '.join(protocol_names())}"
        ) from None


def pools_selection(label: str) -> bool:
    """Whether nested selection may pool val scores across the subjects' folds of the
    protocol that results name ``label`` (``loso_calibrated@2min``, ``loso@site``, ...): only
    where no fold's val data hold another subject's data (see
    :attr:`Splitter.val_from_other_subjects`); a calibration curve's point (``@…min``) takes
    its val from the other subjects, as LOSO does."""
    base, _, variant = label.partition("@")
    if base == "loso_calibrated" and variant.endswith("min"):
        return False
    return not protocol_class(base).val_from_other_subjects


def get_protocol(name: str, **options: Any) -> Splitter:
    """A splitter by name, configured with ``options``."""
    cls = protocol_class(name)
    try:
        return cls(**options)
    except TypeError as exc:
        raise ConfigError(f"protocol {name!r}: {exc}") from None

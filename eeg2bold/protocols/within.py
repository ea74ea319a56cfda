"""``within``: one model per subject; first block trains, middle block selects, last block tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from eeg2bold.errors import ConfigError
from eeg2bold.protocols.base import Fold, Splitter, guard_gap, register_protocol, subject_blocks
from eeg2bold.protocols.samples import SampleTable


@register_protocol("within")
class WithinSubject(Splitter):
    """Within-subject generalisation in time: the ceiling LOSO is compared against."""

    def __init__(self, *, val_fraction: float = 0.2, test_fraction: float = 0.2, **kw: Any):
        super().__init__(**kw)
        if not (
            0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1
        ):
            raise ConfigError(
                f"{self.name}: val_fraction ({val_fraction}) and test_fraction "
                f"({test_fraction}) must be in (0, 1) and leave room for training"
            )
        self.val_fraction = float(val_fraction)
        self.test_fraction = float(test_fraction)

    def fractions(self) -> tuple[float, float, float]:
        """Train, val and test shares of each time line the blocks are cut from."""
        return (1 - self.val_fraction - self.test_fraction, self.val_fraction, self.test_fraction)

    def split(self, samples: SampleTable) -> Iterator[Fold]:
        gap = guard_gap(samples, self.min_gap_s)
        fractions = self.fractions()
        for s, subject in enumerate(samples.subjects):
            train, val, test = subject_blocks(samples, s, fractions, gap_s=gap)
            yield Fold("within", s, subject, train, val, test)

    def options(self) -> dict[str, Any]:
        return {
            **super().options(),
            "val_fraction": self.val_fraction,
            "test_fraction": self.test_fraction,
        }

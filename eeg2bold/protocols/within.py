"""``within``: one model per subject; first block trains, middle block selects, last block tests
(or, with ``val_position: first``, the first block selects and the middle one trains)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal, get_args

import numpy as np

from eeg2bold.errors import ConfigError
from eeg2bold.protocols.base import Fold, Splitter, guard_gap, register_protocol, timeline_blocks
from eeg2bold.protocols.samples import SampleTable

# Where the val block lies: between train and test (``middle``: train | val | test), or before
# train (``first``: val | train | test), so that val, like test, is one guard gap away from
# training data, and selection does not favour what extrapolates only a short way in time.
ValPosition = Literal["middle", "first"]


@register_protocol("within")
class WithinSubject(Splitter):
    """Within-subject generalisation in time: the ceiling LOSO is compared against."""

    def __init__(
        self,
        *,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        val_position: ValPosition = "middle",
        **kw: Any,
    ):
        super().__init__(**kw)
        if val_position not in get_args(ValPosition):
            raise ConfigError(
                f"{self.name}: val_position must be one of {', '.join(get_args(ValPosition))}, "
                f"got {val_position!r}"
            )
        self.val_position = val_position
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

    def blocks(
        self, samples: SampleTable, runs: np.ndarray, gap_s: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Train, val and test indices of the time line of ``runs`` (laid end to end)."""
        train, val, test = self.fractions()
        if self.val_position == "first":
            val_idx, train_idx, test_idx = timeline_blocks(
                samples, runs, (val, train, test), gap_s=gap_s
            )
        else:
            train_idx, val_idx, test_idx = timeline_blocks(
                samples, runs, (train, val, test), gap_s=gap_s
            )
        return train_idx, val_idx, test_idx

    def split(self, samples: SampleTable) -> Iterator[Fold]:
        gap = guard_gap(samples, self.min_gap_s)
        for s, subject in enumerate(samples.subjects):
            runs = np.flatnonzero(samples.run_subject == s)
            yield Fold(self.name, s, subject, *self.blocks(samples, runs, gap))

    def options(self) -> dict[str, Any]:
        out = {
            **super().options(),
            "val_fraction": self.val_fraction,
            "test_fraction": self.test_fraction,
        }
        if self.val_position != "middle":  # the default stays out of labels and hashes
            out["val_position"] = self.val_position
        return out

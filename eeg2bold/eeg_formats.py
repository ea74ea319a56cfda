"""The EEG file formats eeg2bold reads, importable without MNE (the command line lists them
as choices before any reader is imported)."""

from __future__ import annotations

import typing
from typing import Literal

EEGFormat = Literal["eeglab", "brainvision", "edf", "bdf", "fif", "mat", "bids"]
# what a user can name for one file ("bids" is what the BIDS layout finds, not a file's format)
FILE_FORMATS: tuple[str, ...] = tuple(f for f in typing.get_args(EEGFormat) if f != "bids")

"""The EEG file formats eeg2bold reads, importable without MNE (the command line lists them
as choices before any reader is imported)."""

from __future__ import annotations

import typing
from typing import Literal

# what a user can name for one file
FileFormat = Literal["eeglab", "brainvision", "edf", "bdf", "fif", "mat"]
# and what the BIDS layout finds ("bids" is no file's format)
EEGFormat = Literal[FileFormat, "bids"]
FILE_FORMATS: tuple[str, ...] = typing.get_args(FileFormat)

"""Dataset layouts: plain objects that find runs on disk and yield run specs."""

from __future__ import annotations

from eeg2bold.ingest.layouts.base import Layout, safe_key
from eeg2bold.ingest.layouts.bids import BIDSLayout
from eeg2bold.ingest.layouts.cwl import CWLLayout
from eeg2bold.ingest.layouts.files import FileRun, FilesLayout
from eeg2bold.ingest.layouts.natview import NatviewLayout

__all__ = [
    "BIDSLayout",
    "CWLLayout",
    "FileRun",
    "FilesLayout",
    "Layout",
    "NatviewLayout",
    "safe_key",
]

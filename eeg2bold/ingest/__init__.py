"""Ingest real EEG-fMRI recordings into a dataset store.

Readers (:mod:`.readers`), channel rules (:mod:`.channels`), EEG preprocessing
(:mod:`.preprocess`), volume timing (:mod:`.timing`), atlases and BOLD extraction
(:mod:`.atlas`, :mod:`.bold`) and dataset layouts (:mod:`.layouts`) are separate modules; one
engine (:func:`ingest`) consumes the run specs any layout yields and writes through
:mod:`eeg2bold.storage` only.

    from eeg2bold.ingest import CWLLayout, IngestConfig, ingest

    report = ingest(CWLLayout("data/cwl"), "cwl.zarr", config=IngestConfig(
        timing={"markers": ["mri"]}, bold={"tr": 2.0}))
"""

from __future__ import annotations

from eeg2bold.ingest.config import (
    BOLDConfig,
    ChannelConfig,
    EEGConfig,
    IngestConfig,
    TimingConfig,
)
from eeg2bold.ingest.engine import IngestReport, RunOutcome, ingest
from eeg2bold.ingest.errors import IngestError
from eeg2bold.ingest.layouts import (
    BIDSLayout,
    CWLLayout,
    FileRun,
    FilesLayout,
    Layout,
    NatviewLayout,
)
from eeg2bold.ingest.specs import BOLDSource, EEGSource, MatOptions, RunSpec

__all__ = [
    "BIDSLayout",
    "BOLDConfig",
    "BOLDSource",
    "CWLLayout",
    "ChannelConfig",
    "EEGConfig",
    "EEGSource",
    "FileRun",
    "FilesLayout",
    "IngestConfig",
    "IngestError",
    "IngestReport",
    "Layout",
    "MatOptions",
    "NatviewLayout",
    "RunOutcome",
    "RunSpec",
    "TimingConfig",
    "ingest",
]

"""Ingest real EEG-fMRI recordings into a dataset store.

Readers (:mod:`.readers`), channel rules (:mod:`.channels`), EEG preprocessing
(:mod:`.preprocess`), volume timing (:mod:`.timing`), atlases and BOLD extraction
(:mod:`.atlas`, :mod:`.bold`) and dataset layouts (:mod:`.layouts`) are separate modules; one
engine (:func:`ingest`) consumes the run specs any layout yields and writes through
:mod:`eeg2bold.storage` only.

    from eeg2bold.ingest import CWLLayout, IngestConfig, ingest

    report = ingest(CWLLayout("data/cwl"), "cwl.zarr", config=IngestConfig(
        timing={"markers": ["mri"]}, bold={"tr": 2.0}))

Names load on first use: the command line imports :mod:`.config` without the readers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eeg2bold.lazy import lazy_getattr

if TYPE_CHECKING:  # the names for type checkers; at run time, __getattr__ loads them
    from eeg2bold.ingest.config import BOLDConfig as BOLDConfig
    from eeg2bold.ingest.config import ChannelConfig as ChannelConfig
    from eeg2bold.ingest.config import EEGConfig as EEGConfig
    from eeg2bold.ingest.config import IngestConfig as IngestConfig
    from eeg2bold.ingest.config import TimingConfig as TimingConfig
    from eeg2bold.ingest.engine import IngestReport as IngestReport
    from eeg2bold.ingest.engine import RunOutcome as RunOutcome
    from eeg2bold.ingest.engine import ingest as ingest
    from eeg2bold.ingest.errors import IngestError as IngestError
    from eeg2bold.ingest.layouts import BIDSLayout as BIDSLayout
    from eeg2bold.ingest.layouts import CWLLayout as CWLLayout
    from eeg2bold.ingest.layouts import FileRun as FileRun
    from eeg2bold.ingest.layouts import FilesLayout as FilesLayout
    from eeg2bold.ingest.layouts import Layout as Layout
    from eeg2bold.ingest.layouts import NatviewLayout as NatviewLayout
    from eeg2bold.ingest.specs import BOLDSource as BOLDSource
    from eeg2bold.ingest.specs import EEGSource as EEGSource
    from eeg2bold.ingest.specs import MatOptions as MatOptions
    from eeg2bold.ingest.specs import RunSpec as RunSpec

_WHERE = {
    "BOLDConfig": "eeg2bold.ingest.config",
    "ChannelConfig": "eeg2bold.ingest.config",
    "EEGConfig": "eeg2bold.ingest.config",
    "IngestConfig": "eeg2bold.ingest.config",
    "TimingConfig": "eeg2bold.ingest.config",
    "IngestReport": "eeg2bold.ingest.engine",
    "RunOutcome": "eeg2bold.ingest.engine",
    "ingest": "eeg2bold.ingest.engine",
    "IngestError": "eeg2bold.ingest.errors",
    "BIDSLayout": "eeg2bold.ingest.layouts",
    "CWLLayout": "eeg2bold.ingest.layouts",
    "FileRun": "eeg2bold.ingest.layouts",
    "FilesLayout": "eeg2bold.ingest.layouts",
    "Layout": "eeg2bold.ingest.layouts",
    "NatviewLayout": "eeg2bold.ingest.layouts",
    "BOLDSource": "eeg2bold.ingest.specs",
    "EEGSource": "eeg2bold.ingest.specs",
    "MatOptions": "eeg2bold.ingest.specs",
    "RunSpec": "eeg2bold.ingest.specs",
}
__all__ = sorted(_WHERE)

__getattr__ = lazy_getattr(__name__, _WHERE)

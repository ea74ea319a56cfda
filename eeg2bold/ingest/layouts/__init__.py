"""Dataset layouts: plain objects that find runs on disk and yield run specs.

:data:`LAYOUTS` is the registry (``eeg2bold ingest LAYOUT`` has one subcommand per entry);
:func:`make_layout` builds the layout a subcommand names from its options, and each layout's
``timing_defaults()`` are its own IngestConfig defaults (how its volumes are timed), below a
config file and the flags.
"""

from __future__ import annotations

from typing import Any

from eeg2bold.errors import ConfigError, did_you_mean
from eeg2bold.ingest.layouts.base import Layout, safe_key
from eeg2bold.ingest.layouts.bids import BIDSLayout
from eeg2bold.ingest.layouts.cwl import CWLLayout
from eeg2bold.ingest.layouts.files import FileRun, FilesLayout
from eeg2bold.ingest.layouts.natview import NatviewLayout
from eeg2bold.ingest.layouts.table import TableLayout
from eeg2bold.ingest.specs import MatOptions

LAYOUTS: dict[str, type[Layout]] = {
    cls.name: cls for cls in (FilesLayout, CWLLayout, BIDSLayout, NatviewLayout, TableLayout)
}


def make_layout(layout: str, *, mat: MatOptions | None = None, **options: Any) -> Layout:
    """The layout named ``layout`` (:data:`LAYOUTS`) from command-line options."""
    if layout not in LAYOUTS:
        hint = did_you_mean(layout, LAYOUTS)
        raise ConfigError(f"unknown layout {layout!r}{hint}; known: {', '.join(LAYOUTS)}")
    return LAYOUTS[layout].from_options(options, mat=mat)


__all__ = [
    "LAYOUTS",
    "BIDSLayout",
    "CWLLayout",
    "FileRun",
    "FilesLayout",
    "Layout",
    "NatviewLayout",
    "TableLayout",
    "make_layout",
    "safe_key",
]

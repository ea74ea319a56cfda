"""Dataset layouts: plain objects that find runs on disk and yield run specs.

:func:`make_layout` builds the layout ``eeg2bold ingest LAYOUT`` names from its options, and
:data:`CONFIG_DEFAULTS` holds each layout's own IngestConfig defaults (how its volumes are
timed), below a config file and the flags.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eeg2bold.ingest.layouts.base import Layout, safe_key
from eeg2bold.ingest.layouts.bids import BIDSLayout
from eeg2bold.ingest.layouts.cwl import CWLLayout
from eeg2bold.ingest.layouts.files import FileRun, FilesLayout
from eeg2bold.ingest.layouts.natview import NatviewLayout
from eeg2bold.ingest.layouts.table import TableLayout
from eeg2bold.ingest.specs import MatOptions

CONFIG_DEFAULTS: dict[str, dict[str, Any]] = {
    "files": {},  # no timing assumed: --marker or --start is required
    "cwl": {"timing": {"source": "markers", "markers": ["mri"]}},
    "bids": {"timing": {"source": "markers", "markers": ["R128"]}},
    "natview": {"timing": {"source": "start"}},
    "table": {},  # from the manifest's marker/start columns (TableLayout.timing_defaults)
}


def make_layout(layout: str, *, mat: MatOptions | None = None, **options: Any) -> Layout:
    """The layout named ``layout`` from command-line options (paths as given)."""
    if layout == "files":
        confounds = options.get("confounds")
        names = {k: options[k] for k in ("subject", "run") if options.get(k)}  # else FileRun's
        run = FileRun(
            eeg=Path(options["eeg"]),
            bold=Path(options["bold"]),
            confounds=Path(confounds) if confounds else None,
            **names,
        )
        return FilesLayout([run], eeg_format=options.get("eeg_format"), mat=mat)
    if layout == "cwl":
        return CWLLayout(Path(options["root"]))
    if layout == "bids":
        derivatives = options.get("derivatives")
        return BIDSLayout(
            Path(options["root"]),
            derivatives=Path(derivatives) if derivatives else None,
            space=options.get("space"),
            tasks=options.get("task"),
            subjects=options.get("subject"),
        )
    if layout == "table":
        return TableLayout(Path(options["manifest"]))
    if layout == "natview":
        roi_dir = options.get("roi_dir")
        return NatviewLayout(Path(options["root"]), roi_dir=Path(roi_dir) if roi_dir else None)
    raise ValueError(f"unknown layout {layout!r}; known: {', '.join(CONFIG_DEFAULTS)}")


__all__ = [
    "CONFIG_DEFAULTS",
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

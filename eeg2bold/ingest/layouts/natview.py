"""NATVIEW-style runs: BrainVision EEG plus one region-of-interest CSV per run.

::

    ROOT/sub-<s>/[ses-<x>/]eeg/<prefix>_eeg.vhdr       BrainVision (.vmrk, .eeg beside it)
    ROI_DIR/**/<prefix>*.csv                           one row per volume, one column per ROI,
                                                       plus Nvol (volume count) and Tstart
                                                       (first volume's onset, EEG seconds)

``<prefix>`` is the BIDS entity part of the EEG name (``sub-01_ses-01_task-rest_run-01``);
``ROI_DIR`` defaults to ``ROOT``. ``Nvol`` must equal the number of rows; ``Tstart`` places the
volumes (timing source 'start'; scanner markers can be used instead). The TR must be given
(NATVIEW: 2.1 s).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from eeg2bold.ingest.layouts.base import safe_key
from eeg2bold.ingest.specs import BOLDSource, EEGSource, MatOptions, RunSpec


class NatviewLayout:
    """Finds NATVIEW runs under ``root`` (ROI tables under ``roi_dir``, default ``root``)."""

    name = "natview"

    @classmethod
    def from_options(cls, options: Mapping[str, Any], *, mat: MatOptions | None) -> NatviewLayout:
        roi_dir = options.get("roi_dir")
        return cls(Path(options["root"]), roi_dir=Path(roi_dir) if roi_dir else None)

    def timing_defaults(self) -> dict[str, Any]:
        """NATVIEW's tables give each run's first-volume time (``Tstart``)."""
        return {"timing": {"source": "start"}}

    def __init__(
        self,
        root: Path,
        *,
        roi_dir: Path | None = None,
        start_column: str = "Tstart",
        count_column: str = "Nvol",
    ) -> None:
        self.root = Path(root)
        self.roi_dir = Path(roi_dir) if roi_dir else self.root
        self.start_column = start_column
        self.count_column = count_column

    def specs(self) -> Iterator[RunSpec]:
        tables = sorted(self.roi_dir.rglob("*.csv"))
        for vhdr in sorted(self.root.glob("sub-*/**/eeg/*.vhdr")):
            prefix = vhdr.name[: -len(".vhdr")].removesuffix("_eeg")
            parts = dict(p.split("-", 1) for p in prefix.split("_") if "-" in p)
            matches = [t for t in tables if t.name.startswith(prefix + "_") or t.stem == prefix]
            problem = None
            bold = None
            if not matches:
                problem = f"{self.roi_dir}: no ROI table {prefix}*.csv for {vhdr.name}"
            elif len(matches) > 1:
                names = ", ".join(t.name for t in matches[:4])
                problem = f"{self.roi_dir}: several ROI tables for {vhdr.name}: {names}"
            else:
                bold = BOLDSource(
                    kind="table",
                    paths=(matches[0],),
                    start_column=self.start_column,
                    count_column=self.count_column,
                )
            run = "_".join(p for p in prefix.split("_") if not p.startswith("sub-")) or "run-1"
            yield RunSpec(
                subject=safe_key(f"sub-{parts.get('sub', vhdr.parent.parent.name)}"),
                run=safe_key(run),
                session=parts.get("ses"),
                task=parts.get("task"),
                eeg=EEGSource(path=vhdr, format="brainvision"),
                bold=bold,
                problem=problem,
            )

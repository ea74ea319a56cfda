"""Many runs in one call: a manifest (CSV or TSV) with one row per run.

Columns ``eeg``, ``bold``, ``subject`` and ``run`` are required; ``confounds``, ``tr``,
``start`` (first volume's onset, EEG seconds), ``marker`` (the scanner marker's name) and
``format`` (the EEG format, when the file name does not say it) are optional. Relative paths
are resolved against the manifest's folder, so a manifest moves with its data. Each row is one
:class:`~eeg2bold.ingest.specs.RunSpec`: the engine resumes, skips and reports runs exactly as
for the other layouts. A row's own values (TR, start) are hashed with its files, so editing
one row re-processes that run only.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from eeg2bold.eeg_formats import FILE_FORMATS
from eeg2bold.ingest.errors import IngestError
from eeg2bold.ingest.specs import (
    BOLDSource,
    EEGSource,
    MatOptions,
    RunSpec,
    bold_kind,
    eeg_format,
)

REQUIRED = ("eeg", "bold", "subject", "run")
OPTIONAL = ("confounds", "tr", "start", "marker", "format")
# a manifest row names no MATLAB variable or rate, so MATLAB files need `ingest files`
FORMATS = tuple(f for f in FILE_FORMATS if f != "mat")


class TableLayout:
    """The runs a manifest lists (``eeg2bold ingest table MANIFEST OUT``)."""

    name = "table"

    @classmethod
    def from_options(cls, options: Mapping[str, Any], *, mat: MatOptions | None) -> TableLayout:
        return cls(Path(options["manifest"]))

    def __init__(self, manifest: Path) -> None:
        self.manifest = Path(manifest)
        self.root = self.manifest.resolve().parent
        self.rows = read_manifest(self.manifest)

    def timing_defaults(self) -> dict[str, Any]:
        """How volumes are timed when the command line does not say: from the ``marker``
        column (one name for every row) or the ``start`` column."""
        markers = {r["marker"] for r in self.rows if r.get("marker")}
        if len(markers) > 1:
            raise IngestError(
                f"{self.manifest}: the marker column names {len(markers)} different markers "
                f"({', '.join(sorted(markers))}); give rows with another marker their own manifest"
            )
        if markers:
            return {"timing": {"source": "markers", "markers": sorted(markers)}}
        if any(r.get("start") for r in self.rows):
            return {"timing": {"source": "start"}}
        return {}

    def specs(self) -> Iterator[RunSpec]:
        for number, row in enumerate(self.rows, start=2):  # row 1 is the header
            where = f"{self.manifest} row {number}"
            eeg, bold = self._path(row["eeg"]), self._path(row["bold"])
            fmt = row.get("format") or eeg_format(eeg)
            kind = bold_kind(bold)
            problem = None
            if fmt not in FORMATS:
                problem = (
                    f"{where}: {eeg}: unknown EEG format"
                    + (f" {fmt!r}" if fmt else "")
                    + f" (a format column value: {', '.join(FORMATS)})"
                )
            elif kind is None:
                problem = f"{where}: {bold}: unknown BOLD format (.nii, .nii.gz, .tsv, .csv)"
            confounds = self._path(row["confounds"]) if row.get("confounds") else None
            if problem is None and kind == "table" and confounds is not None:
                problem = (
                    f"{where}: {confounds}: confounds given with the region table {bold}, which "
                    "is used as given: drop them, or give the NIfTI image"
                )
            tr = _number(row, "tr", where)
            start = _number(row, "start", where)
            if isinstance(tr, str):
                problem, tr = problem or tr, None
            if isinstance(start, str):
                problem, start = problem or start, None
            yield RunSpec(
                subject=row["subject"],
                run=row["run"],
                eeg=EEGSource(path=eeg, format=fmt) if fmt in FORMATS else None,  # type: ignore[arg-type]
                bold=BOLDSource(kind=kind, paths=(bold,), confounds=confounds, tr=tr)
                if kind
                else None,
                start_s=start,
                problem=problem,
                settings=tuple(
                    (k, row[k]) for k in ("tr", "start", "marker", "format") if row.get(k)
                ),
                where=f"row {number}",
            )

    def _path(self, text: str) -> Path:
        path = Path(text).expanduser()
        return path if path.is_absolute() else self.root / path


def read_manifest(path: Path) -> list[dict[str, str]]:
    """The manifest's rows as dicts of stripped strings; one-line errors name the file and
    the row."""
    if not path.is_file():
        raise IngestError(f"{path}: no such manifest")
    delimiter = "," if path.suffix.lower() == ".csv" else "\t"
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        header = [h.strip() for h in reader.fieldnames or []]
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise IngestError(
                f"{path}: the manifest lacks column(s) {', '.join(missing)} (it has "
                f"{', '.join(header) or 'none'}; needs {', '.join(REQUIRED)}, optional "
                f"{', '.join(OPTIONAL)})"
            )
        unknown = [c for c in header if c not in REQUIRED + OPTIONAL]
        if unknown:
            raise IngestError(
                f"{path}: unknown manifest column(s) {', '.join(unknown)} (known: "
                f"{', '.join(REQUIRED + OPTIONAL)})"
            )
        rows = []
        numbers: dict[tuple[str, str], list[int]] = {}  # (subject, run) -> its rows
        for number, raw in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
            if not any(row.values()):
                continue  # a blank line
            empty = [c for c in REQUIRED if not row.get(c)]
            if empty:
                raise IngestError(f"{path} row {number}: no value for {', '.join(empty)}")
            rows.append(row)
            numbers.setdefault((row["subject"], row["run"]), []).append(number)
    twice = [
        f"{s}/{r} (rows {', '.join(map(str, n))})"
        for (s, r), n in sorted(numbers.items())
        if len(n) > 1
    ]
    if twice:
        raise IngestError(f"{path}: run(s) listed twice: {'; '.join(twice)}")
    if not rows:
        raise IngestError(f"{path}: the manifest lists no run")
    return rows


def _number(row: dict[str, str], column: str, where: str) -> float | str | None:
    """The column's value as a number, None when empty, or a problem message."""
    text = row.get(column)
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        return f"{where}: {column} {text!r} is not a number"
    if column == "tr" and value <= 0:
        return f"{where}: tr {text!r} must be positive"
    return value

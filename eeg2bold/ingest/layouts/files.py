"""Explicit files: each run is an EEG file plus a BOLD NIfTI or region table, named directly."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eeg2bold.ingest.specs import (
    BOLDSource,
    EEGFormat,
    EEGSource,
    MatOptions,
    RunSpec,
    bold_kind,
    eeg_format,
)


@dataclass(frozen=True, kw_only=True)
class FileRun:
    """One run's files. ``confounds``: SPM ``rp_*.txt`` or fMRIPrep confounds TSV."""

    eeg: Path
    bold: Path
    subject: str = "sub-01"
    run: str = "run-1"
    confounds: Path | None = None
    start_s: float | None = None


class FilesLayout:
    """Runs given file by file (the ``eeg2bold ingest files`` command gives one).

    ``eeg_format`` overrides the format implied by the file name; ``mat`` says how to read
    EEG arrays from MATLAB files.
    """

    name = "files"

    def __init__(
        self,
        runs: Sequence[FileRun],
        *,
        eeg_format: EEGFormat | None = None,
        mat: MatOptions | None = None,
    ) -> None:
        self.runs = list(runs)
        self.eeg_format = eeg_format
        self.mat = mat
        paths = [str(p.resolve().parent) for r in self.runs for p in (r.eeg, r.bold)]
        self.root = Path(os.path.commonpath(paths)) if paths else Path.cwd()

    @classmethod
    def from_options(cls, options: Mapping[str, Any], *, mat: MatOptions | None) -> FilesLayout:
        """One run from ``--eeg``, ``--bold`` and the optional names (else :class:`FileRun`'s)."""
        confounds = options.get("confounds")
        names = {k: options[k] for k in ("subject", "run") if options.get(k)}
        run = FileRun(
            eeg=Path(options["eeg"]),
            bold=Path(options["bold"]),
            confounds=Path(confounds) if confounds else None,
            **names,
        )
        return cls([run], eeg_format=options.get("eeg_format"), mat=mat)

    def timing_defaults(self) -> dict[str, Any]:
        """None: explicit files say nothing of timing, so --marker or --start is required."""
        return {}

    def specs(self) -> Iterator[RunSpec]:
        for r in self.runs:
            fmt = self.eeg_format or eeg_format(r.eeg)
            kind = bold_kind(r.bold)
            problem = None
            if fmt is None:
                problem = (
                    f"{r.eeg}: unknown EEG format (expected .set, .vhdr, .edf, .bdf, .fif, .mat)"
                )
            elif kind is None:
                problem = f"{r.bold}: unknown BOLD format (expected .nii, .nii.gz, .tsv, .csv)"
            elif fmt == "mat" and self.mat is None:
                problem = f"{r.eeg}: MATLAB EEG needs --mat-variable and --mat-sfreq"
            elif kind == "table" and r.confounds is not None:
                problem = (
                    f"{r.confounds}: --confounds given with the region table {r.bold}, which is "
                    "used as given (nothing would regress them out): drop --confounds, or give "
                    "the NIfTI image"
                )
            eeg = EEGSource(path=r.eeg, format=fmt, mat=self.mat) if fmt else None
            bold = BOLDSource(kind=kind, paths=(r.bold,), confounds=r.confounds) if kind else None
            yield RunSpec(
                subject=r.subject,
                run=r.run,
                eeg=eeg,
                bold=bold,
                start_s=r.start_s,
                problem=problem,
            )

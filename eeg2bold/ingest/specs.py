"""Run specs: what a layout finds on disk, handed to the ingest engine.

A layout never reads signals; it only says, per run, which files hold the EEG and the BOLD
(and any per-run facts the layout knows, such as a start time). The engine does the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from eeg2bold.eeg_formats import EEGFormat

BOLDKind = Literal["nifti", "table"]
ConfoundsKind = Literal["spm", "fmriprep"]

_EEG_SUFFIXES: dict[str, EEGFormat] = {
    ".set": "eeglab",
    ".vhdr": "brainvision",
    ".edf": "edf",
    ".bdf": "bdf",
    ".fif": "fif",
    ".mat": "mat",
}
_NIFTI_SUFFIXES = (".nii", ".nii.gz")
_TABLE_SUFFIXES = (".tsv", ".csv", ".txt")


def eeg_format(path: Path) -> EEGFormat | None:
    """The EEG format implied by a file name (``*.fif.gz`` counts as FIF), or None."""
    name = path.name.lower()
    if name.endswith(".fif.gz"):
        return "fif"
    return _EEG_SUFFIXES.get(path.suffix.lower())


def bold_kind(path: Path) -> BOLDKind | None:
    """'nifti' or 'table' from a file name, or None."""
    name = path.name.lower()
    if name.endswith(_NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(_TABLE_SUFFIXES):
        return "table"
    return None


@dataclass(frozen=True, kw_only=True)
class MatOptions:
    """How to read an EEG array from a MATLAB file (no header there says it)."""

    variable: str
    sfreq: float
    units: Literal["V", "mV", "uV"] = "uV"
    channels: tuple[str, ...] | None = None


def mat_options(
    variable: str | None,
    sfreq: float | None,
    *,
    units: Literal["V", "mV", "uV"] | None = None,
    channels: tuple[str, ...] | None = None,
) -> MatOptions | None:
    """MATLAB EEG options from their command-line parts (None when none is given; units
    not given: :class:`MatOptions`' default)."""
    from eeg2bold.errors import ConfigError

    if not (variable or sfreq):
        return None
    if not (variable and sfreq):
        raise ConfigError("MATLAB EEG needs both --mat-variable and --mat-sfreq")
    given = {"units": units} if units else {}
    return MatOptions(variable=variable, sfreq=sfreq, channels=channels, **given)


@dataclass(frozen=True, kw_only=True)
class EEGSource:
    """One EEG recording. ``bids_root`` is set for files read through mne-bids."""

    path: Path
    format: EEGFormat
    mat: MatOptions | None = None
    bids_root: Path | None = None


@dataclass(frozen=True, kw_only=True)
class BOLDSource:
    """One BOLD run: a 4-D NIfTI, a series of 3-D NIfTIs, or a region table.

    ``tr`` is a TR the layout read from a sidecar (the config's TR wins when both are given);
    ``confounds`` a motion-parameter (SPM ``rp_*.txt``) or fMRIPrep confounds file, which may
    be a path that does not exist: the run then fails with that path named. A region table may
    carry its own first-volume onset (``start_column``, seconds on the EEG clock) and volume
    count (``count_column``); those columns are not regions.
    """

    kind: BOLDKind
    paths: tuple[Path, ...]
    confounds: Path | None = None
    confounds_kind: ConfoundsKind | None = None
    tr: float | None = None
    start_column: str | None = None
    count_column: str | None = None

    @property
    def metadata_columns(self) -> tuple[str, ...]:
        """Table columns that describe the run instead of holding a region."""
        return tuple(c for c in (self.start_column, self.count_column) if c)


@dataclass(frozen=True, kw_only=True)
class RunSpec:
    """One run to ingest.

    ``start_s`` is a layout-provided onset of the first volume (used with timing source
    'start' when the config gives none); ``n_volumes`` a layout-provided volume count to check.
    ``problem`` is set when the layout could not assemble the run: it is reported as failed.
    ``extra_inputs`` are further files that determine the run (sidecars), hashed with it;
    ``settings`` values the layout gives this run alone (a manifest row's TR, start), hashed
    with it too, so changing one re-processes that run.
    """

    subject: str
    run: str
    eeg: EEGSource | None
    bold: BOLDSource | None
    session: str | None = None
    task: str | None = None
    start_s: float | None = None
    n_volumes: int | None = None
    problem: str | None = None
    extra_inputs: tuple[Path, ...] = field(default=())
    settings: tuple[tuple[str, str], ...] = field(default=())
    where: str | None = None  # where the layout found it (a manifest's row), for messages

    @property
    def key(self) -> str:
        return f"{self.subject}/{self.run}"

    @property
    def named(self) -> str:
        """The run as messages name it: its key, and where it was listed."""
        return f"{self.key} ({self.where})" if self.where else self.key

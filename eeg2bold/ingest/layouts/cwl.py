"""The CWL "eyes open - eyes closed" EEG/fMRI layout (van der Meer et al., 2016).

::

    ROOT/<subject>/CWL_Data/eeg/in-scan/*.set          EEGLAB, scanner markers "mri"
    ROOT/<subject>/CWL_Data/mri/epi_normalized/*.nii   normalised EPI (MNI): 4-D files, or 3-D
                                                       volumes (one series per name stem or
                                                       per sub-folder)
    ROOT/<subject>/CWL_Data/mri/epi_motionparams/rp_*.txt   SPM motion parameters

(``mri/`` directly under ``<subject>`` is accepted too.) Pairing: the in-scan EEG files and the
BOLD series of a subject are paired in sorted name order, and their counts must agree; a
motion file pairs with the series whose name ends with the part after ``rp_`` (SPM names it
after the realigned image), else by sorted order when the counts agree, else the run fails with
the expected path named. Marker/volume counts are then checked per run, which catches a
mis-pairing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import nibabel as nib

from eeg2bold.ingest.layouts.base import safe_key
from eeg2bold.ingest.specs import BOLDSource, EEGSource, MatOptions, RunSpec

_NII = (".nii", ".nii.gz")


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".txt", ".set"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


class CWLLayout:
    """Finds the CWL runs under ``root`` (one folder per subject)."""

    name = "cwl"

    @classmethod
    def from_options(cls, options: Mapping[str, Any], *, mat: MatOptions | None) -> CWLLayout:
        return cls(Path(options["root"]))

    def timing_defaults(self) -> dict[str, Any]:
        """The CWL recordings mark each volume with an ``mri`` annotation."""
        return {"timing": {"source": "markers", "markers": ["mri"]}}

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def specs(self) -> Iterator[RunSpec]:
        for subject_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            if subject_dir.name.startswith("."):
                continue
            base = subject_dir / "CWL_Data"
            if not base.is_dir():
                base = subject_dir
            eeg_dir = base / "eeg" / "in-scan"
            if not eeg_dir.is_dir():
                continue
            yield from self._subject(subject_dir, base, eeg_dir)

    def _subject(self, subject_dir: Path, base: Path, eeg_dir: Path) -> Iterator[RunSpec]:
        subject = safe_key(subject_dir.name)
        sets = sorted(eeg_dir.glob("*.set"))
        mri = base / "mri" if (base / "mri").is_dir() else subject_dir / "mri"
        epi_dir, motion_dir = mri / "epi_normalized", mri / "epi_motionparams"
        series = _bold_series(epi_dir) if epi_dir.is_dir() else []
        motion = sorted(motion_dir.glob("rp_*.txt")) if motion_dir.is_dir() else []
        problem = None
        if not series:
            problem = f"{epi_dir}: no normalised EPI (*.nii) found"
        elif len(series) != len(sets):
            problem = (
                f"{subject_dir}: {len(sets)} in-scan EEG file(s) but {len(series)} BOLD "
                f"series in {epi_dir}: cannot pair them"
            )
        for i, eeg_path in enumerate(sets):
            bold = None
            if problem is None:
                paths = series[i]
                bold = BOLDSource(
                    kind="nifti",
                    paths=paths,
                    confounds=_motion_for(paths, motion, index=i, n=len(sets), folder=motion_dir),
                    confounds_kind="spm",
                )
            yield RunSpec(
                subject=subject,
                run=safe_key(_stem(eeg_path)),
                eeg=EEGSource(path=eeg_path, format="eeglab"),
                bold=bold,
                problem=problem,
            )


def _bold_series(folder: Path) -> list[tuple[Path, ...]]:
    """4-D files each form a series; 3-D files group by sub-folder or by name stem."""
    files = sorted(p for p in folder.iterdir() if p.name.lower().endswith(_NII))
    four_d = [p for p in files if _ndim(p) == 4]
    three_d = [p for p in files if _ndim(p) == 3]
    series: list[tuple[Path, ...]] = [(p,) for p in four_d]
    groups: dict[str, list[Path]] = {}
    for p in three_d:
        groups.setdefault(re.sub(r"\d+$", "", _stem(p)), []).append(p)
    series += [tuple(g) for _, g in sorted(groups.items())]
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        vols = sorted(p for p in sub.iterdir() if p.name.lower().endswith(_NII))
        if vols:
            series.append(tuple(vols) if len(vols) > 1 else (vols[0],))
    return series


def _ndim(path: Path) -> int:
    try:
        img: Any = nib.load(path)
        shape = img.header.get_data_shape()
    except Exception:
        return 0
    return 4 if len(shape) == 4 and shape[3] > 1 else 3


def _motion_for(
    paths: tuple[Path, ...], motion: list[Path], *, index: int, n: int, folder: Path
) -> Path:
    stem = _stem(paths[0])
    by_name = [m for m in motion if stem.endswith(_stem(m)[3:])]
    if len(by_name) == 1:
        return by_name[0]
    if len(motion) == n:
        return motion[index]
    return folder / f"rp_{stem}.txt"

"""BIDS raw EEG (read through mne-bids) paired with fMRIPrep derivatives.

::

    ROOT/sub-<s>/[ses-<x>/]eeg/sub-<s>[_ses-<x>]_task-<t>[_acq-<a>][_run-<r>]_eeg.<vhdr|edf|bdf|set|fif>
    DERIV/sub-<s>/[ses-<x>/]func/<same entities>[_space-<S>]_desc-preproc_bold.nii.gz
    DERIV/sub-<s>/[ses-<x>/]func/<same entities>_desc-confounds_timeseries.tsv

``DERIV`` defaults to ``ROOT/derivatives/fmriprep``. An EEG run pairs with the BOLD run of the
same subject, session, task, acquisition and run (run numbers compared as numbers). When
fMRIPrep wrote several output spaces, choose one (``space``). The TR comes from the BOLD
JSON sidecar's ``RepetitionTime`` unless given. EEG sidecars (channels.tsv marks bad channels,
events.tsv holds the scanner markers) are part of the run's inputs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from eeg2bold.ingest.specs import BOLDSource, EEGSource, MatOptions, RunSpec

_EEG_EXT = (".vhdr", ".edf", ".bdf", ".set", ".fif")
_KEYS = ("session", "task", "acquisition", "run")
_SHORT = {"session": "ses", "task": "task", "acquisition": "acq", "run": "run"}


def _entities(name: str) -> dict[str, Any]:
    import mne_bids

    return mne_bids.get_entities_from_fname(name, on_error="ignore")


def _same(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if a.isdigit() and b.isdigit():
        return int(a) == int(b)
    return a == b


class BIDSLayout:
    """Finds BIDS EEG runs under ``root`` and their fMRIPrep outputs under ``derivatives``."""

    name = "bids"

    @classmethod
    def from_options(cls, options: Mapping[str, Any], *, mat: MatOptions | None) -> BIDSLayout:
        derivatives = options.get("derivatives")
        return cls(
            Path(options["root"]),
            derivatives=Path(derivatives) if derivatives else None,
            space=options.get("space"),
            tasks=options.get("task"),
            subjects=options.get("subject"),
        )

    def timing_defaults(self) -> dict[str, Any]:
        """BrainVision recordings in BIDS mark each volume with an ``R128`` annotation."""
        return {"timing": {"source": "markers", "markers": ["R128"]}}

    def __init__(
        self,
        root: Path,
        *,
        derivatives: Path | None = None,
        space: str | None = None,
        tasks: Sequence[str] | None = None,
        subjects: Sequence[str] | None = None,
    ) -> None:
        self.root = Path(root)
        default = self.root / "derivatives" / "fmriprep"
        self.derivatives = Path(derivatives) if derivatives else default
        self.space = space
        self.tasks = tuple(tasks) if tasks else None
        self.subjects = tuple(s.removeprefix("sub-") for s in subjects) if subjects else None

    def specs(self) -> Iterator[RunSpec]:
        for eeg_path in self._eeg_files():
            ent = _entities(eeg_path.name)
            subject = ent["subject"]
            if self.subjects and subject not in self.subjects:
                continue
            if self.tasks and ent.get("task") not in self.tasks:
                continue
            run = "_".join(f"{_SHORT[k]}-{ent[k]}" for k in _KEYS if ent.get(k)) or "run-1"
            bold, problem = self._bold_for(ent)
            yield RunSpec(
                subject=f"sub-{subject}",
                run=run,
                session=ent.get("session"),
                task=ent.get("task"),
                eeg=EEGSource(path=eeg_path, format="bids", bids_root=self.root),
                bold=bold,
                problem=problem,
                extra_inputs=tuple(self._eeg_sidecars(eeg_path)),
            )

    def _eeg_files(self) -> list[Path]:
        files = []
        for path in sorted(self.root.glob("sub-*/**/eeg/*_eeg.*")):
            if "derivatives" in path.relative_to(self.root).parts:
                continue
            if path.suffix.lower() in _EEG_EXT:
                files.append(path)
        return files

    def _eeg_sidecars(self, eeg_path: Path) -> list[Path]:
        prefix = eeg_path.name[: eeg_path.name.rindex("_eeg")]
        names = (f"{prefix}_channels.tsv", f"{prefix}_events.tsv", f"{prefix}_eeg.json")
        return [eeg_path.parent / n for n in names if (eeg_path.parent / n).exists()]

    def _bold_for(self, ent: dict[str, Any]) -> tuple[BOLDSource | None, str | None]:
        func = self.derivatives / f"sub-{ent['subject']}"
        if ent.get("session"):
            func = func / f"ses-{ent['session']}"
        func = func / "func"
        wanted = f"sub-{ent['subject']}" + "".join(
            f"_{_SHORT[k]}-{ent[k]}" for k in _KEYS if ent.get(k)
        )
        candidates = []
        for path in sorted(func.glob("*_desc-preproc_bold.nii*")) if func.is_dir() else []:
            other = _entities(path.name)
            if all(_same(ent.get(k), other.get(k)) for k in _KEYS) and (
                self.space is None or other.get("space") == self.space
            ):
                candidates.append((path, other))
        if not candidates:
            space = f"_space-{self.space}" if self.space else "[_space-*]"
            return None, f"{func}: no fMRIPrep BOLD {wanted}{space}_desc-preproc_bold.nii.gz"
        if len(candidates) > 1:
            spaces = sorted(str(o.get("space")) for _, o in candidates)
            return None, (
                f"{func}: several preprocessed BOLD files for {wanted} (spaces {spaces}); "
                "choose one with --space"
            )
        path, _ = candidates[0]
        prefix = path.name[: path.name.index("_desc-preproc_bold")]
        base = prefix.split("_space-")[0].split("_res-")[0]
        confounds = func / f"{base}_desc-confounds_timeseries.tsv"
        if not confounds.exists() and (func / f"{base}_desc-confounds_regressors.tsv").exists():
            confounds = func / f"{base}_desc-confounds_regressors.tsv"
        bold = BOLDSource(
            kind="nifti",
            paths=(path,),
            confounds=confounds,
            confounds_kind="fmriprep",
            tr=self._sidecar_tr(path, ent),
        )
        return bold, None

    def _sidecar_tr(self, bold: Path, ent: dict[str, Any]) -> float | None:
        name = bold.name.split(".nii")[0] + ".json"
        raw_func = self.root / f"sub-{ent['subject']}"
        if ent.get("session"):
            raw_func = raw_func / f"ses-{ent['session']}"
        raw_name = bold.name.split("_space-")[0].split("_desc-")[0] + "_bold.json"
        for sidecar in (bold.parent / name, raw_func / "func" / raw_name):
            if sidecar.exists():
                try:
                    value = json.loads(sidecar.read_text()).get("RepetitionTime")
                except (OSError, ValueError):
                    continue
                if value:
                    return float(value)
        return None

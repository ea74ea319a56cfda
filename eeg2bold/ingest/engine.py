"""The ingest engine: run specs in, validated runs out through :mod:`eeg2bold.storage`.

One loop for every layout, in two passes:

1. *check* (cheap, per run): hash the input files; skip the run if the store already holds it
   from the same inputs and options; otherwise read headers only — channel rules, BOLD volume
   count and TR, volume timing — so bad runs fail before any heavy work.
2. *ingest* (per run): agree on one channel and ROI list for the dataset (exact or intersect),
   keep the atlas with the dataset (NIfTI runs: label image, and each ROI's centre in the
   dataset info), then read, preprocess, extract and write each run atomically.

A failing run is reported and the others still land (``on_error="skip"``), or the ingest stops
at the first failure (``"abort"``); runs already written stay either way.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm.auto import tqdm

from eeg2bold.errors import DatasetError, Eeg2BoldError
from eeg2bold.ingest.atlas import XYZ, Atlas, load_atlas
from eeg2bold.ingest.bold import extract_bold
from eeg2bold.ingest.checks import (
    MAX_WARNINGS,
    CheckedRun,
    CommonSets,
    Hasher,
    bold_units,
    check_run,
    check_same_options,
    check_unique,
    common_sets,
)
from eeg2bold.ingest.config import IngestConfig
from eeg2bold.ingest.errors import IngestError
from eeg2bold.ingest.layouts.base import Layout
from eeg2bold.ingest.preprocess import DEFAULT_GROUP, preprocess_eeg
from eeg2bold.ingest.readers import read_eeg
from eeg2bold.ingest.specs import RunSpec
from eeg2bold.provenance import versions
from eeg2bold.storage import (
    BOLDInfo,
    DatasetInfo,
    EEGInfo,
    RunData,
    WritableDataset,
    create_dataset,
    open_dataset,
)

OnError = Literal["skip", "abort"]
Status = Literal["written", "unchanged", "replaced", "skipped", "failed"]
STEP_ORDER = (
    "pick channels",
    "crop (optional)",
    "notch",
    "band-pass",
    "resample",
    "montage",
    "bad channels",
    "re-reference",
    "to float32 uV",
)


@dataclass
class RunOutcome:
    """What happened to one run, and why."""

    key: str
    status: Status
    reason: str = ""
    notes: list[str] = field(default_factory=list)


@dataclass
class IngestReport:
    """Every run's outcome; ``failed`` non-empty means the ingest was not complete."""

    dataset: str
    layout: str
    outcomes: list[RunOutcome] = field(default_factory=list)

    def count(self, status: Status) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def failed(self) -> list[RunOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    def summary(self) -> str:
        parts = [
            f"{self.count(s)} {s}"
            for s in ("written", "replaced", "unchanged", "skipped", "failed")
            if self.count(s) or s in ("written", "failed")
        ]
        return f"ingest {self.layout} -> {self.dataset}: " + ", ".join(parts)

    def lines(self) -> list[str]:
        """Summary line, then one line per run (reason for failures, notes otherwise)."""
        out = [self.summary()]
        for o in self.outcomes:
            detail = o.reason if o.status == "failed" else "; ".join(o.notes)
            out.append(f"  {o.key:<28} {o.status}" + (f": {detail}" if detail else ""))
        return out


def ingest(
    layout: Layout,
    out: str | os.PathLike[str],
    *,
    config: IngestConfig,
    on_error: OnError = "skip",
    common: CommonSets = "exact",
    overwrite: bool = False,
    name: str | None = None,
    progress: bool = True,
    group_size: int = DEFAULT_GROUP,
    storage_options: dict[str, Any] | None = None,
    echo: Callable[[str], None] | None = None,
) -> IngestReport:
    """Ingest every run a layout yields into the dataset store at ``out``.

    Raises :class:`IngestError` for problems of the whole ingest (no runs, channel or ROI
    sets that differ under ``common="exact"``, a store made with other options or holding
    another atlas) and, with ``on_error="abort"``, for the first failing run. Otherwise
    failures are in the report.
    ``echo`` receives notes and failures as they happen (default: stderr, beside the bars).
    """
    specs = list(layout.specs())
    if not specs:
        raise IngestError(f"{layout.root}: no runs found for layout {layout.name!r}")
    check_unique(specs, layout=layout)
    existing = _open_existing(out, storage_options=storage_options)
    engine = _Engine(
        layout=layout,
        config=config,
        existing=existing,
        on_error=on_error,
        say=echo or (lambda msg: tqdm.write(msg, file=sys.stderr)),
        progress=progress,
    )
    if existing is not None:
        check_same_options(
            existing.info, config=config, config_sha=engine.config_sha, out=existing.url
        )
    checked = engine.check_all(specs)
    if checked:
        channels, rois, lacking = common_sets(checked, existing=existing, common=common)
        for item in checked:
            if item.spec.key in lacking:
                engine.fail(item.spec, IngestError(lacking[item.spec.key]))
        checked = [c for c in checked if c.spec.key not in lacking]
    if checked:
        nifti = any(c.spec.bold is not None and c.spec.bold.kind == "nifti" for c in checked)
        atlas = engine.atlas() if nifti else None
        dataset = _dataset(
            out,
            layout=layout,
            config=config,
            config_sha=engine.config_sha,
            channels=channels,
            rois=rois,
            checked=checked,
            name=name,
            atlas_name=atlas.name if atlas is not None else "region table",
            roi_mni=roi_centres(atlas, rois) if atlas is not None else None,
            storage_options=storage_options,
        )
        if atlas is not None:
            _keep_atlas(dataset, atlas)
        engine.write_all(
            checked,
            dataset=dataset,
            channels=channels,
            rois=rois,
            overwrite=overwrite,
            group_size=group_size,
        )
    report = IngestReport(dataset=str(out), layout=layout.name)
    report.outcomes = [engine.outcomes[s.key] for s in specs if s.key in engine.outcomes]
    return report


class _Engine:
    """State shared by the two passes: outcomes so far, the failure policy, caches."""

    def __init__(
        self,
        *,
        layout: Layout,
        config: IngestConfig,
        existing: WritableDataset | None,
        on_error: OnError,
        say: Callable[[str], None],
        progress: bool,
    ) -> None:
        self.layout = layout
        self.config = config
        self.config_sha = config.sha256()
        self.existing = existing
        self.on_error = on_error
        self.say = say
        self.progress = progress
        self.outcomes: dict[str, RunOutcome] = {}
        self.hasher = Hasher()
        self._atlas: Atlas | None = None

    def atlas(self) -> Atlas:
        """The config's atlas, built or loaded once per ingest (only if a run needs it)."""
        if self._atlas is None:
            self._atlas = load_atlas(self.config.bold)
        return self._atlas

    def fail(self, spec: RunSpec, exc: BaseException) -> None:
        """Record a failed run, or stop the ingest (``on_error="abort"``)."""
        if self.on_error == "abort":
            raise exc if isinstance(exc, Eeg2BoldError) else IngestError(_describe(spec, exc))
        reason = str(exc) if isinstance(exc, Eeg2BoldError) else _describe(spec, exc)
        self.outcomes[spec.key] = RunOutcome(spec.key, "failed", reason)
        self.say(f"eeg2bold: run {spec.key} failed: {reason}")

    def check_all(self, specs: list[RunSpec]) -> list[CheckedRun]:
        """Pass 1: hashes and headers; skipped and failed runs are recorded here."""
        checked = []
        with tqdm(
            total=len(specs),
            desc="check",
            unit="run",
            file=sys.stderr,
            disable=not self.progress,
            leave=False,
        ) as bar:
            for spec in specs:
                bar.set_postfix_str(spec.key, refresh=False)
                try:
                    item = check_run(
                        spec,
                        layout=self.layout,
                        config=self.config,
                        config_sha=self.config_sha,
                        existing=self.existing,
                        hasher=self.hasher,
                        atlas=self.atlas,
                    )
                except Exception as exc:
                    self.fail(spec, exc)
                else:
                    if item is None:
                        self.outcomes[spec.key] = RunOutcome(
                            spec.key, "skipped", notes=["already stored from the same inputs"]
                        )
                    else:
                        checked.append(item)
                bar.update()
        return checked

    def write_all(
        self,
        checked: list[CheckedRun],
        *,
        dataset: WritableDataset,
        channels: tuple[str, ...],
        rois: tuple[str, ...],
        overwrite: bool,
        group_size: int,
    ) -> None:
        """Pass 2: read, preprocess, extract and write each run atomically."""
        with tqdm(
            total=len(checked),
            desc="ingest",
            unit="run",
            file=sys.stderr,
            disable=not self.progress,
        ) as bar:
            for item in checked:
                bar.set_postfix_str(item.spec.key, refresh=True)
                for note in item.notes:
                    self.say(f"eeg2bold: run {item.spec.key}: {note}")
                try:
                    status, notes = _ingest_run(
                        item,
                        dataset=dataset,
                        layout=self.layout,
                        config=self.config,
                        config_sha=self.config_sha,
                        channels=channels,
                        rois=rois,
                        atlas=self.atlas,
                        overwrite=overwrite,
                        group_size=group_size,
                    )
                except Exception as exc:
                    self.fail(item.spec, exc)
                else:
                    self.outcomes[item.spec.key] = RunOutcome(item.spec.key, status, notes=notes)
                bar.update()


def _describe(spec: RunSpec, exc: BaseException) -> str:
    """One line for an unexpected exception (a bug or an exotic file): type and message."""
    text = " ".join(str(exc).split())
    files = spec.eeg.path if spec.eeg else spec.key
    return f"{files}: unexpected {type(exc).__name__}: {text[:300]}"


def _open_existing(
    out: str | os.PathLike[str], *, storage_options: dict[str, Any] | None
) -> WritableDataset | None:
    try:
        ds = open_dataset(out, storage_options=storage_options)
    except DatasetError:
        return None  # not there yet (or not a dataset: create_dataset will say so)
    # Reopen through create_dataset to get a writer; the info is compatible by construction.
    return create_dataset(out, ds.info, storage_options=storage_options)


# A run's own timing facts, not options of the store: a manifest gives them per row (and
# records none), `ingest files` once per call; every run keeps its own in its record.
def roi_centres(atlas: Atlas, rois: Sequence[str]) -> tuple[XYZ, ...] | None:
    """Each ROI's centre of mass in the atlas's world mm, in ROI order (None if one of them is
    not an atlas region: a region-table column)."""
    centres = atlas.centres
    if any(r not in centres for r in rois):
        return None
    return tuple(centres[r] for r in rois)


def _keep_atlas(dataset: WritableDataset, atlas: Atlas) -> None:
    """Store the atlas with the dataset once (before any run: a different one stops here)."""
    try:
        dataset.write_atlas(
            image=atlas.image, labels=atlas.labels, name=atlas.name, record=atlas.record
        )
    except DatasetError as exc:
        raise IngestError(str(exc)) from None


def _dataset(
    out: str | os.PathLike[str],
    *,
    layout: Layout,
    config: IngestConfig,
    config_sha: str,
    channels: tuple[str, ...],
    rois: tuple[str, ...],
    checked: list[CheckedRun],
    name: str | None,
    atlas_name: str,
    roi_mni: tuple[XYZ, ...] | None,
    storage_options: dict[str, Any] | None,
) -> WritableDataset:
    sfreqs = sorted({c.sfreq_in for c in checked})
    if config.eeg.sfreq is not None:
        sfreq = float(config.eeg.sfreq)
    elif len(sfreqs) == 1:
        sfreq = sfreqs[0]
    else:
        raise IngestError(
            f"recordings have different sampling rates {sfreqs} Hz: choose one (--sfreq)"
        )
    trs = sorted({c.tr for c in checked})
    if len(trs) != 1:
        raise IngestError(f"runs have different TRs {trs} s: ingest them into separate stores")
    info = DatasetInfo(
        name=name or Path(os.fspath(out)).stem or layout.name,
        eeg=EEGInfo(sfreq=sfreq, channels=channels, units="uV", montage=config.channels.montage),
        bold=BOLDInfo(
            tr=trs[0],
            rois=rois,
            atlas=atlas_name,
            units=bold_units(checked, config),
            roi_mni=roi_mni,
        ),
        source=f"ingest:{layout.name}",
        preprocessing={
            "config": config.to_record(),
            "config_sha256": config_sha,
            "eeg_steps": list(STEP_ORDER),
            "bold": "nilearn NiftiLabelsMasker (confounds, detrend, z-score) or region table "
            "as given",
        },
        provenance={
            "ingest": {
                "layout": layout.name,
                "root": str(layout.root),
                "software": versions(("mne", "nilearn", "nibabel")),
            }
        },
    )
    return create_dataset(out, info, storage_options=storage_options)


def _ingest_run(
    item: CheckedRun,
    *,
    dataset: WritableDataset,
    layout: Layout,
    config: IngestConfig,
    config_sha: str,
    channels: tuple[str, ...],
    rois: tuple[str, ...],
    atlas: Callable[[], Atlas],
    overwrite: bool,
    group_size: int,
) -> tuple[Status, list[str]]:
    spec = item.spec
    assert spec.eeg is not None
    assert spec.bold is not None
    warnings_log: list[str] = []
    raw = read_eeg(spec.eeg, log=warnings_log)
    if raw.n_times != item.n_samples_in or float(raw.info["sfreq"]) != item.sfreq_in:
        raise IngestError(f"{spec.eeg.path}: changed while being ingested")
    eeg = preprocess_eeg(
        raw,
        plan=item.plan,
        channels=channels,
        eeg=config.eeg,
        channel_config=config.channels,
        path=spec.eeg.path,
        samples=item.samples,
        group_size=group_size,
    )
    del raw
    timing = item.timing.shifted(item.samples[0] / item.sfreq_in)
    bold = extract_bold(
        spec.bold,
        rois=rois,
        tr=item.tr,
        config=config.bold,
        volumes=(timing.start, timing.stop),
        atlas=atlas() if spec.bold.kind == "nifti" else None,
    )
    duration = eeg.data.shape[1] / eeg.sfreq
    if timing.times[-1] > duration:
        raise IngestError(
            f"{spec.eeg.path}: the last volume ({timing.times[-1]:.3f} s) falls after the "
            f"preprocessed EEG ({duration:.3f} s)"
        )
    notes = item.notes + eeg.warnings[:MAX_WARNINGS] + list(bold.warnings[:MAX_WARNINGS])
    provenance = {
        "ingest": {
            "layout": layout.name,
            "inputs": item.inputs,
            "inputs_sha256": item.inputs_sha256,
            "config_sha256": config_sha,
            "config": config.to_record(),
            "eeg": {
                "format": spec.eeg.format,
                "sfreq_in": item.sfreq_in,
                "n_samples_in": item.n_samples_in,
                "channels_in": len(item.plan.keep) + len(item.plan.dropped),
                "channel_rules": item.plan.record(),
                "steps": eeg.steps,
            },
            "timing": {**timing.record, "first_s": float(timing.times[0])},
            "bold": bold.record,
            "warnings": notes[:MAX_WARNINGS],
            "software": versions(("mne", "nilearn", "nibabel")),
        }
    }
    qc = {"ingest_notes": len(notes)}
    run = RunData(
        subject=spec.subject,
        run=spec.run,
        session=spec.session,
        task=spec.task,
        eeg=eeg.data,
        bold=bold.data,
        volume_times=np.asarray(timing.times, dtype=np.float64),
        channels=channels,
        rois=rois,
        bad_channels=eeg.bad_channels,
        qc=qc,
        provenance=provenance,
    )
    status = dataset.write_run(run, overwrite=overwrite)
    shown = [n for n in item.notes if "dropped" in n]
    return status, shown

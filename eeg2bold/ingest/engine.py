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

import hashlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm.auto import tqdm

from eeg2bold.errors import DatasetError, Eeg2BoldError, did_you_mean
from eeg2bold.ingest.atlas import XYZ, Atlas, load_atlas
from eeg2bold.ingest.bold import BOLDHeader, extract_bold, probe_bold
from eeg2bold.ingest.channels import ChannelPlan, plan_channels
from eeg2bold.ingest.config import IngestConfig
from eeg2bold.ingest.errors import IngestError
from eeg2bold.ingest.layouts.base import Layout
from eeg2bold.ingest.preprocess import DEFAULT_GROUP, preprocess_eeg
from eeg2bold.ingest.readers import companion_files, read_eeg
from eeg2bold.ingest.specs import RunSpec
from eeg2bold.ingest.timing import (
    VolumeTiming,
    annotation_summary,
    crop_samples,
    find_markers,
    volume_timing,
)
from eeg2bold.storage import (
    BOLDInfo,
    DatasetInfo,
    EEGInfo,
    RunData,
    RunKey,
    WritableDataset,
    create_dataset,
    open_dataset,
)
from eeg2bold.storage.schema import check_key

OnError = Literal["skip", "abort"]
CommonSets = Literal["exact", "intersect"]
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
_MAX_WARNINGS = 50


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


@dataclass
class _Checked:
    """A run that passed the check pass: everything but the signals."""

    spec: RunSpec
    inputs: list[dict[str, Any]]
    inputs_sha256: str
    plan: ChannelPlan
    bold_header: BOLDHeader
    rois: tuple[str, ...]
    tr: float
    timing: VolumeTiming
    samples: tuple[int, int]
    sfreq_in: float
    n_samples_in: int
    notes: list[str] = field(default_factory=list)


class _Hasher:
    """sha256 of input files, each file hashed once per ingest."""

    def __init__(self) -> None:
        self._cache: dict[Path, tuple[str, int]] = {}

    def __call__(self, path: Path) -> tuple[str, int]:
        path = path.resolve()
        if path not in self._cache:
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            self._cache[path] = (h.hexdigest(), path.stat().st_size)
        return self._cache[path]


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
    _check_unique(specs, layout=layout)
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
        _check_same_options(
            existing.info, config=config, config_sha=engine.config_sha, out=existing.url
        )
    checked = engine.check_all(specs)
    if checked:
        channels, rois, lacking = _common_sets(checked, existing=existing, common=common)
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
        self.hasher = _Hasher()
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

    def check_all(self, specs: list[RunSpec]) -> list[_Checked]:
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
                    item = _check_run(
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
        checked: list[_Checked],
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


def _check_unique(specs: Sequence[RunSpec], *, layout: Layout) -> None:
    seen: dict[str, RunSpec] = {}
    for spec in specs:
        if spec.key in seen:
            raise IngestError(
                f"{layout.root}: two runs map to {spec.key} "
                f"({_first_file(seen[spec.key])} and {_first_file(spec)})"
            )
        seen[spec.key] = spec


def _first_file(spec: RunSpec) -> str:
    return str(spec.eeg.path) if spec.eeg else spec.key


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
PER_RUN_OPTIONS = (("bold", "tr"), ("timing", "start_s"))


def _store_options(record: dict[str, Any]) -> dict[str, Any]:
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in record.items()}
    for section, key in PER_RUN_OPTIONS:
        if isinstance(out.get(section), dict):
            out[section].pop(key, None)
    return out


def _check_same_options(info: DatasetInfo, *, config: IngestConfig, config_sha: str, out: str):
    stored = info.preprocessing.get("config_sha256")
    if stored == config_sha:
        return
    if stored is None:
        raise IngestError(f"{out}: the store was not made by ingest; write to a new store")
    old = _store_options(info.preprocessing.get("config", {}))
    diffs = _dict_diff(old, _store_options(config.to_record()))
    if not diffs:
        return  # the same processing; only a run's own TR or start differs
    raise IngestError(
        f"{out}: the store was ingested with other options ({'; '.join(diffs[:5]) or 'changed'})"
        "; ingest into a new store"
    )


def _dict_diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            out.extend(_dict_diff(old.get(key), new.get(key), f"{prefix}{key}."))
        return out
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]


def _input_list(
    spec: RunSpec, *, layout: Layout, hasher: _Hasher, atlas: Callable[[], Atlas]
) -> list[dict[str, Any]]:
    files: list[tuple[str, Path]] = []
    if spec.eeg is not None:
        files += [("eeg", p) for p in companion_files(spec.eeg)]
    files += [("sidecar", p) for p in spec.extra_inputs]
    if spec.bold is not None:
        files += [("bold", p) for p in spec.bold.paths]
        if spec.bold.confounds is not None:
            files.append(("confounds", spec.bold.confounds))
        if spec.bold.kind == "nifti":
            files += [("atlas", p) for p in atlas().inputs]
    out = []
    for role, path in files:
        if not path.exists():
            raise IngestError(f"{path}: {role} file not found")
        digest, size = hasher(path)
        out.append(
            {"role": role, "path": _relative(path, layout.root), "sha256": digest, "bytes": size}
        )
    for key, value in spec.settings:  # the layout's per-run values (a manifest row's TR, …)
        digest = hashlib.sha256(f"{key}={value}".encode()).hexdigest()
        out.append({"role": f"setting:{key}", "path": value, "sha256": digest, "bytes": 0})
    return out


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.name


def _bold_units(checked: Sequence[_Checked], config: IngestConfig) -> str:
    """What the stored BOLD values are: z-scores when the masker standardised every region,
    region tables' values as given, else arbitrary (the scanner's)."""
    kinds = {c.spec.bold.kind for c in checked if c.spec.bold is not None}
    if kinds == {"nifti"}:
        return "z-score" if config.bold.standardize else "arbitrary (scanner units)"
    if kinds == {"table"}:
        return "as given (region table)"
    return "mixed (z-scored NIfTI runs and region tables as given)"


def _digest(inputs: list[dict[str, Any]]) -> str:
    h = hashlib.sha256()
    for item in inputs:
        h.update(f"{item['role']}:{item['sha256']};".encode())
    return h.hexdigest()


def _check_run(
    spec: RunSpec,
    *,
    layout: Layout,
    config: IngestConfig,
    config_sha: str,
    existing: WritableDataset | None,
    hasher: _Hasher,
    atlas: Callable[[], Atlas],
) -> _Checked | None:
    """Headers-only checks of one run; None when the store already holds it unchanged."""
    if spec.problem:
        raise IngestError(spec.problem)
    if spec.eeg is None or spec.bold is None:
        raise IngestError(f"run {spec.key}: the layout found no EEG or no BOLD for it")
    check_key(spec.subject, what="subject")
    check_key(spec.run, what="run")
    inputs = _input_list(spec, layout=layout, hasher=hasher, atlas=atlas)
    digest = _digest(inputs)
    if existing is not None:
        key = RunKey(spec.subject, spec.run)
        if existing.has_run(key):
            stored = existing.run_attrs(key).get("provenance", {}).get("ingest", {})
            if stored.get("inputs_sha256") == digest and stored.get("config_sha256") == config_sha:
                return None
    bold_path = spec.bold.paths[0]
    tr = _resolve_tr(spec, config=config)
    header = probe_bold(spec.bold, tr=tr)
    available = (header.rois or ()) if spec.bold.kind == "table" else atlas().names
    rois = _select_rois(available, wanted=config.bold.rois, path=bold_path)
    count_col = spec.bold.count_column
    expected = header.metadata.get(count_col) if count_col else None
    if expected is not None and expected != header.n_volumes:
        raise IngestError(
            f"{bold_path}: {count_col} says {expected:g} volumes but the "
            f"table has {header.n_volumes} rows"
        )
    if spec.n_volumes is not None and spec.n_volumes != header.n_volumes:
        raise IngestError(
            f"{bold_path}: {header.n_volumes} volumes, the layout expected {spec.n_volumes}"
        )
    start_s = spec.start_s
    if start_s is None and spec.bold.start_column:
        start_s = header.metadata.get(spec.bold.start_column)
    warnings_log: list[str] = []
    raw = read_eeg(spec.eeg, log=warnings_log)
    plan = plan_channels(
        raw,
        config=config.channels,
        path=spec.eeg.path,
        reference=config.eeg.reference_channels(),
    )
    sfreq_in = float(raw.info["sfreq"])
    markers = None
    hint = ""
    if config.timing.source == "markers":
        markers = find_markers(raw, names=config.timing.markers)
        if len(markers) == 0:
            hint = annotation_summary(raw)
    timing = volume_timing(
        n_volumes=header.n_volumes,
        tr=tr,
        config=config.timing,
        eeg_path=spec.eeg.path,
        bold_path=bold_path,
        eeg_duration_s=raw.n_times / sfreq_in,
        markers=markers,
        start_s=start_s,
        annotations_hint=hint,
    )
    samples = crop_samples(
        timing,
        tr=tr,
        margin_s=config.timing.crop_margin_s,
        sfreq=sfreq_in,
        n_samples=raw.n_times,
    )
    return _Checked(
        spec=spec,
        inputs=inputs,
        inputs_sha256=digest,
        plan=plan,
        bold_header=header,
        rois=rois,
        tr=tr,
        timing=timing,
        samples=samples,
        sfreq_in=sfreq_in,
        n_samples_in=int(raw.n_times),
        notes=list(timing.notes) + warnings_log[:_MAX_WARNINGS],
    )


def _resolve_tr(spec: RunSpec, *, config: IngestConfig) -> float:
    assert spec.bold is not None
    given, sidecar = config.bold.tr, spec.bold.tr
    path = spec.bold.paths[0]
    if given is not None and sidecar is not None and abs(given - sidecar) > 1e-3 * given:
        raise IngestError(
            f"{path}: wrong TR: its sidecar says {sidecar:g} s, but the TR given is {given:g} s"
        )
    tr = given if given is not None else sidecar
    if tr is None:
        raise IngestError(f"{path}: TR unknown: give it (--tr SECONDS)")
    return float(tr)


def _select_rois(
    available: Sequence[str], *, wanted: Sequence[str] | None, path: Path
) -> tuple[str, ...]:
    if wanted is None:
        return tuple(available)
    missing = [r for r in wanted if r not in available]
    if missing:
        hints = []
        for r in missing:
            hints.append(f"{r!r}{did_you_mean(r, available)}")
        raise IngestError(f"{path}: unknown ROI(s) {', '.join(hints)}")
    return tuple(wanted)


def _common_sets(
    checked: list[_Checked], *, existing: WritableDataset | None, common: CommonSets
) -> tuple[tuple[str, ...], tuple[str, ...], dict[str, str]]:
    """The dataset's channel and ROI lists, and the runs that cannot provide them."""
    dropped: dict[str, str] = {}
    if existing is not None:
        channels, rois = existing.info.eeg.channels, existing.info.bold.rois
        for item in checked:
            lacks_ch = [c for c in channels if c not in item.plan.keep]
            lacks_roi = [r for r in rois if r not in item.rois]
            if lacks_ch or lacks_roi:
                parts = []
                if lacks_ch:
                    parts.append(f"channels {lacks_ch}")
                if lacks_roi:
                    parts.append(f"ROIs {lacks_roi}")
                dropped[item.spec.key] = (
                    f"{_first_file(item.spec)}: lacks {' and '.join(parts)} that the dataset has"
                )
        return channels, rois, dropped
    first = checked[0]
    lists: dict[str, tuple[str, ...]] = {}
    for what, get in (("channel", lambda c: c.plan.keep), ("ROI", lambda c: c.rois)):
        ref = list(get(first))
        if common == "intersect":
            shared = [n for n in ref if all(n in get(c) for c in checked)]
            if not shared:
                raise IngestError(f"no {what} is shared by all {len(checked)} runs")
            lists[what] = tuple(shared)
            continue
        diffs = []
        for item in checked[1:]:
            names = get(item)
            lacks = [n for n in ref if n not in names]
            extra = [n for n in names if n not in ref]
            if lacks or extra:
                part = item.spec.named
                if lacks:
                    part += f" lacks {lacks}"
                if extra:
                    part += f" has extra {extra}"
                diffs.append(part)
        if diffs:
            raise IngestError(
                f"{what} sets differ between runs (compared with {first.spec.named}): "
                + "; ".join(diffs[:5])
                + (f"; ... ({len(diffs) - 5} more)" if len(diffs) > 5 else "")
                + f"; use --common intersect to keep the {what}s all runs share"
            )
        lists[what] = tuple(ref)
    return lists["channel"], lists["ROI"], dropped


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
    checked: list[_Checked],
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
            units=_bold_units(checked, config),
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
                "software": software_versions(),
            }
        },
    )
    return create_dataset(out, info, storage_options=storage_options)


def software_versions() -> dict[str, str]:
    import mne
    import nibabel
    import nilearn

    return {"mne": mne.__version__, "nilearn": nilearn.__version__, "nibabel": nibabel.__version__}


def _ingest_run(
    item: _Checked,
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
    notes = item.notes + eeg.warnings[:_MAX_WARNINGS] + list(bold.warnings[:_MAX_WARNINGS])
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
            "warnings": notes[:_MAX_WARNINGS],
            "software": software_versions(),
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

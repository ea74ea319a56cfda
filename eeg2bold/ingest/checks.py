"""The ingest's check pass: everything about a run that can be known without reading its
signals (input hashes, channel rules, BOLD volume count and TR, volume timing, the dataset's
common channel and ROI sets, and whether the store was made with the same options), so that
bad runs fail before any heavy work. :mod:`eeg2bold.ingest.engine` runs the loop.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from eeg2bold.errors import did_you_mean
from eeg2bold.ingest.atlas import Atlas
from eeg2bold.ingest.bold import BOLDHeader, probe_bold
from eeg2bold.ingest.channels import ChannelPlan, plan_channels
from eeg2bold.ingest.config import IngestConfig
from eeg2bold.ingest.errors import IngestError
from eeg2bold.ingest.layouts.base import Layout
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
    DatasetInfo,
    RunKey,
    WritableDataset,
)
from eeg2bold.storage.schema import check_key

CommonSets = Literal["exact", "intersect"]
MAX_WARNINGS = 50  # per run, in the report and the stored notes


@dataclass
class CheckedRun:
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


class Hasher:
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


def check_unique(specs: Sequence[RunSpec], *, layout: Layout) -> None:
    seen: dict[str, RunSpec] = {}
    for spec in specs:
        if spec.key in seen:
            raise IngestError(
                f"{layout.root}: two runs map to {spec.key} "
                f"({first_file(seen[spec.key])} and {first_file(spec)})"
            )
        seen[spec.key] = spec


def first_file(spec: RunSpec) -> str:
    return str(spec.eeg.path) if spec.eeg else spec.key


PER_RUN_OPTIONS = (("bold", "tr"), ("timing", "start_s"))


def store_options(record: dict[str, Any]) -> dict[str, Any]:
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in record.items()}
    for section, key in PER_RUN_OPTIONS:
        if isinstance(out.get(section), dict):
            out[section].pop(key, None)
    return out


def check_same_options(info: DatasetInfo, *, config: IngestConfig, config_sha: str, out: str):
    stored = info.preprocessing.get("config_sha256")
    if stored == config_sha:
        return
    if stored is None:
        raise IngestError(f"{out}: the store was not made by ingest; write to a new store")
    old = store_options(info.preprocessing.get("config", {}))
    diffs = dict_diff(old, store_options(config.to_record()))
    if not diffs:
        return  # the same processing; only a run's own TR or start differs
    raise IngestError(
        f"{out}: the store was ingested with other options ({'; '.join(diffs[:5]) or 'changed'})"
        "; ingest into a new store"
    )


def dict_diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            out.extend(dict_diff(old.get(key), new.get(key), f"{prefix}{key}."))
        return out
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]


def input_list(
    spec: RunSpec, *, layout: Layout, hasher: Hasher, atlas: Callable[[], Atlas]
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
            {"role": role, "path": relative(path, layout.root), "sha256": digest, "bytes": size}
        )
    for key, value in spec.settings:  # the layout's per-run values (a manifest row's TR, …)
        digest = hashlib.sha256(f"{key}={value}".encode()).hexdigest()
        out.append({"role": f"setting:{key}", "path": value, "sha256": digest, "bytes": 0})
    return out


def relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.name


def bold_units(checked: Sequence[CheckedRun], config: IngestConfig) -> str:
    """What the stored BOLD values are: z-scores when the masker standardised every region,
    region tables' values as given, else arbitrary (the scanner's)."""
    kinds = {c.spec.bold.kind for c in checked if c.spec.bold is not None}
    if kinds == {"nifti"}:
        return "z-score" if config.bold.standardize else "arbitrary (scanner units)"
    if kinds == {"table"}:
        return "as given (region table)"
    return "mixed (z-scored NIfTI runs and region tables as given)"


def inputs_digest(inputs: list[dict[str, Any]]) -> str:
    h = hashlib.sha256()
    for item in inputs:
        h.update(f"{item['role']}:{item['sha256']};".encode())
    return h.hexdigest()


def check_run(
    spec: RunSpec,
    *,
    layout: Layout,
    config: IngestConfig,
    config_sha: str,
    existing: WritableDataset | None,
    hasher: Hasher,
    atlas: Callable[[], Atlas],
) -> CheckedRun | None:
    """Headers-only checks of one run; None when the store already holds it unchanged."""
    if spec.problem:
        raise IngestError(spec.problem)
    if spec.eeg is None or spec.bold is None:
        raise IngestError(f"run {spec.key}: the layout found no EEG or no BOLD for it")
    check_key(spec.subject, what="subject")
    check_key(spec.run, what="run")
    inputs = input_list(spec, layout=layout, hasher=hasher, atlas=atlas)
    digest = inputs_digest(inputs)
    if existing is not None:
        key = RunKey(spec.subject, spec.run)
        if existing.has_run(key):
            stored = existing.run_attrs(key).get("provenance", {}).get("ingest", {})
            if stored.get("inputs_sha256") == digest and stored.get("config_sha256") == config_sha:
                return None
    bold_path = spec.bold.paths[0]
    tr = resolve_tr(spec, config=config)
    header = probe_bold(spec.bold, tr=tr)
    available = (header.rois or ()) if spec.bold.kind == "table" else atlas().names
    rois = select_rois(available, wanted=config.bold.rois, path=bold_path)
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
    return CheckedRun(
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
        notes=list(timing.notes) + warnings_log[:MAX_WARNINGS],
    )


def resolve_tr(spec: RunSpec, *, config: IngestConfig) -> float:
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


def select_rois(
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


def common_sets(
    checked: list[CheckedRun], *, existing: WritableDataset | None, common: CommonSets
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
                    f"{first_file(item.spec)}: lacks {' and '.join(parts)} that the dataset has"
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

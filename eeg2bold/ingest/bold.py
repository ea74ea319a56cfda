"""BOLD region time series: from 4-D NIfTI through an atlas (nilearn), or from region tables.

NIfTI runs are cleaned by nilearn while averaging within each atlas region: confound
regression (motion parameters, global signal), linear detrending, optional filtering and
z-scoring, always with the TR passed explicitly. The image's own TR (``pixdim[4]``) must
agree with it. Region tables (one column per region, one row per volume, a header row) are
stored as they are, after checks: numeric, NaN-free, the requested columns present.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from eeg2bold.ingest.atlas import Atlas
from eeg2bold.ingest.config import BOLDConfig
from eeg2bold.ingest.errors import IngestError
from eeg2bold.ingest.specs import BOLDSource

MOTION_COLUMNS = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")
GLOBAL_SIGNAL_COLUMN = "global_signal"
_TIME_UNITS = {"sec": 1.0, "msec": 1e-3, "usec": 1e-6}
TR_RTOL = 1e-3


@dataclass(frozen=True, kw_only=True)
class BOLDHeader:
    """What a BOLD input holds, learnt without cleaning any signal."""

    n_volumes: int
    rois: tuple[str, ...] | None = None
    metadata: dict[str, float] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class BOLDResult:
    data: np.ndarray  # float32 [n_rois, n_volumes]
    rois: tuple[str, ...]
    record: dict[str, Any]
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class RegionTable:
    names: tuple[str, ...]
    values: np.ndarray  # float64 [n_volumes, n_rois]
    metadata: dict[str, float]


def probe_bold(source: BOLDSource, *, tr: float) -> BOLDHeader:
    """Volume count (and table columns); refuses a NIfTI whose header TR differs from ``tr``."""
    if source.kind == "table":
        table = read_region_table(source.paths[0], metadata_columns=source.metadata_columns)
        return BOLDHeader(
            n_volumes=table.values.shape[0], rois=table.names, metadata=table.metadata
        )
    headers = [_nifti_header(p) for p in source.paths]
    if len(source.paths) == 1:
        shape = headers[0].get_data_shape()
        if len(shape) != 4:
            raise IngestError(f"{source.paths[0]}: expected a 4-D image, got shape {shape}")
        header_tr = check_nifti_tr(headers[0], tr=tr, path=source.paths[0])
        return BOLDHeader(n_volumes=int(shape[3]), record={"header_tr": header_tr})
    shapes = {tuple(h.get_data_shape()[:3]) for h in headers}
    if len(shapes) != 1:
        raise IngestError(
            f"{source.paths[0].parent}: the 3-D volumes of one series differ in shape {shapes}"
        )
    return BOLDHeader(n_volumes=len(source.paths), record={"header_tr": None, "series": True})


def _nifti_header(path: Path) -> Any:
    if not path.exists():
        raise IngestError(f"{path}: no such file")
    try:
        img: Any = nib.load(path)
        return img.header
    except Exception as exc:
        raise IngestError(f"{path}: cannot read NIfTI ({exc})") from None


def check_nifti_tr(header: Any, *, tr: float, path: Path) -> float | None:
    """The header's TR in seconds (None if unset); a different non-zero TR is refused."""
    zooms = header.get_zooms()
    if len(zooms) < 4 or not zooms[3]:
        return None
    unit = header.get_xyzt_units()[1]
    header_tr = float(zooms[3]) * _TIME_UNITS.get(unit, 1.0)
    if abs(header_tr - tr) > TR_RTOL * tr:
        raise IngestError(
            f"{path}: wrong TR: the NIfTI header says {header_tr:g} s (pixdim[4]), but the TR "
            f"given is {tr:g} s"
        )
    return header_tr


def read_region_table(path: Path, *, metadata_columns: Sequence[str] = ()) -> RegionTable:
    """A region table: header row, then one numeric row per volume; NaN is refused.

    ``metadata_columns`` (e.g. NATVIEW's ``Nvol``/``Tstart``) are returned as metadata (their
    first value) instead of regions.
    """
    if not path.exists():
        raise IngestError(f"{path}: no such file")
    sep = "," if path.suffix.lower() == ".csv" else "\t"
    try:
        frame = pd.read_csv(path, sep=sep)
    except Exception as exc:
        raise IngestError(f"{path}: cannot read region table ({exc})") from None
    names = [str(c) for c in frame.columns]
    if not names or all(_is_number(n) for n in names):
        raise IngestError(f"{path}: region table has no header row (one name per column)")
    header = _header(path, sep)  # pandas renames a repeated name (Thal, Thal.1): read it raw
    repeated = sorted({n for n in header if header.count(n) > 1})
    if repeated or len(set(names)) != len(names):
        raise IngestError(
            f"{path}: duplicate column name(s) in the region table: {', '.join(repeated)}"
        )
    metadata = {}
    for col in metadata_columns:
        if col in frame.columns:
            values = pd.to_numeric(frame[col], errors="coerce").dropna()
            if values.empty:
                raise IngestError(f"{path}: column {col!r} holds no number")
            metadata[col] = float(values.iloc[0])
            frame = frame.drop(columns=col)
    rois = tuple(str(c) for c in frame.columns)
    if not rois:
        raise IngestError(f"{path}: region table has no region column")
    if len(frame) < 2:
        raise IngestError(f"{path}: region table has {len(frame)} row(s), need at least 2")
    for col in frame.columns:
        if not pd.api.types.is_numeric_dtype(frame[col]):
            raise IngestError(f"{path}: column {col!r} is not numeric")
    values = frame.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise IngestError(
            f"{path}: {int(bad.sum())} NaN/missing value(s) in the region table (first: column "
            f"{rois[col]!r}, data row {row + 1})"
        )
    return RegionTable(names=rois, values=values, metadata=metadata)


def _header(path: Path, sep: str) -> list[str]:
    import csv

    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        return [name.strip() for name in next(csv.reader(f, delimiter=sep), [])]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def extract_bold(
    source: BOLDSource,
    *,
    rois: Sequence[str],
    tr: float,
    config: BOLDConfig,
    volumes: tuple[int, int],
    atlas: Atlas | None = None,
) -> BOLDResult:
    """Region time series [n_rois, n_kept_volumes] in the order of ``rois``."""
    start, stop = volumes
    if source.kind == "table":
        path = source.paths[0]
        table = read_region_table(path, metadata_columns=source.metadata_columns)
        index = _index_of(rois, table.names, path=path, what="column")
        data = table.values[start:stop, index].T
        record = {"kind": "table", "volumes": [start, stop], "processing": "none (as given)"}
        return BOLDResult(data=data.astype(np.float32), rois=tuple(rois), record=record)
    if atlas is None:
        raise IngestError(f"{source.paths[0]}: a NIfTI run needs an atlas")
    return _extract_nifti(
        source, rois=rois, tr=tr, config=config, start=start, stop=stop, atlas=atlas
    )


def _index_of(wanted: Sequence[str], have: Sequence[str], *, path: Path, what: str) -> list[int]:
    missing = [n for n in wanted if n not in have]
    if missing:
        raise IngestError(f"{path}: missing {what}(s) {missing}")
    return [list(have).index(n) for n in wanted]


def _extract_nifti(
    source: BOLDSource,
    *,
    rois: Sequence[str],
    tr: float,
    config: BOLDConfig,
    start: int,
    stop: int,
    atlas: Atlas,
) -> BOLDResult:
    from nilearn import image
    from nilearn.maskers import NiftiLabelsMasker

    path = source.paths[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            img: Any = (
                nib.load(path)
                if len(source.paths) == 1
                else image.concat_imgs([str(p) for p in source.paths])
            )
            n_total = int(img.shape[3])
            if (start, stop) != (0, n_total):
                img = image.index_img(img, slice(start, stop))
        except IngestError:
            raise
        except Exception as exc:
            raise IngestError(f"{path}: cannot read NIfTI ({exc})") from None
        confounds, conf_record = _confounds(
            source, config=config, img=img, n_total=n_total, start=start, stop=stop
        )
        masker = NiftiLabelsMasker(
            labels_img=atlas.image,
            t_r=tr,
            detrend=config.detrend,
            standardize="zscore_sample" if config.standardize else False,
            standardize_confounds=True,
            high_pass=config.high_pass,
            low_pass=config.low_pass,
            strategy="mean",
            resampling_target="data",
        )
        try:
            signals = masker.fit_transform(img, confounds=confounds)
        except Exception as exc:
            raise IngestError(f"{path}: ROI extraction failed ({exc})") from None
    ids = [v for k, v in masker.region_ids_.items() if k != "background"]
    found = [atlas.labels.get(int(v), str(v)) for v in ids]
    missing = [n for n in rois if n not in found]
    if missing:
        raise IngestError(
            f"{path}: ROI(s) {missing} have no voxels in this image (outside the field of "
            "view, or the image is not in the atlas space)"
        )
    data = np.asarray(signals, dtype=np.float64)[:, [found.index(n) for n in rois]].T
    if not np.isfinite(data).all():
        raise IngestError(f"{path}: ROI time series hold NaN/inf (NaN voxels in the image?)")
    record = {
        "kind": "nifti",
        "files": len(source.paths),
        "volumes": [start, stop],
        "atlas": atlas.record,
        "masker": {
            "class": "nilearn.maskers.NiftiLabelsMasker",
            "strategy": "mean",
            "t_r": tr,
            "detrend": config.detrend,
            "standardize": "zscore_sample" if config.standardize else False,
            "standardize_confounds": True,
            "high_pass": config.high_pass,
            "low_pass": config.low_pass,
            "resampling_target": "data",
        },
        "confounds": conf_record,
    }
    notes = tuple(f"{path.name}: {w.message}" for w in caught)
    return BOLDResult(data=data.astype(np.float32), rois=tuple(rois), record=record, warnings=notes)


def _confounds(
    source: BOLDSource,
    *,
    config: BOLDConfig,
    img: Any,
    n_total: int,
    start: int,
    stop: int,
) -> tuple[np.ndarray | None, dict[str, Any]]:
    columns: list[np.ndarray] = []
    names: list[str] = []
    record: dict[str, Any] = {"motion": False, "global_signal": False}
    table = None
    if source.confounds is not None and (config.motion or config.global_signal):
        table = load_confounds(source.confounds, kind=source.confounds_kind, n_volumes=n_total)
        record["file"] = source.confounds.name
    if config.motion:
        if table is None:
            record["motion"] = "not available (no motion file for this run)"
        else:
            cols = [c for c in MOTION_COLUMNS if c in table.columns]
            if len(cols) != len(MOTION_COLUMNS):
                lacking = [c for c in MOTION_COLUMNS if c not in table.columns]
                raise IngestError(f"{source.confounds}: no motion column(s) {lacking}")
            columns.extend(table[c].to_numpy()[start:stop] for c in cols)
            names.extend(cols)
            record["motion"] = True
    if config.global_signal:
        if table is not None and GLOBAL_SIGNAL_COLUMN in table.columns:
            columns.append(table[GLOBAL_SIGNAL_COLUMN].to_numpy()[start:stop])
            record["global_signal"] = f"column {GLOBAL_SIGNAL_COLUMN!r}"
        else:
            signal, how = global_signal(img)
            columns.append(signal)
            record["global_signal"] = how
        names.append(GLOBAL_SIGNAL_COLUMN)
    record["columns"] = names
    if not columns:
        return None, record
    return np.column_stack(columns).astype(np.float64), record


def load_confounds(path: Path, *, kind: str | None, n_volumes: int) -> pd.DataFrame:
    """Motion parameters (SPM ``rp_*.txt``: 6 columns) or an fMRIPrep confounds TSV.

    fMRIPrep leaves the first row of derivative columns empty ('n/a'); missing values are set
    to 0. SPM's rotations are in radians, like fMRIPrep's.
    """
    if not path.exists():
        raise IngestError(f"{path}: confounds file not found")
    kind = kind or ("fmriprep" if path.suffix.lower() == ".tsv" else "spm")
    try:
        if kind == "spm":
            values = np.loadtxt(path, ndmin=2)
            if values.shape[1] != 6:
                raise IngestError(
                    f"{path}: expected 6 motion columns (SPM rp_*.txt), got {values.shape[1]}"
                )
            frame = pd.DataFrame(values, columns=list(MOTION_COLUMNS))
        else:
            frame = pd.read_csv(path, sep="\t", na_values=["n/a"])
    except IngestError:
        raise
    except Exception as exc:
        raise IngestError(f"{path}: cannot read confounds ({exc})") from None
    if len(frame) != n_volumes:
        raise IngestError(
            f"{path}: confounds have {len(frame)} rows but the image has {n_volumes} volumes"
        )
    return frame.fillna(0.0)


def global_signal(img: Any) -> tuple[np.ndarray, str]:
    """Mean over the brain at each volume, and how the brain was found.

    nilearn's EPI mask where it finds one; otherwise (images already masked, or synthetic)
    every voxel whose mean is non-zero.
    """
    from nilearn.masking import apply_mask, compute_epi_mask

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mask = compute_epi_mask(img)
        return np.asarray(apply_mask(img, mask), dtype=np.float64).mean(axis=1), (
            "mean over nilearn's EPI mask"
        )
    except ValueError:
        data = np.asarray(img.dataobj, dtype=np.float64)
        inside = np.abs(data.mean(axis=3)) > 0
        return data[inside].mean(axis=0), "mean over voxels with a non-zero mean"

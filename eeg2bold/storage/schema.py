"""The dataset schema ``eeg2bold.dataset/2``: what a store holds and what a run must satisfy.

Layout (Zarr v3; every array has dimension names, so xarray reads the store as a datatree)::

    <name>.zarr/                   attrs: schema, name, created, source, eeg{...},
                                          bold{tr, rois, atlas, units}, min_window_s,
                                          preprocessing{...}, provenance{...}
      <subject>/<run>/eeg          float32 [channel, time], chunked along time; attrs units,
                                   sfreq (time = sample / sfreq)
      <subject>/<run>/bold         float32 [roi, volume]; attrs units, coordinates
      <subject>/<run>/volume_times float64 [volume], seconds on the EEG clock
      <subject>/<run>/channel      str [channel] (coordinate: the channel names)
      <subject>/<run>/roi          str [roi] (coordinate: the ROI names)
      <subject>/<run>/truth/<name> simulator only (noise-free BOLD, latent drivers, ...)
      <subject>/<run>  attrs       subject, session, task, run, bad_channels, qc, provenance,
                                   content_sha256, n_samples, n_volumes

``eeg2bold.dataset/1`` stores (the same without coordinates, units and truth dimension names)
are read as they are.

Invariants checked by :func:`validate_run` before anything is written: every run shares the
dataset's channel and ROI lists, arrays are finite and of the right dtype and shape, volume
times increase strictly and lie inside the EEG recording, and the EEG lasts at least one
window (``min_window_s``).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from eeg2bold.errors import DatasetError, RunValidationError
from eeg2bold.jsonsafe import json_safe

SCHEMA = "eeg2bold.dataset/2"
# /1 stores (no coordinate arrays, no units, truth arrays without dimension names) stay
# readable: every array eeg2bold reads is found by name, not by listing
READABLE_SCHEMAS = ("eeg2bold.dataset/1", SCHEMA)
EEG_DTYPE = np.dtype("float32")
BOLD_DTYPE = np.dtype("float32")
TIME_DTYPE = np.dtype("float64")
DEFAULT_MIN_WINDOW_S = 10.0
EEG_CHUNK_S = 4.0
# EEG chunks: Blosc LZ4 with byte shuffle. Training decodes them (the streaming path, every
# epoch): about twice zstd's decode rate at a similar size (benchmarks/bench_codecs.py).
# Stores written with other codecs read the same.
EEG_COMPRESSOR: dict[str, Any] = {
    "name": "blosc",
    "configuration": {"cname": "lz4", "clevel": 5, "shuffle": "shuffle"},
}
_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class RunKey(NamedTuple):
    """Address of one run inside a dataset."""

    subject: str
    run: str

    def __str__(self) -> str:
        return f"{self.subject}/{self.run}"


def check_key(value: str, *, what: str) -> str:
    """Refuse subject/run names that are not safe as store paths."""
    if not isinstance(value, str) or not _KEY_RE.match(value):
        raise RunValidationError(
            f"invalid {what} name {value!r}: use letters, digits, '_', '-', '.' "
            "and start with a letter or digit"
        )
    return value


@dataclass(frozen=True, kw_only=True)
class EEGInfo:
    """EEG properties shared by every run of a dataset."""

    sfreq: float
    channels: tuple[str, ...]
    units: str = "uV"
    montage: str | None = None

    def to_attrs(self) -> dict[str, Any]:
        return {
            "sfreq": float(self.sfreq),
            "channels": list(self.channels),
            "units": self.units,
            "montage": self.montage,
        }


@dataclass(frozen=True, kw_only=True)
class BOLDInfo:
    """BOLD properties shared by every run of a dataset."""

    tr: float
    rois: tuple[str, ...]
    atlas: str | None = None
    units: str = "arbitrary"  # "z-score" when ingest standardised each region
    # each ROI's centre in MNI mm (x, y, z), where known: what brain figures draw
    roi_mni: tuple[tuple[float, float, float], ...] | None = None

    def to_attrs(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "tr": float(self.tr),
            "rois": list(self.rois),
            "atlas": self.atlas,
            "units": self.units,
        }
        if self.roi_mni is not None:
            out["roi_mni"] = [[float(v) for v in xyz] for xyz in self.roi_mni]
        return out


def _roi_mni(value: Any) -> tuple[tuple[float, float, float], ...] | None:
    if value is None:
        return None
    return tuple((float(x), float(y), float(z)) for x, y, z in value)


@dataclass(frozen=True, kw_only=True)
class DatasetInfo:
    """Dataset-level attributes: the contract every run is validated against."""

    name: str
    eeg: EEGInfo
    bold: BOLDInfo
    source: str = "unknown"
    created: str = ""
    min_window_s: float = DEFAULT_MIN_WINDOW_S
    preprocessing: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = []
        if not (np.isfinite(self.eeg.sfreq) and self.eeg.sfreq > 0):
            problems.append(f"EEG sampling rate must be positive, got {self.eeg.sfreq}")
        if not (np.isfinite(self.bold.tr) and self.bold.tr > 0):
            problems.append(f"TR must be positive, got {self.bold.tr}")
        for what, names in (("channel", self.eeg.channels), ("ROI", self.bold.rois)):
            if not names:
                problems.append(f"the {what} list is empty")
            dup = sorted({n for n in names if list(names).count(n) > 1})
            if dup:
                problems.append(f"duplicate {what} names {dup}")
        if self.bold.roi_mni is not None and len(self.bold.roi_mni) != len(self.bold.rois):
            problems.append(
                f"{len(self.bold.roi_mni)} ROI coordinates for {len(self.bold.rois)} ROIs"
            )
        if not self.min_window_s > 0:
            problems.append(f"min_window_s must be positive, got {self.min_window_s}")
        if problems:
            raise DatasetError(f"dataset {self.name!r}: " + "; ".join(problems))

    def to_attrs(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "name": self.name,
            "created": self.created,
            "source": self.source,
            "eeg": self.eeg.to_attrs(),
            "bold": self.bold.to_attrs(),
            "min_window_s": float(self.min_window_s),
            "preprocessing": self.preprocessing,
            "provenance": self.provenance,
        }

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any], *, where: str) -> DatasetInfo:
        """Parse root attributes; ``where`` names the store in error messages."""
        if attrs.get("schema") not in READABLE_SCHEMAS:
            found = attrs.get("schema")
            hint = "no schema attribute" if found is None else f"schema {found!r}"
            raise DatasetError(f"{where} is not an eeg2bold dataset ({hint}; expected {SCHEMA})")
        try:
            eeg, bold = attrs["eeg"], attrs["bold"]
            return cls(
                name=attrs["name"],
                eeg=EEGInfo(
                    sfreq=float(eeg["sfreq"]),
                    channels=tuple(eeg["channels"]),
                    units=eeg.get("units", "uV"),
                    montage=eeg.get("montage"),
                ),
                bold=BOLDInfo(
                    tr=float(bold["tr"]),
                    rois=tuple(bold["rois"]),
                    atlas=bold.get("atlas"),
                    units=bold.get("units", "arbitrary"),
                    roi_mni=_roi_mni(bold.get("roi_mni")),
                ),
                source=attrs.get("source", "unknown"),
                created=attrs.get("created", ""),
                min_window_s=float(attrs.get("min_window_s", DEFAULT_MIN_WINDOW_S)),
                preprocessing=dict(attrs.get("preprocessing", {})),
                provenance=dict(attrs.get("provenance", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"{where}: corrupt dataset attributes ({exc!r})") from None

    def compatible_with(self, other: DatasetInfo) -> list[str]:
        """Differences that would make runs of ``other`` invalid in this dataset."""
        diffs = []
        if self.eeg.sfreq != other.eeg.sfreq:
            diffs.append(f"sfreq {self.eeg.sfreq} != {other.eeg.sfreq}")
        if self.eeg.channels != other.eeg.channels:
            diffs.append("channel lists differ")
        if self.eeg.units != other.eeg.units:
            diffs.append(f"EEG units {self.eeg.units!r} != {other.eeg.units!r}")
        if self.bold.tr != other.bold.tr:
            diffs.append(f"TR {self.bold.tr} != {other.bold.tr}")
        if self.bold.rois != other.bold.rois:
            diffs.append("ROI lists differ")
        return diffs


@dataclass(kw_only=True)
class Truth:
    """Simulator ground truth stored beside a run: named arrays plus attributes."""

    arrays: dict[str, np.ndarray]
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class RunData:
    """One recording run, in memory, as written to or read from a store.

    ``eeg`` is [n_channels, n_samples] in the dataset's units, ``bold`` [n_rois, n_volumes],
    ``volume_times`` [n_volumes] in seconds on the EEG clock (sample 0 is t = 0).
    ``channels``/``rois`` default to the dataset's lists; when given they must match them.
    """

    subject: str
    run: str
    eeg: np.ndarray
    bold: np.ndarray
    volume_times: np.ndarray
    session: str | None = None
    task: str | None = None
    channels: tuple[str, ...] | None = None
    rois: tuple[str, ...] | None = None
    bad_channels: list[str] = field(default_factory=list)
    qc: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    truth: Truth | None = None

    @property
    def key(self) -> RunKey:
        return RunKey(self.subject, self.run)

    def attrs(self) -> dict[str, Any]:
        """Run attributes as stored (before the content hash is added)."""
        return {
            "subject": self.subject,
            "session": self.session,
            "task": self.task,
            "run": self.run,
            "bad_channels": list(self.bad_channels),
            "qc": self.qc,
            "provenance": self.provenance,
            "n_samples": int(self.eeg.shape[-1]),
            "n_volumes": int(self.bold.shape[-1]),
        }


def _as_float(array: Any, dtype: np.dtype, *, name: str, where: str) -> np.ndarray:
    arr = np.asarray(array)
    if arr.dtype.kind != "f":
        raise RunValidationError(
            f"{where}: {name} has dtype {arr.dtype}, expected a floating type ({dtype})"
        )
    return np.ascontiguousarray(arr, dtype=dtype)


def validate_run(run: RunData, info: DatasetInfo) -> RunData:
    """Check a run against the dataset contract and return it with schema dtypes.

    Raises :class:`RunValidationError` naming the run and the first problem found.
    """
    where = f"run {run.subject}/{run.run}"
    check_key(run.subject, what="subject")
    check_key(run.run, what="run")
    if run.channels is not None and tuple(run.channels) != info.eeg.channels:
        raise RunValidationError(
            f"{where}: channel list differs from the dataset's "
            f"({_list_diff(info.eeg.channels, run.channels)})"
        )
    if run.rois is not None and tuple(run.rois) != info.bold.rois:
        raise RunValidationError(
            f"{where}: ROI list differs from the dataset's ({_list_diff(info.bold.rois, run.rois)})"
        )
    eeg = _as_float(run.eeg, EEG_DTYPE, name="eeg", where=where)
    bold = _as_float(run.bold, BOLD_DTYPE, name="bold", where=where)
    times = _as_float(run.volume_times, TIME_DTYPE, name="volume_times", where=where)
    n_ch, n_roi = len(info.eeg.channels), len(info.bold.rois)
    if eeg.ndim != 2 or eeg.shape[0] != n_ch:
        raise RunValidationError(
            f"{where}: eeg has shape {eeg.shape}, expected ({n_ch} channels, n_samples)"
        )
    if bold.ndim != 2 or bold.shape[0] != n_roi:
        raise RunValidationError(
            f"{where}: bold has shape {bold.shape}, expected ({n_roi} ROIs, n_volumes)"
        )
    if times.ndim != 1 or times.shape[0] != bold.shape[1]:
        raise RunValidationError(
            f"{where}: volume_times has shape {times.shape}, expected ({bold.shape[1]},) "
            "to match the BOLD volumes"
        )
    if bold.shape[1] < 2:
        raise RunValidationError(f"{where}: bold has {bold.shape[1]} volume(s), need at least 2")
    for name, arr in (("eeg", eeg), ("bold", bold), ("volume_times", times)):
        bad = ~np.isfinite(arr)
        if bad.any():
            first = np.argwhere(bad)[0].tolist()
            raise RunValidationError(
                f"{where}: {name} has {int(bad.sum())} non-finite value(s) (first at index {first})"
            )
    duration = eeg.shape[1] / info.eeg.sfreq
    if duration < info.min_window_s:
        raise RunValidationError(
            f"{where}: EEG lasts {duration:.2f} s, shorter than one window "
            f"({info.min_window_s:g} s)"
        )
    steps = np.diff(times)
    if (steps <= 0).any():
        i = int(np.argmax(steps <= 0))
        raise RunValidationError(
            f"{where}: volume_times not strictly increasing "
            f"(volume {i + 1} at {times[i + 1]:.3f} s after {times[i]:.3f} s)"
        )
    if times[0] < 0 or times[-1] > duration:
        raise RunValidationError(
            f"{where}: volume times {times[0]:.3f}..{times[-1]:.3f} s fall outside the EEG "
            f"recording (0..{duration:.3f} s)"
        )
    unknown_bad = sorted(set(run.bad_channels) - set(info.eeg.channels))
    if unknown_bad:
        raise RunValidationError(f"{where}: bad_channels not in the channel list: {unknown_bad}")
    truth = None
    if run.truth is not None:
        arrays = {}
        for name, arr in run.truth.arrays.items():
            check_key(name, what="truth array")
            arrays[name] = _as_float(arr, np.dtype("float32"), name=f"truth/{name}", where=where)
            if not np.isfinite(arrays[name]).all():
                raise RunValidationError(f"{where}: truth/{name} has non-finite values")
        truth = Truth(arrays=arrays, attrs=dict(run.truth.attrs))
    return RunData(
        subject=run.subject,
        run=run.run,
        eeg=eeg,
        bold=bold,
        volume_times=times,
        session=run.session,
        task=run.task,
        channels=info.eeg.channels,
        rois=info.bold.rois,
        bad_channels=list(run.bad_channels),
        qc=dict(run.qc),
        provenance=dict(run.provenance),
        truth=truth,
    )


def content_sha256(run: RunData) -> str:
    """Hash of everything a run stores: equal hashes mean a rewrite would change nothing."""
    h = hashlib.sha256()
    h.update(json.dumps(json_safe(run.attrs()), sort_keys=True).encode())
    for arr in (run.eeg, run.bold, run.volume_times):
        h.update(str(arr.dtype).encode() + str(arr.shape).encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    if run.truth is not None:
        h.update(json.dumps(json_safe(run.truth.attrs), sort_keys=True).encode())
        for name in sorted(run.truth.arrays):
            arr = run.truth.arrays[name]
            h.update(name.encode() + str(arr.dtype).encode() + str(arr.shape).encode())
            h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def _list_diff(expected: tuple[str, ...], got: tuple[str, ...] | list[str]) -> str:
    got = tuple(got)
    missing = [n for n in expected if n not in got]
    extra = [n for n in got if n not in expected]
    parts = []
    if missing:
        parts.append(f"missing {missing}")
    if extra:
        parts.append(f"unexpected {extra}")
    if not parts:
        parts.append("same names in a different order")
    return "; ".join(parts)

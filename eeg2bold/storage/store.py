"""Open, create and write eeg2bold dataset stores (Zarr v3; local folders or fsspec URLs).

Readers (:class:`Dataset`) never write. Writers (:class:`WritableDataset`) publish one run at a
time atomically: the run is written to a temporary folder, read back and checked against its
content hash, then moved into place. Re-writing identical content is a no-op; different content
needs ``overwrite=True``. A refused or interrupted write leaves every stored run as it was.

A dataset ingested through an atlas also keeps that atlas (group ``atlas`` at the root: the
integer label image, its affine and its label names), published the same way and only once: a
store holds one atlas, and a different one is refused.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import os
import platform
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import zarr
from zarr.abc.store import Store

import eeg2bold
from eeg2bold.errors import DatasetError, RunValidationError
from eeg2bold.jsonsafe import json_safe
from eeg2bold.storage.location import TMP_DIR, Location, object_store_errors, writer_alive
from eeg2bold.storage.qc import compute_qc
from eeg2bold.storage.schema import (
    EEG_CHUNK_S,
    EEG_COMPRESSOR,
    DatasetInfo,
    RunData,
    RunKey,
    Truth,
    check_key,
    content_sha256,
    validate_run,
)

if TYPE_CHECKING:
    import nibabel as nib

WriteStatus = Literal["written", "unchanged", "replaced"]
_ARRAYS = ("eeg", "bold", "volume_times")
# the simulator's ground truth, by array: its dimensions (others get <name>_<axis>)
TRUTH_DIMS = {
    "leadfield": ("channel", "source"),
    "envelopes": ("driver", "envelope_time"),
    "coupling": ("roi", "driver"),
    "hrf": ("hrf_lag",),
    "bold_clean": ("roi", "volume"),
}
#: The root group that holds the dataset's atlas; never a subject (see :meth:`Dataset.runs`).
ATLAS_GROUP = "atlas"


@dataclass(frozen=True, kw_only=True)
class StoredAtlas:
    """The label image a dataset's ROIs were extracted with, as kept in its store.

    ``data`` is [i, j, k] integer labels (0 is background), ``affine`` maps voxel indices to
    world mm, ``labels`` names the region of each label value (as :attr:`image` and ``labels``
    of an ingest atlas). Two atlases are the same when their :attr:`sha256` agree (label array,
    affine and names; ``name`` and ``record`` only describe).
    """

    data: np.ndarray
    affine: np.ndarray
    labels: dict[int, str]
    name: str = ""
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def labels_sha256(self) -> str:
        """sha256 of the label array: dtype, shape, then its bytes in C order."""
        h = hashlib.sha256(f"{self.data.dtype.str}{self.data.shape}".encode())
        h.update(np.ascontiguousarray(self.data).tobytes())
        return h.hexdigest()

    @property
    def sha256(self) -> str:
        """sha256 of what makes the atlas: label array, affine, label names."""
        h = hashlib.sha256(self.labels_sha256.encode())
        h.update(np.asarray(self.affine, dtype=np.float64).tobytes())
        h.update(repr(sorted(self.labels.items())).encode())
        return h.hexdigest()

    @property
    def image(self) -> nib.Nifti1Image:
        """The label image as NIfTI (what plotting and nilearn take)."""
        import nibabel as nib

        return nib.Nifti1Image(self.data, np.asarray(self.affine, dtype=np.float64))

    def attrs(self) -> dict[str, Any]:
        """Attributes of the atlas group (everything but the label array)."""
        return json_safe(
            {
                "name": self.name,
                "affine": np.asarray(self.affine, dtype=np.float64).tolist(),
                "label_names": {str(v): n for v, n in sorted(self.labels.items())},
                "labels_sha256": self.labels_sha256,
                "sha256": self.sha256,
                "record": self.record,
            }
        )


def open_dataset(
    url: str | os.PathLike[str], *, storage_options: dict[str, Any] | None = None
) -> Dataset:
    """Open an existing dataset read-only; clear :class:`DatasetError` if it is not one."""
    location = Location(url, storage_options=storage_options)
    with object_store_errors(location.display):
        return Dataset(location, _read_info(location))


def create_dataset(
    url: str | os.PathLike[str],
    info: DatasetInfo,
    *,
    exist_ok: bool = True,
    storage_options: dict[str, Any] | None = None,
) -> WritableDataset:
    """Create a dataset, or open an existing compatible one for writing.

    An existing dataset must agree on sampling rate, channels, units, TR and ROIs; otherwise
    its runs could not be mixed with new ones and a :class:`DatasetError` lists the differences.
    """
    location = Location(url, storage_options=storage_options)
    with object_store_errors(location.display):
        exists = location.exists("zarr.json")
    if exists:
        if not exist_ok:
            raise DatasetError(f"{location.display} already exists")
        existing = _read_info(location)
        diffs = existing.compatible_with(info)
        if diffs:
            raise DatasetError(
                f"{location.display} already holds a dataset that differs: " + "; ".join(diffs)
            )
        return WritableDataset(location, existing)
    if location.is_local and os.path.exists(location.root):
        if not os.path.isdir(location.root):
            raise DatasetError(f"{location.display} exists and is not a folder")
        if any(not n.startswith(".") for n in os.listdir(location.root)):
            raise DatasetError(f"{location.display} exists, is not empty and is not a dataset")
    attrs = info.to_attrs()
    attrs["created"] = info.created or _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    attrs["provenance"] = {"software": _versions(), **info.provenance}
    zarr.open_group(
        location.zarr_store(read_only=False),
        mode="w",
        zarr_format=3,
        attributes=json_safe(attrs),
    )
    return WritableDataset(location, _read_info(location))


def _versions() -> dict[str, str]:
    return {
        "eeg2bold": eeg2bold.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "zarr": zarr.__version__,
    }


def _read_info(location: Location) -> DatasetInfo:
    where = location.display
    if location.is_local and not os.path.exists(location.root):
        raise DatasetError(f"{where}: no such file or folder")
    try:
        meta = location.read_json("zarr.json")
    except FileNotFoundError:
        raise DatasetError(f"{where} is not an eeg2bold dataset (no zarr.json)") from None
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{where}: corrupt store (zarr.json unreadable: {exc})") from None
    if not isinstance(meta, dict) or meta.get("node_type") != "group":
        raise DatasetError(f"{where} is not an eeg2bold dataset (root is not a Zarr v3 group)")
    return DatasetInfo.from_attrs(meta.get("attributes", {}), where=where)


# a temporary of another host (or an older eeg2bold) untouched this long is a crashed write
STALE_AFTER_S = 24 * 3600.0


class Dataset:
    """Read-only view of a dataset store."""

    def __init__(self, location: Location, info: DatasetInfo):
        self.location = location
        self.info = info
        self._store = location.zarr_store(read_only=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location.display!r})"

    @property
    def url(self) -> str:
        """The store's URL with any credentials masked."""
        return self.location.display

    def subjects(self) -> list[str]:
        return sorted({k.subject for k in self.runs()})

    def runs(self, subject: str | None = None) -> list[RunKey]:
        """Published runs, sorted; half-written or temporary folders are never listed."""
        self.location.refresh()
        subjects = [subject] if subject else self.location.list_dirs()
        keys = []
        for subj in subjects:
            if subj.startswith(".") or subj == ATLAS_GROUP:
                continue
            if not self.location.exists(subj, "zarr.json"):
                continue
            for run in self.location.list_dirs(subj):
                if not run.startswith(".") and self.location.exists(subj, run, "zarr.json"):
                    keys.append(RunKey(subj, run))
        return sorted(keys)

    def has_run(self, key: RunKey) -> bool:
        return self.location.exists(key.subject, key.run, "zarr.json")

    def run_attrs(self, key: RunKey) -> dict[str, Any]:
        """Attributes of one run (subject, session, task, bad_channels, qc, provenance, ...)."""
        try:
            meta = self.location.read_json(key.subject, key.run, "zarr.json")
        except FileNotFoundError:
            raise DatasetError(f"{self.url}: no run {key}") from None
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{self.url}: run {key} is corrupt ({exc})") from None
        return dict(meta.get("attributes", {}))

    def array(self, key: RunKey, name: str) -> zarr.Array:
        """A lazy Zarr array of one run (``eeg``, ``bold``, ``volume_times`` or ``truth/...``)."""
        return _open_array(self._store, f"{key.subject}/{key.run}/{name}", where=self._where(key))

    def read_run(self, key: RunKey, *, truth: bool = False) -> RunData:
        """Load a whole run into memory (EEG is MB-scale per run)."""
        if not self.has_run(key):
            raise DatasetError(f"{self.url}: no run {key}")
        run = _load_run(
            self._store, f"{key.subject}/{key.run}", where=self._where(key), truth=truth
        )
        run.channels, run.rois = self.info.eeg.channels, self.info.bold.rois
        return run

    def read_truth(self, key: RunKey) -> Truth | None:
        """Simulator ground truth of a run, or None for recorded data."""
        return self.read_run(key, truth=True).truth

    def atlas(self) -> StoredAtlas | None:
        """The atlas the dataset's ROIs come from (None: region tables, or an older store)."""
        if not self.location.exists(ATLAS_GROUP, "zarr.json"):
            return None
        return _load_atlas(self._store, ATLAS_GROUP, where=f"{self.url}: atlas")

    def _where(self, key: RunKey) -> str:
        return f"{self.url}: run {key}"

    def verify(self, key: RunKey) -> list[str]:
        """Problems found by re-reading a run fully (missing chunks, edits, schema breaks)."""
        try:
            run = self.read_run(key, truth=True)
            validate_run(run, self.info)
        except DatasetError as exc:
            return [str(exc)]
        stored = self.run_attrs(key).get("content_sha256")
        if stored != content_sha256(run):
            return [f"run {key}: content does not match its stored hash (modified or corrupt)"]
        return []

    def stale_temporaries(self, *, max_age_s: float = STALE_AFTER_S) -> list[str]:
        """Leftovers of crashed writers (never visible as runs; safe to delete): on this host,
        those whose process is gone; otherwise those untouched for ``max_age_s`` — never a
        live writer's."""
        now = time.time()
        stale = []
        for name in self.location.temporaries():
            alive = writer_alive(name)
            if alive is False:
                stale.append(name)
            elif alive is None:
                newest = self.location.newest_mtime(TMP_DIR, name)
                if newest is not None and now - newest > max_age_s:
                    stale.append(name)
        return stale

    def live_temporaries(self) -> list[str]:
        """Temporaries of writers that may still run (left alone by a repair)."""
        stale = set(self.stale_temporaries())
        return [n for n in self.location.temporaries() if n not in stale]

    def remove_stale_temporaries(self) -> list[str]:
        """Delete the crashed writers' temporaries; returns their names."""
        removed = self.stale_temporaries()
        for name in removed:
            self.location.remove(TMP_DIR, name)
        self.location.drop_empty_tmp_root()
        return removed


class WritableDataset(Dataset):
    """A dataset opened for writing runs."""

    def write_run(self, run: RunData, *, overwrite: bool = False) -> WriteStatus:
        """Validate and atomically publish one run; returns what happened.

        Refusals raise :class:`RunValidationError` (bad run) or :class:`DatasetError` (run exists
        with different content and ``overwrite`` is false) and change nothing.
        """
        if run.subject == ATLAS_GROUP:
            raise RunValidationError(
                f"run {run.key}: subject name {ATLAS_GROUP!r} is reserved (the store's atlas)"
            )
        run = validate_run(run, self.info)
        auto_qc = compute_qc(run, self.info)
        run.qc = {**auto_qc, **run.qc}
        digest = content_sha256(run)
        key = run.key
        exists = self.has_run(key)
        if exists:
            if self.run_attrs(key).get("content_sha256") == digest:
                return "unchanged"
            if not overwrite:
                raise DatasetError(
                    f"{self.url}: run {key} already exists with different content "
                    "(use overwrite / --overwrite to replace it)"
                )
        self.remove_stale_temporaries()  # a crashed earlier writer's leftovers
        with self._temporary() as tmp:
            self._write_tmp(tmp, run, digest)
            self._check_tmp(tmp, run, digest)
            self._ensure_subject(key.subject)
            if exists:
                self.location.replace(tmp, (key.subject, key.run))
                return "replaced"
            try:
                self.location.publish(tmp, (key.subject, key.run))
            except FileExistsError:
                if self.run_attrs(key).get("content_sha256") == digest:
                    return "unchanged"
                raise DatasetError(
                    f"{self.url}: run {key} was written concurrently with different content"
                ) from None
        return "written"

    def write_atlas(
        self,
        *,
        image: nib.Nifti1Image,
        labels: Mapping[int, str],
        name: str = "",
        record: Mapping[str, Any] | None = None,
    ) -> WriteStatus:
        """Keep the dataset's label atlas (3-D integer image, name of each label value).

        Written once, atomically like a run: the same atlas again is ``"unchanged"``; a
        different one raises :class:`DatasetError` (a store's ROIs come from one atlas).
        """
        data = np.asarray(image.dataobj)
        if data.ndim != 3 or data.dtype.kind not in "iu":
            raise DatasetError(
                f"{self.url}: an atlas is a 3-D integer label image, got {data.dtype} {data.shape}"
            )
        atlas = StoredAtlas(
            data=np.ascontiguousarray(data),
            affine=np.asarray(image.affine, dtype=np.float64),
            labels={int(v): str(n) for v, n in labels.items()},
            name=name,
            record=dict(record or {}),
        )
        if self._holds_atlas(atlas):
            return "unchanged"
        self.remove_stale_temporaries()
        with self._temporary() as tmp:
            store = self.location.zarr_store(*tmp, read_only=False)
            group = zarr.open_group(store, mode="w", zarr_format=3, attributes=atlas.attrs())
            out = group.create_array(
                "labels",
                shape=atlas.data.shape,
                dtype=atlas.data.dtype,
                chunks=atlas.data.shape,
                fill_value=0,
                dimension_names=("i", "j", "k"),
                attributes={"long_name": "atlas labels; world mm = affine @ (i, j, k, 1)"},
            )
            out[...] = atlas.data
            copy = _load_atlas(
                self.location.zarr_store(*tmp, read_only=True), "", where=f"{self.url}: atlas"
            )
            if copy.sha256 != atlas.sha256:
                raise DatasetError(
                    f"{self.url}: atlas read-back check failed (storage did not keep the data "
                    "as written); nothing was published"
                )
            try:
                self.location.publish(tmp, (ATLAS_GROUP,))
            except FileExistsError:  # written concurrently: fine if it is the same atlas
                if self._holds_atlas(atlas):
                    return "unchanged"
                raise
        return "written"

    def _holds_atlas(self, atlas: StoredAtlas) -> bool:
        """True if the store already holds this atlas, False if it holds none; a store that
        holds another atlas refuses this one (:class:`DatasetError`)."""
        stored = self.atlas()
        if stored is None:
            return False
        if stored.sha256 == atlas.sha256:
            return True
        raise DatasetError(
            f"{self.url}: the store already holds atlas {stored.name or '(unnamed)'!r} "
            f"(sha256 {stored.sha256[:12]}), not {atlas.name or 'this one'!r} "
            f"(sha256 {atlas.sha256[:12]}): ingest into a new store"
        )

    @contextlib.contextmanager
    def _temporary(self) -> Iterator[tuple[str, ...]]:
        """A fresh temporary folder for one publication, removed afterwards in any case."""
        tmp = self.location.new_tmp()
        try:
            yield tmp
        finally:
            self.location.remove(*tmp)
            self.location.drop_empty_tmp_root()

    def _write_tmp(self, tmp: tuple[str, ...], run: RunData, digest: str) -> None:
        store = self.location.zarr_store(*tmp, read_only=False)
        attrs = json_safe({**run.attrs(), "content_sha256": digest})
        group = zarr.open_group(store, mode="w", zarr_format=3, attributes=attrs)
        chunk_t = max(1, int(round(EEG_CHUNK_S * self.info.eeg.sfreq)))
        n_ch, n_t = run.eeg.shape
        # coordinates, so xarray (open_datatree) and friends see labelled arrays: channel and
        # ROI names; volume_times is the bold's volume coordinate; EEG time is sample / sfreq
        for name, labels in (("channel", self.info.eeg.channels), ("roi", self.info.bold.rois)):
            coord = group.create_array(
                name, shape=(len(labels),), dtype=str, dimension_names=(name,)
            )
            coord[...] = np.asarray(labels, dtype=object)
        eeg = group.create_array(
            "eeg",
            shape=run.eeg.shape,
            dtype=run.eeg.dtype,
            chunks=(n_ch, min(chunk_t, n_t)),
            compressors=[EEG_COMPRESSOR],
            fill_value=np.nan,
            dimension_names=("channel", "time"),
            attributes={
                "units": self.info.eeg.units,
                "sfreq": float(self.info.eeg.sfreq),
                "long_name": "EEG; time is sample / sfreq seconds on the EEG clock",
            },
        )
        eeg[...] = run.eeg
        bold = group.create_array(
            "bold",
            shape=run.bold.shape,
            dtype=run.bold.dtype,
            chunks=run.bold.shape,
            fill_value=np.nan,
            dimension_names=("roi", "volume"),
            attributes={"units": self.info.bold.units, "coordinates": "volume_times"},
        )
        bold[...] = run.bold
        times = group.create_array(
            "volume_times",
            shape=run.volume_times.shape,
            dtype=run.volume_times.dtype,
            chunks=run.volume_times.shape,
            fill_value=np.nan,
            dimension_names=("volume",),
            attributes={"units": "s", "long_name": "volume acquisition time on the EEG clock"},
        )
        times[...] = run.volume_times
        if run.truth is not None:
            truth = group.create_group("truth", attributes=json_safe(run.truth.attrs))
            for name, arr in run.truth.arrays.items():
                dims = TRUTH_DIMS.get(name) or tuple(f"{name}_{i}" for i in range(arr.ndim))
                out = truth.create_array(
                    name,
                    shape=arr.shape,
                    dtype=arr.dtype,
                    chunks=arr.shape,
                    fill_value=np.nan,
                    dimension_names=dims if len(dims) == arr.ndim else None,
                )
                out[...] = arr

    def _check_tmp(self, tmp: tuple[str, ...], run: RunData, digest: str) -> None:
        """Read the temporary copy back: publish only what we can read as written."""
        store = self.location.zarr_store(*tmp, read_only=True)
        copy = _load_run(store, "", where=self._where(run.key), truth=run.truth is not None)
        if content_sha256(copy) != digest:
            raise DatasetError(
                f"{self._where(run.key)}: read-back check failed (storage did not keep the data "
                "as written); nothing was published"
            )

    def _ensure_subject(self, subject: str) -> None:
        check_key(subject, what="subject")
        if self.location.exists(subject, "zarr.json"):
            return
        with self._temporary() as tmp:
            zarr.open_group(
                self.location.zarr_store(*tmp, read_only=False),
                mode="w",
                zarr_format=3,
                attributes={"subject": subject},
            )
            if self.location.is_local and os.path.isdir(self.location.path(subject)):
                # A folder without zarr.json: left by an interrupted first write; adopt it.
                os.replace(
                    self.location.path(*tmp, "zarr.json"), self.location.path(subject, "zarr.json")
                )
                return
            with contextlib.suppress(FileExistsError):  # created concurrently: fine
                self.location.publish(tmp, (subject,))


def iter_runs(dataset: Dataset, *, truth: bool = False) -> Iterator[RunData]:
    """Every run of a dataset, loaded one at a time."""
    for key in dataset.runs():
        yield dataset.read_run(key, truth=truth)


def _open_array(store: Store, path: str, *, where: str) -> zarr.Array:
    name = path.split("/", 2)[-1] if path.count("/") >= 2 else path
    try:
        arr = zarr.open_array(store, path=path, mode="r")
    except FileNotFoundError:
        raise DatasetError(f"{where} has no array {name!r}") from None
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise DatasetError(f"{where}: array {name!r} is corrupt ({exc})") from None
    return arr


# What zarr's and tensorstore's decoders raise on stored bytes they cannot decode (a damaged
# chunk: blosc says RuntimeError, tensorstore ValueError).
DECODE_ERRORS = (ValueError, OSError, RuntimeError)


def undecodable(where: str, what: str, exc: BaseException) -> DatasetError:
    """A chunk that cannot be decoded, as the data error it is (naming the run and array).

    zarr decodes a read's chunks concurrently on its own event loop; the failure of one leaves
    the others' tasks running, and asyncio reports each one still pending when the process
    ends (hundreds of lines): they are let finish first."""
    _drain_zarr_loop()
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    return DatasetError(
        f"{where}: {what} cannot be decoded (a damaged chunk: {reason}); check the store with "
        "`eeg2bold inspect --verify`"
    )


def _drain_zarr_loop() -> None:
    """Let zarr's event loop finish the chunk reads a failed read left running (so none is
    still pending, and reported, when the process ends)."""
    import asyncio

    with contextlib.suppress(Exception):  # zarr's internals: best effort
        from zarr.core.sync import sync

        async def settle() -> None:
            for _ in range(50):
                others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                if not others:
                    return
                await asyncio.wait(others, timeout=0.1)

        sync(settle())


def _read_array(store: Store, path: str, *, where: str) -> np.ndarray:
    arr = _open_array(store, path, where=where)
    try:
        return np.asarray(arr[...])
    except DECODE_ERRORS as exc:
        raise undecodable(where, f"array {path.rsplit('/', 1)[-1]!r}", exc) from None


def _load_atlas(store: Store, prefix: str, *, where: str) -> StoredAtlas:
    """An atlas group (at ``prefix`` in ``store``) read fully into memory."""
    try:
        attrs: dict[str, Any] = dict(zarr.open_group(store, path=prefix, mode="r").attrs.asdict())
        affine = np.asarray(attrs["affine"], dtype=np.float64).reshape(4, 4)
        labels = {int(v): str(n) for v, n in attrs["label_names"].items()}
    except (FileNotFoundError, ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        raise DatasetError(f"{where}: corrupt atlas group ({exc!r})") from None
    data = _read_array(store, f"{prefix}/labels" if prefix else "labels", where=where)
    return StoredAtlas(
        data=data,
        affine=affine,
        labels=labels,
        name=str(attrs.get("name", "")),
        record=dict(attrs.get("record", {})),
    )


def _load_run(store: Store, prefix: str, *, where: str, truth: bool) -> RunData:
    """A run group (at ``prefix`` in ``store``) read fully into memory."""

    def path(*parts: str) -> str:
        return "/".join([prefix, *parts] if prefix else parts)

    try:
        group = zarr.open_group(store, path=prefix, mode="r")
        attrs: dict[str, Any] = dict(group.attrs.asdict())
    except (FileNotFoundError, ValueError, KeyError, TypeError, OSError) as exc:
        raise DatasetError(f"{where}: corrupt run group ({exc})") from None
    arrays = {name: _read_array(store, path(name), where=where) for name in _ARRAYS}
    truth_data = None
    if truth and "truth" in group:
        tgroup = group["truth"]
        if not isinstance(tgroup, zarr.Group):
            raise DatasetError(f"{where}: 'truth' is not a group")
        names = sorted(name for name, _ in tgroup.arrays())
        truth_data = Truth(
            arrays={n: _read_array(store, path("truth", n), where=where) for n in names},
            attrs=dict(tgroup.attrs.asdict()),
        )
    return RunData(
        subject=str(attrs.get("subject")),
        run=str(attrs.get("run")),
        eeg=arrays["eeg"],
        bold=arrays["bold"],
        volume_times=arrays["volume_times"],
        session=attrs.get("session"),
        task=attrs.get("task"),
        bad_channels=list(attrs.get("bad_channels", [])),
        qc=dict(attrs.get("qc", {})),
        provenance=dict(attrs.get("provenance", {})),
        truth=truth_data,
    )

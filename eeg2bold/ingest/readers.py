"""EEG readers: one entry point over MNE's readers plus EEG arrays stored in MATLAB files.

Every reader returns an MNE ``Raw`` (not preloaded where the format allows it, so headers are
cheap and data can be read a channel group at a time). Any failure to read becomes a one-line
:class:`IngestError` naming the file and the format.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mne
import numpy as np

from eeg2bold.ingest.errors import IngestError
from eeg2bold.ingest.specs import EEGSource, MatOptions

_UNIT_SCALE = {"V": 1.0, "mV": 1e-3, "uV": 1e-6}
_FORMAT_NAMES = {
    "eeglab": "EEGLAB",
    "brainvision": "BrainVision",
    "edf": "EDF",
    "bdf": "BDF",
    "fif": "FIF",
    "mat": "MATLAB",
    "bids": "BIDS EEG",
}


def read_eeg(source: EEGSource, *, log: list[str] | None = None) -> mne.io.BaseRaw:
    """Open a recording (data read lazily where the format allows).

    Warnings raised by the underlying readers are appended to ``log`` instead of printed.
    """
    path = source.path
    if not path.exists():
        raise IngestError(f"{path}: no such file")
    kind = _FORMAT_NAMES[source.format]
    check_complete(source)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            raw = _open(source)
            if raw.n_times < 2:
                raise IngestError(f"{path}: {kind} file holds no samples")
    except IngestError:
        raise
    except Exception as exc:  # readers raise anything from ValueError to struct.error
        text = _short(exc).replace(", please report this error to MNE-Python developers", "")
        if "Incorrect number of samples" in text:
            raise IngestError(f"{path}: truncated or corrupt {kind} data ({text})") from None
        raise IngestError(f"{path}: cannot read {kind} file ({text})") from None
    if source.format == "eeglab":
        _check_fdt(path, n_values=len(raw.ch_names) * raw.n_times)
    if log is not None:
        log.extend(f"{path.name}: {w.message}" for w in caught)
    return raw


def _check_fdt(path: Path, *, n_values: int) -> None:
    """An EEGLAB .fdt holds float32 channels x samples; a shorter one is truncated."""
    fdt = _sibling(path, ".fdt")
    if fdt is None:
        return
    size, expected = fdt.stat().st_size, 4 * n_values
    if size < expected:
        raise IngestError(
            f"{fdt}: truncated EEGLAB data file ({size} bytes, the .set promises {expected})"
        )


def check_complete(source: EEGSource) -> None:
    """Refuse files shorter than their header says (MNE would read them short, silently)."""
    path = source.path
    suffix = path.suffix.lower()
    if suffix in (".edf", ".bdf"):
        expected = _edf_size(path, bytes_per_sample=3 if suffix == ".bdf" else 2)
        size = path.stat().st_size
        if expected is not None and size < expected:
            raise IngestError(
                f"{path}: truncated {suffix[1:].upper()} file ({size} bytes, the header "
                f"promises {expected})"
            )
    elif suffix == ".vhdr":
        _check_brainvision(path)


def _edf_size(path: Path, *, bytes_per_sample: int) -> int | None:
    """File size an EDF/BDF header promises (None if it does not say)."""
    try:
        with open(path, "rb") as f:
            head = f.read(256)
            n_records = int(head[236:244].decode("ascii").strip())
            header_bytes = int(head[184:192].decode("ascii").strip())
            ns = int(head[252:256].decode("ascii").strip())
            f.seek(256 + ns * 216)
            per_record = sum(int(f.read(8).decode("ascii").strip()) for _ in range(ns))
    except (OSError, ValueError, UnicodeDecodeError):
        raise IngestError(f"{path}: not a valid EDF/BDF header") from None
    if n_records < 0:
        return None
    return header_bytes + n_records * per_record * bytes_per_sample


_BV_BYTES = {"INT_16": 2, "UINT_16": 2, "INT_32": 4, "IEEE_FLOAT_32": 4}


def _check_brainvision(vhdr: Path) -> None:
    """The binary file must hold a whole number of multiplexed samples."""
    try:
        text = vhdr.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise IngestError(f"{vhdr}: cannot read ({exc})") from None
    fmt = re.search(r"^BinaryFormat=(\S+)", text, flags=re.MULTILINE)
    n_ch = re.search(r"^NumberOfChannels=(\d+)", text, flags=re.MULTILINE)
    data = re.search(r"^DataFile=(.+)$", text, flags=re.MULTILINE)
    if not (fmt and n_ch and data) or fmt.group(1) not in _BV_BYTES:
        return
    eeg = vhdr.parent / data.group(1).strip()
    if not eeg.exists():
        raise IngestError(f"{vhdr}: its data file {eeg.name} is missing")
    frame = int(n_ch.group(1)) * _BV_BYTES[fmt.group(1)]
    size = eeg.stat().st_size
    if size == 0 or size % frame:
        raise IngestError(
            f"{eeg}: truncated BrainVision data ({size} bytes is not a whole number of "
            f"{frame}-byte samples)"
        )
    # cut at a sample boundary: the markers still say how long the recording was
    marker = re.search(r"^MarkerFile=(.+)$", text, flags=re.MULTILINE)
    if marker is None or not (vmrk := vhdr.parent / marker.group(1).strip()).exists():
        return
    last = _last_marker_sample(vmrk)
    if last is not None and last > size // frame:
        raise IngestError(
            f"{eeg}: truncated BrainVision data: it ends at sample {size // frame}, but "
            f"{vmrk.name} has markers up to sample {last}"
        )


def _last_marker_sample(vmrk: Path) -> int | None:
    """The last sample any marker of a .vmrk file refers to (1-based; position + size − 1)."""
    try:
        text = vmrk.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    ends = []
    for m in re.finditer(r"^Mk\d+=[^,]*,[^,]*,\s*(\d+)\s*,\s*(\d+)", text, flags=re.MULTILINE):
        ends.append(int(m.group(1)) + max(int(m.group(2)), 1) - 1)
    return max(ends) if ends else None


def _open(source: EEGSource) -> mne.io.BaseRaw:
    path, fmt = source.path, source.format
    if fmt == "eeglab":
        return mne.io.read_raw_eeglab(path, preload=False, verbose="error")
    if fmt == "brainvision":
        return mne.io.read_raw_brainvision(path, preload=False, verbose="error")
    if fmt == "edf":
        return mne.io.read_raw_edf(path, preload=False, verbose="error")
    if fmt == "bdf":
        return mne.io.read_raw_bdf(path, preload=False, verbose="error")
    if fmt == "fif":
        return mne.io.read_raw_fif(path, preload=False, verbose="error")
    if fmt == "mat":
        if source.mat is None:
            raise IngestError(f"{path}: MATLAB EEG needs a variable name and a sampling rate")
        return read_mat_eeg(path, options=source.mat)
    if fmt == "bids":
        import mne_bids

        if source.bids_root is None:
            raise IngestError(f"{path}: BIDS EEG needs the dataset root")
        entities = mne_bids.get_entities_from_fname(path.name, on_error="ignore")
        bids_path = mne_bids.BIDSPath(
            root=source.bids_root,
            datatype="eeg",
            suffix="eeg",
            extension=_bids_extension(path),
            **{k: v for k, v in entities.items() if v is not None and k != "suffix"},
        )
        return mne_bids.read_raw_bids(bids_path, verbose="error")
    raise IngestError(f"{path}: unsupported EEG format {fmt!r}")


def _bids_extension(path: Path) -> str:
    name = path.name
    return name[name.index(".") :] if "." in name else ""


def companion_files(source: EEGSource) -> list[Path]:
    """Every file the recording is read from (hashed for provenance and resumption)."""
    path = source.path
    files = [path]
    suffix = path.suffix.lower()
    if suffix == ".set":
        fdt = _sibling(path, ".fdt")
        if fdt is not None:
            files.append(fdt)
    elif suffix == ".vhdr":
        files.extend(_brainvision_parts(path))
    return files


def _sibling(path: Path, suffix: str) -> Path | None:
    for candidate in (path.with_suffix(suffix), path.with_suffix(suffix.upper())):
        if candidate.exists():
            return candidate
    return None


def _brainvision_parts(vhdr: Path) -> list[Path]:
    """The data and marker files a .vhdr names (missing ones are the reader's to report)."""
    try:
        text = vhdr.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    out = []
    for key in ("DataFile", "MarkerFile"):
        m = re.search(rf"^{key}=(.+)$", text, flags=re.MULTILINE)
        if m:
            part = vhdr.parent / m.group(1).strip()
            if part.exists():
                out.append(part)
    return out


def read_mat_eeg(path: Path, *, options: MatOptions) -> mne.io.RawArray:
    """An EEG array from a MATLAB file: v7.3 (HDF5) through h5py, older through scipy.io.

    ``options.variable`` may name a struct field with dots (``EEG.data``). The channel axis is
    the one whose length matches ``options.channels``, else the shorter one.
    """
    array = _mat_array(path, options.variable)
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise IngestError(
            f"{path}: variable {options.variable!r} is not a 2-D numeric array "
            f"(shape {array.shape}, dtype {array.dtype})"
        )
    names = options.channels
    if names is not None:
        if len(names) == array.shape[0]:
            pass
        elif len(names) == array.shape[1]:
            array = array.T
        else:
            raise IngestError(
                f"{path}: {len(names)} channel names given but variable {options.variable!r} "
                f"has shape {array.shape}"
            )
    elif array.shape[0] > array.shape[1]:
        array = array.T
    n_ch = array.shape[0]
    if names is None:
        names = tuple(f"EEG{i + 1:03d}" for i in range(n_ch))
    if len(set(names)) != len(names):
        raise IngestError(f"{path}: duplicate channel names {_dups(names)}")
    data = np.asarray(array, dtype=np.float64) * _UNIT_SCALE[options.units]
    if not np.isfinite(data).all():
        raise IngestError(f"{path}: variable {options.variable!r} holds NaN or infinite values")
    info = mne.create_info(list(names), float(options.sfreq), "eeg")
    return mne.io.RawArray(data, info, copy=None, verbose="error")


def _dups(names: Sequence[str]) -> list[str]:
    return sorted(n for n, c in Counter(names).items() if c > 1)


def _mat_array(path: Path, variable: str) -> np.ndarray:
    import h5py

    parts = variable.split(".")
    if h5py.is_hdf5(path):
        with h5py.File(path, "r") as f:
            node: Any = f
            for i, part in enumerate(parts):
                if not isinstance(node, h5py.Group) or part not in node:
                    have = sorted(k for k in node if not k.startswith("#")) if i == 0 else []
                    hint = f" (variables: {', '.join(have)})" if have else ""
                    raise IngestError(f"{path}: no variable {variable!r} in MATLAB file{hint}")
                node = node[part]
            if not isinstance(node, h5py.Dataset):
                raise IngestError(f"{path}: {variable!r} is not an array")
            return np.asarray(node[()]).T  # HDF5 stores MATLAB arrays transposed
    import scipy.io

    try:
        have = [name for name, _, _ in scipy.io.whosmat(path)]
    except Exception as exc:
        raise IngestError(f"{path}: not a MATLAB file ({_short(exc)})") from None
    if parts[0] not in have:
        raise IngestError(
            f"{path}: no variable {parts[0]!r} in MATLAB file (variables: {', '.join(have)})"
        )
    loaded: Any = scipy.io.loadmat(path, variable_names=[parts[0]], simplify_cells=True)
    node = loaded[parts[0]]
    for part in parts[1:]:
        if not isinstance(node, dict) or part not in node:
            raise IngestError(f"{path}: no field {part!r} in MATLAB variable {variable!r}")
        node = node[part]
    return np.asarray(node)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."

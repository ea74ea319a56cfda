"""Fixtures for ingest tests: small recordings and images written in the formats ingest reads.

Everything is generated here (pybv BrainVision, eeglabio EEGLAB, nibabel NIfTI, pandas
tables, mne-bids trees); the real recordings in ../shared/data/real are used where present.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import mne
import nibabel as nib
import numpy as np
import pandas as pd
import pytest

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real"
CHANNELS = ("Fp1", "Fp2", "F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2", "Fz", "Cz")
SFREQ = 250.0
TR = 2.0


@pytest.fixture
def real_data() -> Path:
    """The shared real recordings; skips when this machine does not have them."""
    if not (REAL / "eeg" / "eyes-closed-1.edf").exists():
        pytest.skip(f"real recordings not found at {REAL} (only on machines with shared data)")
    return REAL


def synth_eeg(
    names: Sequence[str] = CHANNELS,
    *,
    seconds: float = 70.0,
    sfreq: float = SFREQ,
    seed: int = 0,
    alpha_hz: float = 10.0,
    line_hz: float | None = 50.0,
) -> np.ndarray:
    """Volts [n_channels, n_samples]: pink-ish noise, alpha on O1/O2, mains, a common offset."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sfreq))
    t = np.arange(n) / sfreq
    white = rng.normal(size=(len(names), n))
    noise = np.cumsum(white, axis=1) * 0.05 + white  # a little 1/f-like drift plus white
    data = 5e-6 * noise
    for i, name in enumerate(names):
        if name in ("O1", "O2", "Oz"):
            data[i] += 20e-6 * np.sin(2 * np.pi * alpha_hz * t + i)
    if line_hz:
        data += 10e-6 * np.sin(2 * np.pi * line_hz * t)
    data += 30e-6  # a common offset the average reference removes
    return data


def volume_onsets(n: int, *, first: float = 4.0, tr: float = TR) -> np.ndarray:
    return first + tr * np.arange(n)


def write_brainvision(
    folder: Path,
    stem: str,
    data: np.ndarray,
    *,
    names: Sequence[str] = CHANNELS,
    sfreq: float = SFREQ,
    markers: Sequence[float] = (),
) -> Path:
    """BrainVision via pybv, with one 'R128' (Response 128) marker per onset."""
    import pybv

    folder.mkdir(parents=True, exist_ok=True)
    events = [
        {"onset": int(round(t * sfreq)), "duration": 1, "description": 128, "type": "Response"}
        for t in markers
    ]
    pybv.write_brainvision(
        data=data * 1e6,
        sfreq=sfreq,
        ch_names=list(names),
        fname_base=stem,
        folder_out=str(folder),
        events=events if events else None,
        unit="µV",
        overwrite=True,
    )
    return folder / f"{stem}.vhdr"


def write_eeglab(
    path: Path,
    data: np.ndarray,
    *,
    names: Sequence[str] = CHANNELS,
    sfreq: float = SFREQ,
    markers: Sequence[float] = (),
    marker: str = "mri",
    fmt: str = "v5",
) -> Path:
    """EEGLAB .set via eeglabio (v5 or v7.3/HDF5)."""
    from eeglabio.raw import export_set

    path.parent.mkdir(parents=True, exist_ok=True)
    ann = [np.array([marker] * len(markers)), np.asarray(markers, float), np.zeros(len(markers))]
    export_set(
        str(path), data, sfreq, list(names), annotations=ann if len(markers) else None, fmt=fmt
    )
    return path


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray, *, tr: float = TR) -> Path:
    """A NIfTI with the TR in pixdim[4] (seconds)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine)
    img.header.set_xyzt_units("mm", "sec")
    if data.ndim == 4:
        img.header["pixdim"][4] = tr
    nib.save(img, path)
    return path


ROI_NAMES = ("Alpha", "Beta", "Gamma")


def small_atlas(folder: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """A 3-region label atlas on an 8x8x8 grid of 4 mm voxels, with its labels CSV."""
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    labels = np.zeros((8, 8, 8), np.int16)
    labels[1:4, 1:4, 1:4] = 1
    labels[4:7, 4:7, 4:7] = 2
    labels[1:4, 5:7, 4:7] = 3
    folder.mkdir(parents=True, exist_ok=True)
    atlas = folder / "atlas.nii.gz"
    nib.save(nib.Nifti1Image(labels, affine), atlas)
    csv = folder / "atlas_labels.csv"
    pd.DataFrame({"index": [1, 2, 3], "name": list(ROI_NAMES)}).to_csv(csv, index=False)
    return atlas, csv, labels, affine


def planted_bold(
    labels: np.ndarray, n_volumes: int, *, seed: int = 0, roi: int = 1, noise: float = 0.3
) -> tuple[np.ndarray, np.ndarray]:
    """4-D data: a slow signal in label ``roi`` only, independent noise everywhere."""
    rng = np.random.default_rng(seed)
    signal = np.sin(np.arange(n_volumes) / 2.5) + 0.5 * np.sin(np.arange(n_volumes) / 7.0)
    data = 100 + noise * rng.normal(size=(*labels.shape, n_volumes))
    data[labels == roi] += signal
    return data, signal


def motion_params(n_volumes: int, *, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(scale=0.05, size=(n_volumes, 6))


def cleaned(signal: np.ndarray, confounds: np.ndarray | None) -> np.ndarray:
    """What a planted signal should look like after the masker's cleaning (same confounds)."""
    from nilearn.signal import clean

    out = clean(
        signal[:, None],
        confounds=confounds,
        detrend=True,
        standardize="zscore_sample",
        standardize_confounds=True,
        t_r=TR,
        filter=False,
    )
    return out[:, 0]


def write_table(path: Path, values: np.ndarray, names: Sequence[str], **extra: float) -> Path:
    """A region table (one column per ROI, one row per volume) with optional constant columns."""
    frame = pd.DataFrame(values, columns=list(names))
    for key, value in extra.items():
        frame[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, sep="," if path.suffix == ".csv" else "\t", index=False)
    return path


def write_bids(root: Path, *, subjects: Sequence[str] = ("01", "02"), n_volumes: int = 30):
    """A BIDS EEG tree (mne-bids from pybv files) plus fake fMRIPrep outputs for each subject."""
    import mne_bids

    atlas, csv, labels, affine = small_atlas(root.parent / "atlas")
    staging = root.parent / "staging"
    signals = {}
    for k, sub in enumerate(subjects):
        data = synth_eeg(seconds=TR * n_volumes + 8, seed=k)
        vhdr = write_brainvision(staging, f"s{sub}", data, markers=volume_onsets(n_volumes))
        raw = mne.io.read_raw_brainvision(vhdr)
        bids_path = mne_bids.BIDSPath(
            subject=sub, task="rest", run="1", datatype="eeg", root=root, suffix="eeg"
        )
        mne_bids.write_raw_bids(raw, bids_path, overwrite=True, verbose=False)
        func = root / "derivatives" / "fmriprep" / f"sub-{sub}" / "func"
        base = f"sub-{sub}_task-rest_run-1"
        bold, signal = planted_bold(labels, n_volumes, seed=10 + k)
        write_nifti(
            func / f"{base}_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz", bold, affine
        )
        (func / f"{base}_space-MNI152NLin2009cAsym_desc-preproc_bold.json").write_text(
            json.dumps({"RepetitionTime": TR})
        )
        conf = pd.DataFrame(
            motion_params(n_volumes, seed=k),
            columns=["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"],
        )
        conf["global_signal"] = bold.reshape(-1, n_volumes).mean(axis=0)
        conf["framewise_displacement"] = np.r_[np.nan, np.abs(np.diff(conf["trans_x"]))]
        conf.to_csv(
            func / f"{base}_desc-confounds_timeseries.tsv", sep="\t", index=False, na_rep="n/a"
        )
        signals[f"sub-{sub}"] = cleaned(signal, conf[list(conf.columns[:6])].to_numpy())
    return SimpleNamespace(root=root, atlas=atlas, labels_csv=csv, signals=signals)


@pytest.fixture
def make() -> SimpleNamespace:
    """The writers above, for tests to build inputs."""
    return SimpleNamespace(
        CHANNELS=CHANNELS,
        ROI_NAMES=ROI_NAMES,
        eeg=synth_eeg,
        onsets=volume_onsets,
        brainvision=write_brainvision,
        eeglab=write_eeglab,
        nifti=write_nifti,
        atlas=small_atlas,
        planted=planted_bold,
        motion=motion_params,
        cleaned=cleaned,
        table=write_table,
        bids=write_bids,
    )

"""Recordings written as files for the tests that read them (predict, the live twin): a
synthetic EEG with known structure, BrainVision and EDF writers, and a recording ingested with
preprocessing (notch, band-pass, resampling, average reference) with a model trained on it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from eeg2bold.storage import RunKey
from eeg2bold.training.config import build_config
from eeg2bold.training.run import train_protocol


def write_brainvision(
    folder: Path, stem: str, volts: np.ndarray, *, names: Sequence[str], sfreq: float
) -> Path:
    """BrainVision via pybv (data in volts, stored as float32 microvolts)."""
    import pybv

    folder.mkdir(parents=True, exist_ok=True)
    pybv.write_brainvision(
        data=volts,
        sfreq=sfreq,
        ch_names=list(names),
        fname_base=stem,
        folder_out=str(folder),
        unit="µV",
        resolution=1e-3,
        overwrite=True,
    )
    return folder / f"{stem}.vhdr"


def write_edf(path: Path, volts: np.ndarray, *, names: Sequence[str], sfreq: float) -> Path:
    """EDF via MNE's exporter (edfio): 16-bit samples over the data's own range."""
    import mne

    info = mne.create_info(list(names), sfreq, "eeg")
    raw = mne.io.RawArray(volts, info, verbose="error")
    mne.export.export_raw(path, raw, fmt="edf", overwrite=True, verbose="error")
    return path


CHANNELS = ("Fp1", "Fp2", "F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2", "Fz", "Cz")


def synth_volts(seconds: float, sfreq: float, *, seed: int = 0) -> np.ndarray:
    """Volts [12, n]: alpha with a slowly drifting amplitude, 1/f-ish noise, mains, offset."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sfreq))
    t = np.arange(n) / sfreq
    white = rng.normal(size=(len(CHANNELS), n))
    data = 5e-6 * (np.cumsum(white, axis=1) * 0.05 + white)
    envelope = 1 + 0.8 * np.sin(2 * np.pi * t / 37.0)
    data[8:10] += 20e-6 * envelope * np.sin(2 * np.pi * 10 * t)
    data += 10e-6 * np.sin(2 * np.pi * 50 * t) + 30e-6
    return data


def make_ingested(root: Path) -> SimpleNamespace:
    """A BrainVision recording at 250 Hz ingested with notch, band-pass 1-40 Hz, resampling
    to 100 Hz and average reference; a ridge model trained on the stored (preprocessed) run."""
    from eeg2bold.ingest import FileRun, FilesLayout, IngestConfig, ingest
    from eeg2bold.storage import open_dataset

    sfreq, tr, n_vol = 250.0, 2.0, 140
    volts = synth_volts(tr * n_vol + 6, sfreq)
    vhdr = write_brainvision(root / "raw", "rec", volts, names=CHANNELS, sfreq=sfreq)
    t = 2.0 + tr * np.arange(n_vol)
    rng = np.random.default_rng(1)
    table = pd.DataFrame(
        {
            "Alpha": np.sin(2 * np.pi * t / 37.0) + 0.3 * rng.normal(size=n_vol),
            "Beta": rng.normal(size=n_vol),
        }
    )
    bold = root / "raw" / "rois.tsv"
    table.to_csv(bold, sep="\t", index=False)
    config = IngestConfig.model_validate(
        {
            "eeg": {"sfreq": 100.0, "l_freq": 1.0, "h_freq": 40.0, "line_freq": 50.0},
            "timing": {"source": "start", "start_s": 2.0},
            "bold": {"tr": tr},
        }
    )
    layout = FilesLayout([FileRun(eeg=vhdr, bold=bold, start_s=2.0)])
    report = ingest(layout, root / "ing.zarr", config=config, progress=False, echo=lambda m: None)
    assert not report.failed, report.lines()
    dataset = open_dataset(root / "ing.zarr")
    experiment = build_config(model="ridge", protocol="within", sets={"window_s": "12"})
    trained = train_protocol(dataset, experiment, out_dir=root / "model")
    return SimpleNamespace(
        root=root,
        dataset=dataset,
        vhdr=vhdr,
        volts=volts,
        sfreq=sfreq,
        model=Path(trained.folds[0].model_file),
        run=dataset.read_run(RunKey("sub-01", "run-1")),
    )

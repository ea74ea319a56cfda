"""Does the embedded default answer the digital-twin question honestly?

(a) The generalisation gap against data amount: simulated stores of 8 subjects at the
simulator defaults (32 channels, 100 Hz, 8 ROIs, seed 0) with 4, 6, 10 and 20 minutes per
subject; ridge and beira trained with ``train_protocol`` under ``within`` and ``loso`` (beira
with one fixed small budget, BEIRA_SETS). Reported: test r (Fisher-z mean over folds and ROIs),
within / LOSO, and the oracle r (corr(bold_clean, bold), the best any model can reach). The
calibration target (issue 10): within beats LOSO at 20 min by about the published margin
(NeuroBOLT, 20-min scans: 0.531 vs 0.473, ratio 1.12), while with a few minutes per subject
LOSO may win (within is data-starved).

(b) Simulated vs real statistics, side by side: BOLD autocorrelation at lags 1–5 TR and the
median inter-ROI correlation (real: the VU resting-state DiFuMo-64 tables in
../shared/data/real/vu_rest_bold, TR 2.1 s; simulated: a 20-min run at TR 2.1 s), the EEG's
aperiodic slope and alpha peak (frequency, height above the 1/f line) of the mean posterior
spectrum (real: the eyes-closed EDF recordings in ../shared/data/real/eeg).

Writes JSON (default benchmarks/results/generalization.json) and prints both tables.

    python benchmarks/bench_generalization.py [--out FILE] [--minutes 4,6,10,20]
        [--models ridge,beira] [--part all|gap|stats]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eeg2bold.simulate import SimulationConfig
from eeg2bold.simulate.simulator import simulate_run
from eeg2bold.simulate.statistics import (
    bold_autocorrelation,
    eeg_spectrum,
    median_inter_roi_correlation,
)
from eeg2bold.simulate.write import simulate_to_store
from eeg2bold.storage import open_dataset
from eeg2bold.training.config import build_config
from eeg2bold.training.metrics import fisher_mean
from eeg2bold.training.run import train_protocol

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
STORE = {"subjects": 8, "channels": 32, "sfreq": 100.0, "rois": 8, "seed": 0}
SETS = {
    "ridge": {"window_s": "20"},
    "beira": {
        "window_s": "20",
        "epochs": "8",
        "steps_per_epoch": "15",
        "lr": "3e-3",
        "patience": "0",
        "device": "cpu",
    },
}
PUBLISHED = {"source": "NeuroBOLT (NeurIPS 2024), 20-min resting scans", "within": 0.531}
PUBLISHED["loso"] = 0.473


def gap_table(minutes: list[float], models: list[str], folder: Path) -> list[dict[str, Any]]:
    rows = []
    for m in minutes:
        path = folder / f"sim-{m:g}min.zarr"
        simulate_to_store(path, SimulationConfig(minutes=m, **STORE), progress=False)
        dataset = open_dataset(path)
        oracle = float(
            fisher_mean(
                np.array([np.mean(dataset.read_truth(k).attrs["oracle_r"]) for k in dataset.runs()])
            )
        )
        for model in models:
            row: dict[str, Any] = {"minutes": m, "model": model, "oracle_r": oracle}
            for protocol in ("within", "loso"):
                t0 = time.perf_counter()
                config = build_config(model=model, protocol=protocol, sets=SETS[model])
                summary = train_protocol(dataset, config).summary()
                row[protocol] = summary["test_r_mean"]
                row[f"{protocol}_seconds"] = time.perf_counter() - t0
            row["within_over_loso"] = row["within"] / row["loso"]
            rows.append(row)
            print(
                f"{m:5g} min  {model:<6} within {row['within']:.3f}  LOSO {row['loso']:.3f}  "
                f"ratio {row['within_over_loso']:.2f}  oracle {oracle:.2f}",
                flush=True,
            )
    return rows


def simulated_statistics() -> dict[str, Any]:
    config = SimulationConfig(subjects=4, minutes=20.0, tr=2.1, sfreq=250.0, rois=8, seed=0)
    acs, inter, spectra = [], [], []
    for k in range(config.subjects):
        run = simulate_run(config=config, subject_index=k, run_index=0)
        acs.append(bold_autocorrelation(run.bold))
        inter.append(median_inter_roi_correlation(run.bold))
        spectra.append(
            eeg_spectrum(run.eeg[:, : int(50 * config.sfreq)], config.sfreq, channels=run.channels)
        )
    return _summary(acs, inter, spectra)


def real_statistics() -> dict[str, Any] | None:
    bold_dir, eeg_dir = REAL / "vu_rest_bold", REAL / "eeg"
    if not bold_dir.is_dir() or not eeg_dir.is_dir():
        return None
    import mne
    import pandas as pd

    acs, inter = [], []
    for tsv in sorted(bold_dir.glob("*_timeseries.tsv")):
        table = pd.read_csv(tsv, sep="\t")
        regions = table[[c for c in table.columns if not c.startswith("global signal")]]
        bold = regions.to_numpy(dtype=np.float64).T
        acs.append(bold_autocorrelation(bold))
        inter.append(median_inter_roi_correlation(bold))
    spectra = []
    for edf in sorted(eeg_dir.glob("eyes-closed-*.edf")):
        raw = mne.io.read_raw_edf(edf, preload=True, verbose="error")
        raw.pick("eeg")
        spectra.append(eeg_spectrum(raw.get_data() * 1e6, raw.info["sfreq"], channels=raw.ch_names))
    return _summary(acs, inter, spectra)


def _summary(acs: list[np.ndarray], inter: list[float], spectra: list[dict]) -> dict[str, Any]:
    return {
        "n": len(acs),
        "bold_autocorrelation_lag1_5": np.median(np.array(acs), axis=0).tolist(),
        "median_inter_roi_r": float(np.median(inter)),
        **{k: float(np.median([s[k] for s in spectra])) for k in spectra[0]},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/generalization.json")
    parser.add_argument("--minutes", default="4,6,10,20")
    parser.add_argument("--models", default="ridge,beira")
    parser.add_argument("--part", choices=("all", "gap", "stats"), default="all")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    out: dict[str, Any] = {
        "benchmark": "generalization",
        "store": STORE,
        "sets": SETS,
        "published": PUBLISHED,
        "load_average": {"start": os.getloadavg()},
        "platform": {"python": platform.python_version(), "cpus": os.cpu_count()},
    }
    if args.part in ("all", "stats"):
        out["statistics"] = {"simulated": simulated_statistics(), "real": real_statistics()}
        sim, real = out["statistics"]["simulated"], out["statistics"]["real"]
        print(f"{'statistic':<34}{'simulated':>12}{'real':>12}")
        for key in ("median_inter_roi_r", "aperiodic_slope", "alpha_peak_hz", "alpha_peak_db"):
            shown = f"{real[key]:12.2f}" if real else f"{'(absent)':>12}"
            print(f"{key:<34}{sim[key]:12.2f}{shown}")
        for lag in range(5):
            shown = f"{real['bold_autocorrelation_lag1_5'][lag]:12.2f}" if real else ""
            print(
                f"{'BOLD autocorrelation, lag ' + str(lag + 1):<34}"
                f"{sim['bold_autocorrelation_lag1_5'][lag]:12.2f}{shown}"
            )
    if args.part in ("all", "gap"):
        minutes = [float(m) for m in args.minutes.split(",")]
        with tempfile.TemporaryDirectory() as folder:
            out["gap"] = gap_table(minutes, args.models.split(","), Path(folder))
    out["seconds"] = time.perf_counter() - started
    out["load_average"]["end"] = os.getloadavg()
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f"({out['seconds']:.0f} s; {path})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Cross-session generalisation and subject alignment, measured on simulated data.

(a) Sessions: 6 subjects × 3 runs × 6 min (16 channels, 100 Hz, 8 ROIs) at three levels of
session effects: none; the montage (per-run electrode gains, SD 0.3 in log, and the cap
shifted by about 8°); the montage and the EEG-BOLD relation itself (each run's coupling
deviating by 0.7 of the subject's). Each model under ``within_run`` (train, val and test cut
from inside every run: the same-session split) and ``leave_one_run_out`` (test on a whole run
never seen). Reported: test r (Fisher-z mean over folds and ROIs) and within-run − across-run.
The two protocols also differ in test-segment length (20 % blocks of each run vs whole runs;
r over short segments loses the slow variance), so the cost of crossing a session is the
change of that gap from the first level, not the gap itself.

(b) Alignment: leave-one-subject-out test r with ``data.align`` none vs euclidean, per model,
on 6 subjects × 8 min at the simulator defaults and on a store whose subjects differ strongly
in their scalp mixing (electrode gains SD 0.5, the cap rotated by about 15°, twice the default
lead-field variability).

Writes JSON (default benchmarks/results/cross_session.json) and prints both tables.

    python benchmarks/bench_cross_session.py [--out FILE] [--models ridge,beira,twin]
        [--part all|sessions|alignment]
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

import torch

from eeg2bold.simulate import SimulationConfig
from eeg2bold.simulate.write import simulate_to_store
from eeg2bold.training.config import build_config
from eeg2bold.training.run import train_protocol

BASE = {"channels": 16, "sfreq": 100.0, "rois": 8, "seed": 0}
DEEP = {"epochs": "6", "steps_per_epoch": "15", "lr": "3e-3", "patience": "0", "device": "cpu"}
SETS = {"ridge": {"window_s": "20"}, "beira": {"window_s": "20", **DEEP}}
SETS["twin"] = {"window_s": "20", **DEEP}
MONTAGE = {"session_gain_sd": 0.3, "session_shift_deg": 8.0}
LEVELS = (
    ("none", {}),
    ("montage", MONTAGE),
    ("montage + coupling", {**MONTAGE, "session_coupling_jitter": 0.7}),
)
STRONG_MIXING = {"subject_gain_sd": 0.5, "subject_shift_deg": 15.0, "subject_variability": 2.0}


def _test_r(dataset: Any, model: str, protocol: str, **extra: str) -> tuple[float, float]:
    start = time.perf_counter()
    config = build_config(model=model, protocol=protocol, sets={**SETS[model], **extra})
    summary = train_protocol(dataset, config).summary()
    return float(summary["test_r_mean"]), time.perf_counter() - start


def sessions(models: list[str], folder: Path) -> list[dict[str, Any]]:
    rows = []
    for label, effects in LEVELS:
        config = SimulationConfig(subjects=6, runs=3, minutes=6, **BASE, **effects)
        dataset = simulate_to_store(folder / f"sessions-{len(rows)}.zarr", config, progress=False)
        for model in models:
            row: dict[str, Any] = {"session_effects": label, "settings": effects, "model": model}
            for protocol in ("within_run", "leave_one_run_out"):
                row[protocol], row[f"{protocol}_s"] = _test_r(dataset, model, protocol)
            row["gap"] = row["within_run"] - row["leave_one_run_out"]
            rows.append(row)
            print(_session_line(row), file=sys.stderr, flush=True)
    return rows


def alignment(models: list[str], folder: Path) -> list[dict[str, Any]]:
    rows = []
    for label, mixing in (("default", {}), ("strong mixing", STRONG_MIXING)):
        config = SimulationConfig(subjects=6, minutes=8, **BASE, **mixing)
        dataset = simulate_to_store(folder / f"align-{len(rows)}.zarr", config, progress=False)
        for model in models:
            row: dict[str, Any] = {"store": label, "model": model}
            for align in ("none", "euclidean"):
                row[align], row[f"{align}_s"] = _test_r(dataset, model, "loso", align=align)
            row["gain"] = row["euclidean"] - row["none"]
            rows.append(row)
            print(_align_line(row), file=sys.stderr, flush=True)
    return rows


def _session_line(r: dict[str, Any]) -> str:
    return (
        f"{r['session_effects']:<24}{r['model']:<8}{r['within_run']:>12.3f}"
        f"{r['leave_one_run_out']:>18.3f}{r['gap']:>8.3f}"
    )


def _align_line(r: dict[str, Any]) -> str:
    return (
        f"{r['store']:<16}{r['model']:<8}{r['none']:>8.3f}{r['euclidean']:>11.3f}{r['gain']:>8.3f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/cross_session.json")
    parser.add_argument("--models", default="ridge,beira,twin", help="alignment part")
    parser.add_argument("--session-models", default="ridge", help="sessions part")
    parser.add_argument("--part", choices=("all", "sessions", "alignment"), default="all")
    args = parser.parse_args()
    models = args.models.split(",")
    torch.set_num_threads(max(1, (os.cpu_count() or 1)))
    out: dict[str, Any] = {
        "benchmark": "cross_session",
        "platform": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "settings": {"store": BASE, "model_sets": SETS},
    }
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if args.part in ("all", "sessions"):
            print(
                f"{'session effects':<24}{'model':<8}{'within_run':>12}{'leave_one_run_out':>18}"
                f"{'gap':>8}",
                file=sys.stderr,
            )
            out["sessions"] = sessions(args.session_models.split(","), Path(tmp))
        if args.part in ("all", "alignment"):
            print(
                f"{'store':<16}{'model':<8}{'none':>8}{'euclidean':>11}{'gain':>8}", file=sys.stderr
            )
            out["alignment"] = alignment(models, Path(tmp))
    out["seconds"] = time.perf_counter() - start
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f"written {path} ({out['seconds']:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Sweep efficiency on this machine: how much of a sweep's wall time is Ray + Optuna overhead.

Runs the same 16-trial sweep (one arm, FIFO scheduler so every trial runs to the end) twice,
with 1 and with 2 concurrent trials, on a simulated dataset, and compares:

- wall time of the sweep (``Tuner.fit``, Ray already started) vs the trials' own work: per
  epoch, the slowest fold's ``FoldTrainer.step`` (folds run in parallel), plus the slowest
  fold's final scoring with the best weights and the model/prediction files it writes (work
  ``eeg2bold train`` does too), summed; ``non_epoch_share`` also counts the final scoring as
  overhead;
- per-trial start-up: from the trial function's entry to every fold actor ready
  (``setup_seconds``), and the wall time per trial not spent training;
- throughput (trials per minute) with 1 vs 2 concurrent trials.

Targets (issue 5): overhead ≤ 15 % of wall time; per-trial start-up ≤ 3 s.

    python benchmarks/bench_sweep.py [--out benchmarks/results/sweep.json] [--trials 16]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

TARGET_OVERHEAD = 0.15
TARGET_STARTUP_S = 3.0


def _run(config_dict: dict, label: str) -> dict:
    from eeg2bold.launch.config import parse_study_config
    from eeg2bold.launch.sweep import run_sweep
    from eeg2bold.study.queries import load_sweep

    config = parse_study_config(config_dict, where=label)
    t0, began = time.perf_counter(), time.time()  # time.time: the trials' clocks are too
    outcome = run_sweep(config, echo=lambda line: None)
    wall = time.perf_counter() - t0
    sweep = load_sweep(outcome.plan.results)
    trial_dirs = sorted(Path(sweep.root, "ray").glob("*/trial_*"))
    trial_train, trial_finish, setups, spans = [], [], [], []
    for folder in trial_dirs:
        lines = (folder / "result.json").read_text().splitlines()
        results = [json.loads(line) for line in lines if line.strip()]
        epochs = [r for r in results if "fold_seconds" in r]
        trial_train.append(sum(r["fold_seconds"] for r in epochs))
        trial_finish.append(sum(r.get("finish_seconds", 0.0) for r in results))
        if epochs:
            setups.append(epochs[0]["setup_seconds"])
        if results and "started_at" in results[-1]:  # recorded since issue 23
            start = float(results[-1]["started_at"])
            work = trial_train[-1] + trial_finish[-1]
            spans.append((start, start + results[-1]["time_total_s"], work))
    n = len(trial_dirs)
    concurrency = config.max_concurrent_trials
    train_total = float(sum(trial_train))
    finish_total = float(sum(trial_finish))
    work_total = train_total + finish_total
    # with k trials at once, the k slots together offer k × wall seconds of trial time
    overhead = 1.0 - work_total / (concurrency * wall)
    return {
        "max_concurrent_trials": concurrency,
        "trials": n,
        "wall_s": wall,
        "trials_training_s": train_total,
        "trials_final_scoring_s": finish_total,
        # Ray + Optuna: wall time not spent in the trials' own work (epochs, then the final
        # scoring with the best weights and writing the model and prediction files, which
        # `eeg2bold train` does as well); start-up, reports, checkpoints, scheduling count here
        "overhead_share": overhead,
        # stricter: the final scoring counted as overhead too
        "non_epoch_share": 1.0 - train_total / (concurrency * wall),
        "trials_per_min": 60.0 * n / wall,
        "setup_s_median": float(np.median(setups)) if setups else None,
        "setup_s_max": float(np.max(setups)) if setups else None,
        "non_training_s_per_trial": (concurrency * wall - train_total) / max(n, 1),
        **_after_the_first(spans, concurrency, began=began, ended=began + wall),
    }


def _after_the_first(
    spans: list[tuple[float, float, float]], concurrency: int, *, began: float, ended: float
) -> dict:
    """From the trials' own clocks (start, end, work): the time a trial costs beyond its work
    once the sweep runs (the gap before it and its own set-up and reports), for every trial
    after the first, whose start includes the fold actors' (one at a time only); and the
    sweep's fixed costs (Ray's pool, the Tuner, the state files) apart from the trials':
    where a sweep's overhead lies, in four parts that add up to it (one trial at a time)."""
    if concurrency != 1 or len(spans) < 2:
        return {}
    spans = sorted(spans)
    gaps = [b[0] - a[1] for a, b in itertools.pairwise(spans)]
    inside = [end - start - work for start, end, work in spans]
    span = spans[-1][1] - spans[0][0]
    return {
        "trials_span_s": span,
        "startup_s_after_first": (sum(gaps) + sum(inside[1:])) / (len(spans) - 1),
        "first_trial_extra_s": inside[0],
        "overhead_share_after_first": (sum(gaps) + sum(inside[1:])) / span,
        "overhead_parts_s": {
            "before_the_first_trial": spans[0][0] - began,  # Ray's pool, Tune's start
            "between_trials": sum(gaps),  # Tune's bookkeeping, the searcher's suggestion
            "inside_trials": sum(inside),  # set-up, reports, checkpoints beyond the work
            "after_the_last_trial": ended - spans[-1][1],  # Tune's end, the pool stopped
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/sweep.json")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--model", default="beira")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()

    from eeg2bold.launch.tune.runtime import init_ray, shutdown_ray
    from eeg2bold.simulate import SimulationConfig
    from eeg2bold.simulate.write import simulate_to_store

    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "bench.zarr"
        simulate_to_store(
            data,
            SimulationConfig(subjects=2, minutes=10, channels=16, sfreq=128, seed=3),
            progress=False,
        )
        init_ray(num_cpus=2)  # started once: ray.init itself is not sweep overhead
        runs = []
        try:
            for concurrency in (1, 2):
                config = {
                    "name": f"bench{concurrency}",
                    "dataset": str(data),
                    "protocols": ["within"],
                    "models": [args.model],
                    "search": {"data.window_s": 10.0, "train.steps_per_epoch": 40},
                    "budget": {"num_samples": args.trials},
                    "scheduler": {"type": "fifo", "max_epochs": args.epochs},
                    # 2 folds × 0.45 CPU + 0.05: two trials fit on 2 CPUs at once
                    "resources": {"cpu": 0.45, "trial_cpu": 0.05},
                    "max_concurrent_trials": concurrency,
                    "storage": {"results": str(Path(tmp) / f"sweep{concurrency}")},
                }
                runs.append(_run(config, f"bench{concurrency}"))
                r = runs[-1]
                print(
                    f"{concurrency} concurrent: {r['trials']} trials in {r['wall_s']:.0f} s "
                    f"({r['trials_per_min']:.2f}/min), overhead {100 * r['overhead_share']:.0f}%, "
                    f"start-up median {r['setup_s_median']:.1f} s, "
                    f"non-epoch share {100 * r['non_epoch_share']:.0f}%"
                )
        finally:
            shutdown_ray()
    one, two = runs
    out = {
        "benchmark": "sweep_efficiency",
        "model": args.model,
        "epochs": args.epochs,
        "runs": runs,
        "speedup_2_vs_1": two["trials_per_min"] / one["trials_per_min"],
        "targets": {"overhead_share": TARGET_OVERHEAD, "startup_s": TARGET_STARTUP_S},
        "passed": {
            "overhead": bool(one["overhead_share"] <= TARGET_OVERHEAD),
            "startup": bool((one["setup_s_median"] or 1e9) <= TARGET_STARTUP_S),
        },
        "load_average": {"start": load_start, "end": os.getloadavg()},
        "platform": {"python": platform.python_version(), "cpus": os.cpu_count()},
    }
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(
        f"overhead {100 * one['overhead_share']:.0f}% (target ≤ {100 * TARGET_OVERHEAD:.0f}%), "
        f"start-up {one['setup_s_median']:.1f} s (target ≤ {TARGET_STARTUP_S} s), "
        f"2 vs 1 concurrent: {out['speedup_2_vs_1']:.2f}× ({path})"
    )


if __name__ == "__main__":
    main()

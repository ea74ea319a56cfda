"""Time the simulator: seconds to generate one subject-hour (32 channels, 250 Hz) on one core.

Usage: python benchmarks/bench_simulator.py [--out benchmarks/results/simulator.json] [--repeats 3]

Thread pools are limited to one thread before numpy is imported (and the process is pinned to
one CPU where the OS allows it), so the number is a single-core figure. Not a timed test.
"""

from __future__ import annotations

import os

for _var in (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import scipy  # noqa: E402

import eeg2bold  # noqa: E402
from eeg2bold.simulate import SimulationConfig, simulate_run  # noqa: E402

TARGET_S = 10.0


def _pin_to_one_cpu() -> int | None:
    """Pin to the first allowed CPU; returns it, or None where the OS has no affinity API."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/simulator.json"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    cpu = _pin_to_one_cpu()
    config = SimulationConfig(subjects=1, minutes=60.0, channels=32, sfreq=250.0)
    simulate_run(  # warm-up: imports, caches, FFT plans
        config=config.model_copy(update={"minutes": 1.0}), subject_index=0, run_index=0
    )
    runs = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        run = simulate_run(config=config, subject_index=0, run_index=0)
        runs.append(time.perf_counter() - start)
        del run
    median = statistics.median(runs)
    result = {
        "benchmark": "simulator",
        "what": "one subject-hour: 1 subject, 60 min, 32 channels, 250 Hz, default physics",
        "seconds_per_subject_hour": median,
        "runs_s": runs,
        "repeats": args.repeats,
        "target_s": TARGET_S,
        "passed": median < TARGET_S,
        "config": config.model_dump(mode="json"),
        "platform": {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "processor": platform.processor(),
            "system": platform.platform(),
            "cpu_count": os.cpu_count(),
            "pinned_cpu": cpu,
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "eeg2bold": eeg2bold.__version__,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    verdict = "PASS" if result["passed"] else "FAIL"
    print(
        f"simulator: {median:.2f} s per subject-hour (median of {args.repeats}: "
        f"{', '.join(f'{r:.2f}' for r in runs)}; target < {TARGET_S:g} s) {verdict} -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

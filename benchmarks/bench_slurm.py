"""What Slurm costs a sweep: seconds from `sbatch` to the first trial result, and the wall time
of the same sweep under Slurm vs run locally, in one run, side by side.

Starts the loopback Slurm cluster of the live tests (``tests/launch/loopback_slurm.py``:
munge, slurmdbd on the local MariaDB, slurmctld, one slurmd; root and Debian's Slurm needed),
then for each repeat:

- **local**: ``eeg2bold sweep STUDY`` in a fresh process (it starts its own Ray instance);
- **slurm**: ``eeg2bold launch slurm STUDY --submit``; the job starts Ray inside its
  allocation and runs the same sweep (another results folder and Optuna journal).

Recorded: submit → job running (Slurm's scheduling), submit → first "epoch 1" line in the job
log (first trial result), submit → job COMPLETED in accounting, the local process's wall time
to its first epoch line and to its end, and the ratio slurm/local of the whole. Everything the
Slurm path adds (scheduling, the batch script, `ray start` of head, the node wait, teardown)
is in the difference.

    python benchmarks/bench_slurm.py [--out benchmarks/results/slurm.json] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "launch"))

EPOCH = re.compile(r"trial \S+ epoch 1:")


def _study(folder: Path, name: str, store: Path, trials: int) -> Path:
    study = {
        "name": name,
        "dataset": str(store),
        "protocols": ["within"],
        "models": ["ridge"],
        "search": {"data.window_s": 10.0, "train.steps_per_epoch": 10},
        "budget": {"num_samples": trials},
        "scheduler": {"type": "fifo", "max_epochs": 1},
        "resources": {"cpu": 0.45, "trial_cpu": 0.05},
        "max_concurrent_trials": 1,
        "storage": {
            "results": str(folder / f"sweep-{name}"),
            "optuna": f"journal://{folder}/{name}.log",
        },
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def _local(study: Path) -> dict[str, float]:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "eeg2bold.cli", "sweep", str(study), "--num-cpus", "2"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    first = None
    assert proc.stderr is not None
    for line in proc.stderr:
        if first is None and EPOCH.search(line):
            first = time.perf_counter() - start
    code = proc.wait()
    if code != 0:
        raise SystemExit(f"the local sweep {study} failed (exit {code})")
    return {"first_result_s": first or float("nan"), "total_s": time.perf_counter() - start}


def _slurm(cluster, study: Path) -> dict[str, float]:
    from loopback_slurm import free_port

    args = [sys.executable, "-m", "eeg2bold.cli", "launch", "slurm", str(study), "--submit"]
    args += ["--nodes", "1", "--cpus-per-node", "2", "--port", str(free_port())]
    args += ["--shared-nodes", "--no-dashboard", "--time", "15", "--venv", sys.prefix]
    start = time.perf_counter()
    done = subprocess.run(
        args, env=cluster.env, cwd=study.parent, capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        raise SystemExit(f"launch slurm --submit failed: {done.stderr.strip()}")
    job = done.stdout.strip()
    log = study.parent / f"eeg2bold-{study.stem}-{job}.log"
    running = first = None
    while True:
        now = time.perf_counter() - start
        state = cluster.state(job)
        if running is None and state in ("RUNNING", "COMPLETED"):
            running = now
        if first is None and log.exists() and EPOCH.search(log.read_text()):
            first = now
        if state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"):
            break
        if now > 900:
            raise SystemExit(f"job {job} still {state!r} after 900 s")
        time.sleep(0.2)
    if state != "COMPLETED":
        raise SystemExit(f"job {job} ended {state}: {log.read_text()[-2000:]}")
    return {
        "submit_to_running_s": running or float("nan"),
        "first_result_s": first or float("nan"),
        "total_s": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "slurm.json"))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()

    from loopback_slurm import loopback_slurm, missing

    from eeg2bold.simulate import SimulationConfig
    from eeg2bold.simulate.write import simulate_to_store

    reason = missing()
    if reason:
        raise SystemExit(f"bench_slurm: {reason}")
    # not under /tmp: `launch slurm` refuses node-local folders (one host here, but the check
    # is the one a real cluster needs)
    work = ROOT / "benchmarks" / "results"
    work.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="slurm-work-", dir=work))
    store = folder / "tiny.zarr"
    config = SimulationConfig(subjects=2, minutes=5, channels=8, sfreq=100, rois=3, seed=2)
    simulate_to_store(store, config, progress=False)
    runs = []
    with loopback_slurm() as cluster:
        for i in range(args.repeats):  # alternate, so drift on a noisy machine hits both
            local = _local(_study(folder, f"local{i}", store, args.trials))
            slurm = _slurm(cluster, _study(folder, f"slurm{i}", store, args.trials))
            runs.append({"local": local, "slurm": slurm})
            print(f"repeat {i}: local {local}, slurm {slurm}", file=sys.stderr)

    def median(path: tuple[str, str]) -> float:
        return statistics.median(r[path[0]][path[1]] for r in runs)

    result = {
        "benchmark": "slurm",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "sweep": f"{args.trials} ridge trials × 2 folds, 1 epoch, 1 trial at a time",
        "repeats": runs,
        "median": {
            "slurm_submit_to_running_s": median(("slurm", "submit_to_running_s")),
            "slurm_submit_to_first_result_s": median(("slurm", "first_result_s")),
            "local_start_to_first_result_s": median(("local", "first_result_s")),
            "slurm_total_s": median(("slurm", "total_s")),
            "local_total_s": median(("local", "total_s")),
        },
    }
    m = result["median"]
    m["slurm_over_local"] = m["slurm_total_s"] / m["local_total_s"]
    m["slurm_extra_s"] = m["slurm_total_s"] - m["local_total_s"]
    shutil.rmtree(folder, ignore_errors=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result["median"], indent=2))


if __name__ == "__main__":
    main()

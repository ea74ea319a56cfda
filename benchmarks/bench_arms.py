"""Many arms, one sweep: the new code (this checkout) beside an older revision (a git worktree),
alternated in one run on the same data, so the machine's noise hits both alike.

Three measurements (issue 23):

- ``demo``: `make demo`'s sweep (examples/demo/study.yaml on the demo's simulated store), wall
  time of the `eeg2bold sweep` process, Ray's start included. Target: new ≤ 0.5 × old.
- ``arms``: a multi-arm sweep (3 models × 2 protocols × 4 trials, one trial at a time, Ray
  already started): the share of wall time outside the trials' own epochs and final scoring
  (target ≤ 5 %), and the per-trial start-up after the first (target ≤ 0.5 s): the gap
  before a trial plus its own time beyond its work, from the trials' clocks (new code only;
  the old one did not record when a trial started).
- ``ridge``: five ridge arms with every hyperparameter fixed (within, LOSO, and the calibration
  curve at 0, 1 and 2 minutes; 4 subjects × 8 minutes): the sweep vs the same five
  configurations through `eeg2bold train` (three commands), each a fresh process, Ray's start
  included. Target: sweep ≤ 1.5 × train.

    python benchmarks/bench_arms.py [--old REV] [--rounds 1] [--only demo arms ridge]
        [--out benchmarks/results/arms.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
OLD_REV = "0e691cb"  # the last revision that ran the arms one after another, a Tuner each
TARGETS = {"demo_ratio": 0.5, "overhead_share": 0.05, "startup_s": 0.5, "ridge_ratio": 1.5}
EEG2BOLD = str(Path(sys.executable).with_name("eeg2bold"))


def _env(tree: Path) -> dict[str, str]:
    """Run `tree`'s eeg2bold: first on the path of the driver and of Ray's workers."""
    return os.environ | {"PYTHONPATH": f"{tree}{os.pathsep}{ROOT / 'benchmarks'}"}


def _cli(tree: Path, args: list[str], cwd: Path) -> float:
    """Wall seconds of one eeg2bold command run with `tree`'s code."""
    code = "import sys; from eeg2bold.cli import main; sys.exit(main())"
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=_env(tree),
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"{shlex.join(args)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - t0


def _simulate(path: Path, subjects: int, minutes: int, channels: int) -> None:
    args = ["simulate", str(path), "--subjects", str(subjects), "--minutes", str(minutes)]
    _cli(ROOT, [*args, "--channels", str(channels), "--sfreq", "100", "--seed", "0"], ROOT)


def _study(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


# -- demo ---------------------------------------------------------------------------------
def bench_demo(trees: dict[str, Path], tmp: Path, rounds: int) -> dict:
    from bench_demo import demo_commands

    store = tmp / "demo.zarr"
    simulate = demo_commands()[0][1:]  # the Makefile's demo store, written here
    assert simulate[0] == "simulate", simulate
    _cli(ROOT, ["simulate", str(store), *simulate[2:]], ROOT)
    demo = yaml.safe_load((ROOT / "examples/demo/study.yaml").read_text())
    walls: dict[str, list[float]] = {label: [] for label in trees}
    for r in range(rounds):
        for label, tree in trees.items():
            config = demo | {
                "dataset": str(store),
                "storage": {"results": str(tmp / f"demo-{label}-{r}")},
            }
            study = _study(tmp / f"demo-{label}-{r}.yaml", config)
            walls[label].append(_cli(tree, ["sweep", str(study)], tmp))
            print(f"demo sweep, {label}: {walls[label][-1]:.1f} s", flush=True)
    best = {label: min(v) for label, v in walls.items()}
    return {"wall_s": walls, "ratio_new_old": best["new"] / best["old"]}


# -- many arms: what a sweep costs beyond its trials' work -----------------------------------
_ARMS_CHILD = """
import json, sys
from eeg2bold.launch.tune.runtime import init_ray, shutdown_ray
from bench_sweep import _run
init_ray(num_cpus=2)  # started once: ray.init itself is not sweep overhead
try:
    print("RESULT " + json.dumps(_run(json.loads(sys.argv[1]), "arms")))
finally:
    shutdown_ray()
"""


def bench_many_arms(trees: dict[str, Path], tmp: Path, rounds: int) -> dict:
    store = tmp / "arms.zarr"
    _simulate(store, 2, 10, 16)
    runs: dict[str, list[dict]] = {label: [] for label in trees}
    for r in range(rounds):
        for label, tree in trees.items():
            config = {
                "name": f"arms-{label}",
                "dataset": str(store),
                "protocols": ["within", "loso"],
                "models": ["ridge", "beira", "linker"],
                "search": {"data.window_s": 10.0, "train.steps_per_epoch": 20},
                "budget": {"num_samples": 4},
                "scheduler": {"type": "fifo", "max_epochs": 3},
                "resources": {"cpu": 0.45, "trial_cpu": 0.05},
                "max_concurrent_trials": 1,  # one at a time: wall minus work is overhead
                "storage": {"results": str(tmp / f"arms-{label}-{r}")},
            }
            done = subprocess.run(
                [sys.executable, "-c", _ARMS_CHILD, json.dumps(config)],
                env=_env(tree),
                cwd=tmp,
                capture_output=True,
                text=True,
            )
            lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
            if done.returncode != 0 or not lines:
                raise SystemExit(f"many-arms sweep ({label}) failed:\n{done.stderr[-3000:]}")
            result = json.loads(lines[-1].removeprefix("RESULT "))
            # per trial after the first: its own set-up, plus its share of the time no trial
            # was working (Tune's scheduling, the next trial's placement group and process)
            idle = result["wall_s"] - result["trials_training_s"] - result["trials_final_scoring_s"]
            result["startup_s_per_trial"] = idle / max(result["trials"], 1)
            runs[label].append(result)
            parts = result.get("overhead_parts_s")
            if parts:
                print(
                    f"many arms, {label}: overhead "
                    + ", ".join(f"{k.replace('_', ' ')} {v:.1f} s" for k, v in parts.items()),
                    flush=True,
                )
            after = result.get("startup_s_after_first")
            print(
                f"many arms, {label}: {result['trials']} trials in {result['wall_s']:.1f} s, "
                f"overhead {100 * result['overhead_share']:.1f}%, "
                f"{result['startup_s_per_trial']:.2f} s per trial outside its work"
                + (
                    f" ({after:.2f} s after the first trial; "
                    f"{100 * result['overhead_share_after_first']:.1f}% of the trials' span)"
                    if after is not None
                    else ""
                ),
                flush=True,
            )
    best = {label: min(v, key=lambda x: x["wall_s"]) for label, v in runs.items()}
    return {"runs": runs, "best": best}


# -- five fixed ridge arms: sweep vs train ----------------------------------------------------
def _ridge_defaults() -> dict[str, object]:
    """Every parameter of ridge's search space fixed at its default (`eeg2bold spaces`)."""
    from eeg2bold.search_spaces import describe_space

    return {p.name: p.default for p in describe_space("ridge")}


def bench_ridge(trees: dict[str, Path], tmp: Path, rounds: int) -> dict:
    store = tmp / "ridge.zarr"
    _simulate(store, 4, 8, 16)
    fixed = _ridge_defaults()
    sets = [arg for key, value in fixed.items() for arg in ("--set", f"{key}={value}")]
    out: dict[str, list[float]] = {**{f"sweep_{label}": [] for label in trees}, "train": []}
    for r in range(rounds):
        t0 = time.perf_counter()
        for protocol in ("within", "loso"):
            args = ["train", str(store), "--model", "ridge", "--protocol", protocol, "-q"]
            _cli(ROOT, [*args, *sets, "--out", str(tmp / f"train-{protocol}-{r}")], tmp)
        args = ["train", str(store), "--model", "ridge", "--protocol", "loso_calibrated"]
        args += ["--calibration-minutes", "0,1,2", "-q", *sets, "--out", str(tmp / f"cal-{r}")]
        _cli(ROOT, args, tmp)
        out["train"].append(time.perf_counter() - t0)
        print(f"five ridge configurations through train: {out['train'][-1]:.1f} s", flush=True)
        for label, tree in trees.items():
            study = _study(
                tmp / f"ridge-{label}-{r}.yaml",
                {
                    "name": f"ridge-{label}",
                    "dataset": str(store),
                    "protocols": ["within", "loso", "loso_calibrated"],
                    "calibration_minutes": [0, 1, 2],
                    "models": ["ridge"],
                    "search": fixed,
                    "budget": {"num_samples": 1},
                    "scheduler": {"type": "fifo"},
                    "resources": {"cpu": 0.45, "trial_cpu": 0.05, "folds_per_actor": 2},
                    "max_concurrent_trials": 1,
                    "storage": {"results": str(tmp / f"ridge-{label}-{r}")},
                },
            )
            out[f"sweep_{label}"].append(_cli(tree, ["sweep", str(study)], tmp))
            print(f"five fixed ridge arms, sweep {label}: {out[f'sweep_{label}'][-1]:.1f} s")
    best = {k: min(v) for k, v in out.items()}
    return {
        "wall_s": out,
        "ratio_sweep_train": {label: best[f"sweep_{label}"] / best["train"] for label in trees},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", default=OLD_REV, help="the revision to compare with")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--only", nargs="*", default=["demo", "arms", "ridge"])
    parser.add_argument("--out", default="benchmarks/results/arms.json")
    args = parser.parse_args()
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        old = tmp / "old"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old), args.old],
            check=True,
            capture_output=True,
        )
        trees = {"old": old, "new": ROOT}
        out: dict[str, object] = {"benchmark": "arms", "old": args.old}
        try:
            if "demo" in args.only:
                out["demo"] = bench_demo(trees, tmp, args.rounds)
            if "arms" in args.only:
                out["many_arms"] = bench_many_arms(trees, tmp, args.rounds)
            if "ridge" in args.only:
                out["ridge"] = bench_ridge(trees, tmp, args.rounds)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)])
    passed = {}
    if "demo" in out:
        passed["demo"] = out["demo"]["ratio_new_old"] <= TARGETS["demo_ratio"]  # type: ignore[index]
    if "many_arms" in out:
        new = out["many_arms"]["best"]["new"]  # type: ignore[index]
        passed["overhead"] = new["overhead_share"] <= TARGETS["overhead_share"]
        passed["startup"] = new["startup_s_after_first"] <= TARGETS["startup_s"]
    if "ridge" in out:
        ratio = out["ridge"]["ratio_sweep_train"]["new"]  # type: ignore[index]
        passed["ridge"] = ratio <= TARGETS["ridge_ratio"]
    out |= {
        "targets": TARGETS,
        "passed": passed,
        "load_average": {"start": load_start, "end": os.getloadavg()},
        "platform": {"python": platform.python_version(), "cpus": os.cpu_count()},
    }
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(json.dumps({"passed": passed}, indent=2), f"\n({path})")


if __name__ == "__main__":
    main()

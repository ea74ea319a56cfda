"""Memory of a sweep trial's fold actors, before and after one copy of the data per node.

For stores of 8 subjects × M minutes × 32 channels at 100 Hz (float32 EEG: 20 min = 123 MB,
80 min = 492 MB), a trial of k fold actors (k = 1, 2, 4) on one node: each actor sets up one
LOSO fold of beira (10 s windows) and trains one epoch of 5 steps, exactly as in a sweep (the
real ``FoldActor`` of each version). Measured every 0.1 s: the proportional set size (PSS:
shared pages counted once, split between the processes that map them) of the whole Ray node
(the driver and every process it started) and of each fold actor; reported at their peaks,
above the node idling with k bare actors. Also windows/s of ``FoldData.batch`` (64 windows)
on the fold's data in each version.

"before" is a git revision (default: the one before this work) run from a temporary worktree;
"after" is this checkout. Both run here, alternated, in one run of this script. Targets: node
peak ≤ 1.5 × the touched data + 300 MB per actor; the shared path ≥ 0.5× the in-memory
windows/s. The streaming path (stores larger than memory: windows read from the store in
block order through a bounded chunk cache with prefetch) against the in-memory one, in this
process, for the same fold.

    python benchmarks/bench_memory.py [--out FILE] [--before REV] [--minutes 20,80]
        [--actors 1,2,4]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STORE = {"subjects": 8, "channels": 32, "sfreq": 100.0, "rois": 8, "seed": 0}
SETS = {
    "window_s": "10",
    "epochs": "1",
    "steps_per_epoch": "5",
    "batch_size": "32",
    "device": "cpu",
}


def _pss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (from /proc: no psutil needed)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


class Sampler:
    """Peak PSS of the node (this process and its descendants) and of given pids."""

    def __init__(self, pids: list[int]):
        self.pids, self.node_peak, self.peaks = pids, 0.0, dict.fromkeys(pids, 0.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            time.sleep(0.1)

    def sample(self) -> None:
        self.node_peak = max(self.node_peak, sum(_pss_mb(p) for p in _descendants(os.getpid())))
        for p in self.pids:
            self.peaks[p] = max(self.peaks[p], _pss_mb(p))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def child(store: str, k: int) -> dict[str, Any]:
    """One measurement in a fresh Ray: k fold actors, one LOSO fold each."""
    import ray

    from eeg2bold.launch import ray_tune
    from eeg2bold.training.config import build_config

    ray_tune.init_ray(num_cpus=k + 1)
    stores = ray_tune.start_run_stores() if hasattr(ray_tune, "start_run_stores") else []
    actors = [ray_tune.FoldActor.options(num_cpus=1).remote(threads=1) for _ in range(k)]
    pids = ray.get([a.__ray_call__.remote(lambda self: os.getpid()) for a in actors])
    time.sleep(1.0)
    idle = Sampler(pids)
    idle.sample()
    config = build_config(model="beira", protocol="loso", sets=SETS).model_dump_json()
    with Sampler(pids) as busy:
        calls = [
            a.call.remote("setup", [(i, {"dataset": store, "config": config, "fold": i})])
            for i, a in enumerate(actors)
        ]
        ray.get(calls)
        ray.get([a.call.remote("step", [(i, {})]) for i, a in enumerate(actors)])

    def rate(host: Any, fold: int) -> float:
        import numpy as np

        data = host.runners[fold].trainer.data
        idx = np.sort(np.random.default_rng(0).choice(data.fold.train, 64, replace=False))
        data.batch(idx)
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < 2.0:
            data.batch(idx)
            n += 64
        return n / (time.perf_counter() - start)

    windows_s = ray.get(actors[0].__ray_call__.remote(rate, 0))
    for s in stores:
        ray.kill(s)
    return {
        "node_peak_mb": busy.node_peak - idle.node_peak,
        "actor_peak_mb": [busy.peaks[p] - idle.peaks[p] for p in pids],
        "actor_idle_mb": [idle.peaks[p] for p in pids],
        "windows_per_s": windows_s,
        "shared": bool(stores),
    }


def paths(store: str, *, seconds: float = 3.0, repeats: int = 2) -> dict[str, Any]:
    """Training-order windows/s of one LOSO fold's batches (64 windows) on the in-memory and
    the streaming path (block order, prefetch of the epoch's batches, 256 MB chunk cache),
    alternated ``repeats`` times in this process."""
    import torch

    from eeg2bold.protocols import build_sample_table, get_protocol
    from eeg2bold.storage import open_dataset
    from eeg2bold.training.data import FoldData, SampleConfig
    from eeg2bold.training.streaming import block_order

    torch.set_num_threads(1)
    dataset = open_dataset(store)
    samples = build_sample_table(dataset, window_s=10.0)
    fold = get_protocol("loso").folds(samples)[0]
    cfg = SampleConfig(window_s=10.0)
    rates: dict[str, list[float]] = {"memory": [], "stream": []}
    for _ in range(repeats):
        for path in ("memory", "stream"):
            data = FoldData(dataset, samples, fold, config=cfg, path=path)
            generator = torch.Generator().manual_seed(0)
            if path == "memory":
                order = torch.as_tensor(fold.train)[
                    torch.randperm(fold.train.size, generator=generator)
                ]
            else:
                order = block_order(fold.train, batch_size=64, generator=generator)
            batches = list(order.split(64))
            data.will_read(batches)
            data.batch(batches[0])  # warm-up (the store's first read; torch's first op)
            n, start = 0, time.perf_counter()
            for idx in batches[1:]:
                data.batch(idx)
                n += int(idx.numel())
                if time.perf_counter() - start > seconds:
                    break
            rates[path].append(n / (time.perf_counter() - start))
            if data._prefetch is not None:
                data._prefetch.stop()
    memory, stream = max(rates["memory"]), max(rates["stream"])
    return {
        "memory_windows_per_s": memory,
        "stream_windows_per_s": stream,
        "ratio": stream / memory,
        "runs": rates,
    }


def _worktree(rev: str, where: Path) -> Path:
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(where), rev], check=True
    )
    return where


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/memory.json")
    parser.add_argument("--before", default="d62360c")
    parser.add_argument("--minutes", default="20,80")
    parser.add_argument("--actors", default="1,2,4")
    parser.add_argument("--part", choices=("all", "actors", "paths"), default="all")
    parser.add_argument("--child", nargs=2, metavar=("STORE", "K"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]))))
        return 0

    from eeg2bold.simulate import SimulationConfig
    from eeg2bold.simulate.write import simulate_to_store

    rows: list[dict[str, Any]] = []
    speeds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        before = _worktree(args.before, Path(tmp) / "before")
        try:
            for minutes in (float(m) for m in args.minutes.split(",")):
                path = Path(tmp) / f"store-{minutes:g}.zarr"
                simulate_to_store(path, SimulationConfig(minutes=minutes, **STORE), progress=False)
                data_mb = STORE["subjects"] * minutes * 60 * STORE["sfreq"] * 32 * 4 / 1e6
                if args.part == "actors":
                    speed = None
                else:
                    speed = paths(str(path))
                    speed["data_mb"] = data_mb
                    speeds.append(speed)
                if speed is not None:
                    print(
                        f"{data_mb:7.0f} MB  windows/s: in memory "
                        f"{speed['memory_windows_per_s']:8.0f}"
                        f", streaming {speed['stream_windows_per_s']:8.0f} "
                        f"({speed['ratio']:.2f}x; target >= 0.5x)",
                        file=sys.stderr,
                        flush=True,
                    )
                for k in (int(a) for a in args.actors.split(",")) if args.part != "paths" else ():
                    for version, code in (("before", before), ("after", ROOT)):
                        env = {**os.environ, "PYTHONPATH": str(code), "RAY_AUTH_MODE": "disabled"}
                        done = subprocess.run(
                            [sys.executable, __file__, "--child", str(path), str(k)],
                            env=env,
                            capture_output=True,
                            text=True,
                            check=True,
                        )
                        got = json.loads(done.stdout.strip().splitlines()[-1])
                        row = {"version": version, "data_mb": data_mb, "actors": k, **got}
                        row["target_mb"] = 1.5 * data_mb + 300 * k
                        rows.append(row)
                        print(
                            f"{data_mb:7.0f} MB  {k} actor(s)  {version:<6}  node peak "
                            f"{row['node_peak_mb']:7.0f} MB ({row['node_peak_mb'] / data_mb:4.1f}x"
                            f" data; target {row['target_mb']:.0f})  per actor "
                            f"{max(row['actor_peak_mb']):6.0f} MB  "
                            f"{row['windows_per_s']:8.0f} windows/s",
                            file=sys.stderr,
                            flush=True,
                        )
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)], check=False
            )
    out = {
        "benchmark": "memory",
        "before": args.before,
        "platform": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "settings": {"store": STORE, "train": SETS},
        "rows": rows,
        "paths": speeds,
    }
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f"written {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

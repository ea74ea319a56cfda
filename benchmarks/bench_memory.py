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
windows/s. ``--part paths``: the streaming path (stores larger than memory: windows read
from the store in block order through a bounded chunk cache with prefetch) against the
in-memory one, in this process, for the same fold, side by side. ``--part large``: a store the
size of NATVIEW (9.3 GB of EEG), one LOSO fold (8.9 GB touched) streaming and in memory, each
in a fresh process: peak memory, set-up time, windows/s and beira's training steps/s.

    python benchmarks/bench_memory.py [--out FILE] [--before REV] [--minutes 20,80]
        [--actors 1,2,4] [--part all|actors|paths|large] [--large DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from results_json import write_result  # same folder

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

    from eeg2bold.launch.tune.fold_actor import FoldActor
    from eeg2bold.training.config import build_config

    try:  # the runtime's own module since 2026-12-07; older revisions kept it in ray_tune
        from eeg2bold.launch.tune import runtime
    except ImportError:
        from eeg2bold.launch import ray_tune as runtime  # type: ignore[no-redef]

    runtime.init_ray(num_cpus=k + 1)
    stores = runtime.start_run_stores() if hasattr(runtime, "start_run_stores") else []
    actors = [FoldActor.options(num_cpus=1).remote(threads=1) for _ in range(k)]
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


def _batches(train: np.ndarray, path: str, generator: Any) -> list[Any]:
    """An epoch's batches of 64 in the order training uses on ``path`` (as
    ``FoldTrainer._order`` with ``shuffle: auto``): block order when streaming, else global."""
    import torch

    from eeg2bold.training.streaming import block_order

    if path == "stream":
        return list(block_order(train, batch_size=64, generator=generator).split(64))
    return list(torch.as_tensor(train)[torch.randperm(train.size, generator=generator)].split(64))


def paths(store: str, *, seconds: float = 2.0, repeats: int = 5) -> dict[str, Any]:
    """Training-order windows/s of one LOSO fold's batches (64 windows), in memory and
    streaming, alternated ``repeats`` times in this process; each measurement runs whole
    epochs (a new order each) for ``seconds``. The streaming cache is a quarter of the fold's
    EEG (at most the default 256 MB), so every epoch decodes the fold again, as it does for a
    store larger than memory. The ratio is the median of the side-by-side pairs."""
    import statistics

    import torch

    from eeg2bold.protocols import build_sample_table, get_protocol
    from eeg2bold.storage import open_dataset
    from eeg2bold.training.data import FoldData, SampleConfig
    from eeg2bold.training.streaming import DEFAULT_CACHE_MB

    torch.set_num_threads(1)
    dataset = open_dataset(store)
    samples = build_sample_table(dataset, window_s=10.0)
    fold = get_protocol("loso").folds(samples)[0]
    cfg = SampleConfig(window_s=10.0)
    memory = FoldData(dataset, samples, fold, config=cfg, path="memory")
    fold_mb = memory.describe()["eeg_mb"]
    cache_mb = min(DEFAULT_CACHE_MB, fold_mb / 4)
    stream = FoldData(dataset, samples, fold, config=cfg, path="stream", cache_mb=cache_mb)
    generator = torch.Generator().manual_seed(0)
    epoch_chunks: list[float] = []

    def measure(data: FoldData, *, warm: bool = False) -> float:
        n, epochs, start = 0, 0, time.perf_counter()
        decoded = stream._cache.decoded if stream._cache is not None else 0
        while epochs == 0 or (not warm and time.perf_counter() - start < seconds):
            batches = _batches(fold.train, data.path, generator)
            data.will_read(batches)
            for idx in batches:
                data.batch(idx)
                n += int(idx.numel())
            epochs += 1
        elapsed = time.perf_counter() - start
        if data.path == "stream" and stream._cache is not None:
            epoch_chunks.append((stream._cache.decoded - decoded) / epochs)
            if data._prefetch is not None:
                data._prefetch.stop()
        return n / elapsed

    measure(memory, warm=True), measure(stream, warm=True)  # first reads; torch's first ops
    rates: dict[str, list[float]] = {"memory": [], "stream": []}
    for _ in range(repeats):
        rates["memory"].append(measure(memory))
        rates["stream"].append(measure(stream))
    ratios = [s / m for m, s in zip(rates["memory"], rates["stream"], strict=True)]
    fold_chunks = sum(
        len(
            {
                k
                for i in fold.train[samples.run[fold.train] == r]
                for k in stream._runs[int(r)].chunks_of(
                    int(samples.start_sample[i]), int(samples.start_sample[i]) + stream.n_window
                )
            }
        )
        for r in np.unique(samples.run[fold.train])
    )
    return {
        "memory_windows_per_s": statistics.median(rates["memory"]),
        "stream_windows_per_s": statistics.median(rates["stream"]),
        "ratio": statistics.median(ratios),
        "ratios": ratios,
        "runs": rates,
        "fold_eeg_mb": fold_mb,
        "cache_mb": stream._cache.max_bytes / 1e6 if stream._cache else cache_mb,  # grown?
        "chunks_per_epoch": statistics.median(epoch_chunks[1:]),
        "training_chunks": fold_chunks,
    }


LARGE = {"subjects": 22, "minutes": 110.0, "channels": 64, "sfreq": 250.0, "tr": 2.1, "rois": 8}


def write_large(path: Path, spec: dict[str, Any]) -> float:
    """A store the size of NATVIEW (22 subjects, about 40 h of 64-channel EEG at 250 Hz:
    9.3 GB of float32): Gaussian EEG (compressing like real EEG at 250 Hz, about 0.9) and
    BOLD, one run per subject, written through the store's writer. Returns the raw EEG MB."""
    from eeg2bold.storage import create_dataset
    from eeg2bold.storage.schema import BOLDInfo, DatasetInfo, EEGInfo, RunData

    info = DatasetInfo(
        name="natview-size",
        eeg=EEGInfo(
            sfreq=spec["sfreq"], channels=tuple(f"E{i:02d}" for i in range(spec["channels"]))
        ),
        bold=BOLDInfo(tr=spec["tr"], rois=tuple(f"roi{i}" for i in range(spec["rois"]))),
        source="benchmarks/bench_memory.py",
    )
    dataset = create_dataset(str(path), info)
    n = int(spec["minutes"] * 60 * spec["sfreq"])
    n_vol = int((n / spec["sfreq"]) // spec["tr"])
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for i in range(spec["subjects"]):
        eeg = rng.standard_normal((spec["channels"], n), dtype=np.float32) * 10
        bold = rng.standard_normal((spec["rois"], n_vol)).astype(np.float32)
        times = np.arange(n_vol) * spec["tr"] + spec["tr"] / 2
        run = RunData(
            subject=f"sub-{i + 1:02d}", run="run-1", eeg=eeg, bold=bold, volume_times=times
        )
        dataset.write_run(run)
        print(
            f"  wrote sub-{i + 1:02d} of {spec['subjects']} ({time.perf_counter() - start:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
    return spec["subjects"] * spec["channels"] * n * 4 / 1e6


def _peak_mb() -> float:
    """This process's peak resident memory (VmHWM)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def large_child(store: str, path: str, *, seconds: float = 20.0) -> dict[str, Any]:
    """One LOSO fold of the large store on ``path``: set-up time, peak memory after set-up
    and after cutting batches, windows/s of training-order batches of 64, then beira's
    training steps (forward, backward, AdamW) on such batches: steps/s and the share of their
    time spent getting the batch."""
    import torch

    from eeg2bold.protocols import build_sample_table, get_protocol
    from eeg2bold.storage import open_dataset
    from eeg2bold.training.data import FoldData, SampleConfig
    from eeg2bold.training.fit import FoldTrainer, TrainConfig
    from eeg2bold.training.losses import total_loss

    torch.set_num_threads(1)
    dataset = open_dataset(store)
    samples = build_sample_table(dataset, window_s=10.0)
    fold = get_protocol("loso").folds(samples)[0]
    idle = _peak_mb()
    start = time.perf_counter()
    data = FoldData(dataset, samples, fold, config=SampleConfig(window_s=10.0), path=path)  # type: ignore[arg-type]
    setup_s = time.perf_counter() - start
    after_setup = _peak_mb()
    generator = torch.Generator().manual_seed(0)

    batches = _batches(fold.train, path, generator)
    data.will_read(batches)
    n, start = 0, time.perf_counter()
    for idx in batches:
        data.batch(idx)
        n += int(idx.numel())
        if time.perf_counter() - start > seconds:
            break
    windows_s = n / (time.perf_counter() - start)
    after_batches = _peak_mb()
    config = TrainConfig(epochs=1, batch_size=64)
    trainer = FoldTrainer(data=data, model_name="beira", model_params={}, config=config)
    model, optimizer = trainer.model, trainer.optimizer
    assert optimizer is not None
    batches = _batches(fold.train, path, generator)[:24]
    data.will_read(batches)
    data_s, start = 0.0, time.perf_counter()
    for i, idx in enumerate(batches):
        if i == 4:  # the first steps warm torch up
            data_s, start = 0.0, time.perf_counter()
        t_data = time.perf_counter()
        eeg, target = data.batch(idx)
        data_s += time.perf_counter() - t_data
        loss, _ = total_loss(model.training_outputs(eeg, target), target, config.loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    train_s = time.perf_counter() - start
    return {
        "path": path,
        "touched_eeg_mb": data.describe()["eeg_mb"],
        "setup_s": setup_s,
        "peak_after_setup_mb": after_setup,
        "peak_after_batches_mb": after_batches,
        "peak_mb": _peak_mb(),
        "imports_mb": idle,
        "windows_per_s": windows_s,
        "beira_steps_per_s": 20 / train_s,
        "beira_data_share": data_s / train_s,
    }


def _worktree(rev: str, where: Path) -> Path:
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(where), rev], check=True
    )
    return where


def large(args: argparse.Namespace) -> int:
    """``--part large``: the NATVIEW-size store, one fold in memory and streaming, each in a
    fresh process (peak memory is the process's own)."""
    folder = Path(args.large or tempfile.mkdtemp(prefix="eeg2bold-large-"))
    store = folder / "natview-size.zarr"
    data_mb = LARGE["subjects"] * LARGE["channels"] * LARGE["minutes"] * 60 * LARGE["sfreq"] * 4e-6
    if not (store / "zarr.json").exists():
        print(f"writing a {data_mb / 1e3:.1f} GB store at {store}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        write_large(store, LARGE)
        print(f"  written in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    stored_mb = sum(p.stat().st_size for p in store.rglob("*") if p.is_file()) / 1e6
    rows = []
    for path in ("stream", "memory"):
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        done = subprocess.run(
            [sys.executable, __file__, "--large-child", str(store), path],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        row = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(
            f"{path:<7} touched {row['touched_eeg_mb']:6.0f} MB  set-up {row['setup_s']:5.1f} s  "
            f"peak {row['peak_after_setup_mb']:6.0f} MB after set-up, "
            f"{row['peak_after_batches_mb']:6.0f} after batches, {row['peak_mb']:6.0f} after "
            f"training (imports {row['imports_mb']:.0f})  {row['windows_per_s']:6.0f} windows/s"
            f"  beira {row['beira_steps_per_s']:.2f} steps/s, data "
            f"{100 * row['beira_data_share']:.1f} % of them",
            file=sys.stderr,
            flush=True,
        )
    out = {
        "benchmark": "memory-large",
        "store": {**LARGE, "eeg_mb": data_mb, "stored_mb": stored_mb},
        "rows": rows,
    }
    default = args.out == "benchmarks/results/memory.json"
    write_result(out, "benchmarks/results/memory_large.json" if default else args.out)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/memory.json")
    parser.add_argument("--before", default="d62360c")
    parser.add_argument("--minutes", default="20,80")
    parser.add_argument("--actors", default="1,2,4")
    parser.add_argument("--part", choices=("all", "actors", "paths", "large"), default="all")
    parser.add_argument(
        "--large", default=None, metavar="DIR", help="where the large store is kept (reused)"
    )
    parser.add_argument("--large-child", nargs=2, metavar=("STORE", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=2, metavar=("STORE", "K"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]))))
        return 0
    if args.large_child:
        print(json.dumps(large_child(*args.large_child)))
        return 0
    if args.part == "large":
        return large(args)

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
                        f"(median ratio {speed['ratio']:.2f}x of {len(speed['ratios'])} pairs, "
                        f"{min(speed['ratios']):.2f}-{max(speed['ratios']):.2f}; target >= "
                        f"0.5x); cache {speed['cache_mb']:.0f} MB, "
                        f"{speed['chunks_per_epoch'] / speed['training_chunks']:.2f}x the "
                        "training chunks decoded per epoch",
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
        "settings": {"store": STORE, "train": SETS},
        "rows": rows,
        "paths": speeds,
    }
    write_result(out, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

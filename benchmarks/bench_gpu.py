"""GPUs: bf16 training throughput per model on the GPU vs one CPU thread, and a sweep whose 4
fold actors share one GPU (0.25 each) with its utilisation sampled by nvidia-smi.

Prepared for a machine with an NVIDIA GPU and a CUDA build of torch (at most ~5 minutes);
without CUDA it says so and exits 2 — unless ``--device cpu``, which runs the same code paths
on the CPU (float32 and bf16 autocast) as a check of the script itself.

(a) Throughput, on a simulated store (4 subjects × 10 min, 32 channels, 250 Hz, 8 ROIs),
window 10 s, batch 32: training windows/s of the package's ``FoldTrainer`` over LOSO fold 1
(forward, loss, backward, clipping, AdamW step; validation off), one warm-up epoch then the
median of the measured ones, each model in a fresh process: on the GPU with ``amp=bf16`` and
the data on the device, and on the CPU with 1 thread in float32. The ratio is GPU / CPU.

(b) Sharing: a one-trial LOSO sweep of one deep model (``--sweep-model``, default twin) on 4
subjects with ``resources.gpu: 0.25`` (4 fold actors on one GPU, one fold each) and enough
epochs for a minute of training; nvidia-smi samples GPU utilisation every 0.2 s (the busy share
is the mean of samples taken while a fold trained) and per-process GPU memory (the peak of each
fold actor's process). Target: ≥ 70 % busy.

    python benchmarks/bench_gpu.py [--out benchmarks/results/gpu.json] [--device cuda|cpu]
        [--models beira,twin,neurobolt,linker] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
STORE = {"subjects": 4, "minutes": 10.0, "channels": 32, "sfreq": 250.0, "rois": 8}
SETS = {"window_s": "10", "batch_size": "32"}
TARGET_BUSY = 0.70


def _deep_models() -> list[str]:
    from eeg2bold.models import model_names
    from eeg2bold.models.catalog import describe_models

    closed = {m["name"] for m in describe_models() if m.get("closed_form")}
    return [m for m in model_names() if m not in closed and m != "ridge"]


def throughput_worker(model: str, store: str, device: str, amp: str, epochs: int) -> dict:
    """One model, one device, in this (fresh) process."""
    import statistics

    import numpy as np
    import torch

    from eeg2bold.protocols import build_sample_table, get_protocol
    from eeg2bold.storage import open_dataset
    from eeg2bold.training.config import build_config
    from eeg2bold.training.data import FoldData
    from eeg2bold.training.fit import FoldTrainer, SplitScore

    dataset = open_dataset(store)
    sets = SETS | {"device": device, "amp": amp, "epochs": str(epochs + 1), "patience": "0"}
    config = build_config(model=model, protocol="loso", sets=sets)
    samples = build_sample_table(dataset, window_s=config.data.window_s)
    fold = get_protocol("loso").folds(samples)[0]
    data = FoldData(dataset, samples, fold, config=config.data, device=device)
    trainer = FoldTrainer(
        data=data, model_name=model, model_params=config.model_params, config=config.train
    )
    n_out = len(trainer.data.outputs)  # validation off: a free, constant score
    trainer.evaluate = lambda split: SplitScore(r=np.zeros(n_out), n=0)  # type: ignore[method-assign]
    seconds = []
    for _ in range(epochs + 1):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        trainer.step()
        if device == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    windows = trainer.steps_per_epoch * config.train.batch_size
    out = {
        "model": model,
        "device": device,
        "amp": amp,
        "windows_per_s": windows / statistics.median(seconds[1:]),
        "torch_threads": torch.get_num_threads(),
    }
    if device == "cuda":
        out["peak_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
        out["gpu"] = torch.cuda.get_device_name()
    return out


def _worker(args: list[str], threads: int | None) -> dict[str, Any]:
    env = dict(os.environ)
    if threads is not None:
        for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[key] = str(threads)
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", *args], capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        raise SystemExit(f"worker {args} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


class _Sampler(threading.Thread):
    """nvidia-smi every 0.2 s: GPU utilisation and memory per process."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.busy: list[float] = []
        self.memory: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            util = _smi(["--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"])
            apps = _smi(["--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"])
            if apps.strip() and util.strip():  # a fold process holds the GPU: it is training
                self.busy.append(float(util.split()[0]) / 100)
            for line in apps.strip().splitlines():
                pid, mem = (x.strip() for x in line.split(","))
                self.memory[pid] = max(self.memory.get(pid, 0.0), float(mem))
            time.sleep(0.2)


def _smi(args: list[str]) -> str:
    done = subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, timeout=10)
    return done.stdout if done.returncode == 0 else ""


def sharing(store: Path, folder: Path, model: str, epochs: int) -> dict[str, Any]:
    study = {
        "name": "gpu_share",
        "dataset": str(store),
        "protocols": ["loso"],
        "models": [model],
        "search": {"data.window_s": 10.0, "train.steps_per_epoch": 100, "train.amp": "bf16"},
        "budget": {"num_samples": 1},
        "scheduler": {"type": "fifo", "max_epochs": epochs},
        "resources": {"cpu": 2, "gpu": 0.25, "trial_cpu": 0.5},
        "storage": {"results": str(folder / "sweep")},
    }
    path = folder / "gpu_share.yaml"
    path.write_text(yaml.safe_dump(study))
    sampler = _Sampler()
    sampler.start()
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "eeg2bold.cli", "sweep", str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "RAY_AUTH_MODE": "disabled"},
    )
    wall = time.perf_counter() - start
    sampler.stop.set()
    sampler.join()
    if done.returncode != 0:
        raise SystemExit(f"the shared-GPU sweep failed:\n{done.stderr[-2000:]}")
    busy = sum(sampler.busy) / len(sampler.busy) if sampler.busy else float("nan")
    return {
        "model": model,
        "fold_actors": STORE["subjects"],
        "gpu_per_fold": 0.25,
        "epochs": epochs,
        "wall_s": wall,
        "busy_share": busy,
        "busy_target": TARGET_BUSY,
        "samples": len(sampler.busy),
        "peak_memory_mb_per_process": sampler.memory,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gpu.json"))
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--models", default="")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--sweep-model", default="twin")
    parser.add_argument("--sweep-epochs", type=int, default=6)
    parser.add_argument("--worker", nargs=5, metavar=("MODEL", "STORE", "DEVICE", "AMP", "N"))
    args = parser.parse_args()
    if args.worker:
        model, store, device, amp, n = args.worker
        print(json.dumps(throughput_worker(model, store, device, amp, int(n))))
        return

    import torch

    from eeg2bold.simulate import SimulationConfig
    from eeg2bold.simulate.write import simulate_to_store

    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "bench_gpu: no CUDA device (or a CPU build of torch): nothing measured; "
            "--device cpu checks the script on the CPU",
            file=sys.stderr,
        )
        raise SystemExit(2)
    models = [m for m in args.models.split(",") if m] or _deep_models()
    folder = Path(tempfile.mkdtemp(prefix="e2b-bench-gpu-"))
    store = folder / "speed.zarr"
    simulate_to_store(store, SimulationConfig(**STORE, seed=0), progress=False)
    rows = []
    for model in models:
        fast = _worker([model, str(store), args.device, "bf16", str(args.epochs)], None)
        cpu = _worker([model, str(store), "cpu", "off", str(args.epochs)], 1)
        rows.append({"model": model, "accelerated": fast, "cpu_1_thread": cpu})
        rows[-1]["ratio"] = fast["windows_per_s"] / cpu["windows_per_s"]
        print(
            f"{model:10s} {args.device} bf16 {fast['windows_per_s']:8.0f} windows/s   "
            f"cpu 1 thread {cpu['windows_per_s']:7.0f}   × {rows[-1]['ratio']:.1f}",
            file=sys.stderr,
        )
    result: dict[str, Any] = {
        "benchmark": "gpu",
        "device": args.device,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "torch": torch.__version__,
        "store": STORE,
        "throughput": rows,
    }
    if args.device == "cuda" and shutil.which("nvidia-smi"):
        result["sharing"] = sharing(store, folder, args.sweep_model, args.sweep_epochs)
        s = result["sharing"]
        print(
            f"4 folds on one GPU: {s['busy_share']:.0%} busy (target ≥ {TARGET_BUSY:.0%}), "
            f"{s['wall_s']:.0f} s",
            file=sys.stderr,
        )
    shutil.rmtree(folder, ignore_errors=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()

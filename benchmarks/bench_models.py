"""Models: CPU training speed and memory per model; within vs LOSO test r against the oracle.

(a) Speed, on a demo-sized simulated store (4 subjects x 10 min, 32 channels, 250 Hz, 8 ROIs,
seed 0 — what ``eeg2bold simulate demo_out/demo.zarr --subjects 4 --minutes 10 --seed 0``
writes), window 10 s, batch 32, on the CPU at a fixed torch thread count. Every model is
measured in fresh subprocesses (one per measurement, BLAS/OpenMP threads fixed too):

- training windows/s: epochs of the package's ``FoldTrainer`` over the training windows of
  LOSO fold 1 (3 subjects, ~690 windows; forward, loss, backward, clipping, AdamW step) with
  validation scoring switched off; one warm-up epoch, then the median of the measured epochs.
  ``ridge`` has no steps: its rate is training windows fitted per second (the closed-form fit,
  penalty search included).
- peak memory: the process's peak RSS while training (Linux VmHWM, reset just before the model
  is built) minus its RSS at that moment, i.e. the model, optimiser, activations and allocator
  growth on top of the fold's data already in memory; the absolute peak is recorded too.
- time per epoch: one real ``FoldTrainer.step()`` on within fold 1 (one pass over its ~170
  training windows, then val scoring), median after a warm-up epoch; the split into training
  steps and val scoring is measured by timing the trainer's ``evaluate``.
- data share: ``EpochReport.data_seconds`` over the time of the training steps (the epoch
  minus val scoring; ``data_seconds`` counts only training batches). Target: <= 5 %.

(b) Science, on a simulated store big enough for LOSO (full: 6 subjects x 10 min, 32 ch,
128 Hz, 8 ROIs; --quick: 4 subjects x 8 min): every model trained with ``train_protocol`` under
``within`` and ``loso`` with one fixed budget (SCIENCE_SETS below, same for both protocols:
window 20 s, 10 steps of 32 windows per epoch, at most 12 epochs (--quick: 4), lr 3e-3 with
warm-up and cosine decay, early stopping on val r with the default patience; ``--set`` changes
it). Reported: test r (Fisher-z mean over folds and ROIs), its ratio to the oracle r of the same
test volumes (corr(bold_clean, bold) from the simulator's truth; the run-level ``oracle_r``
attribute is recorded too), and the generalisation gap within - LOSO.

Writes JSON (default benchmarks/results/models.json) with every number, the settings, the
platform, the thread count and load averages at start and end; prints a table.

(c) Outputs: training windows/s of (a) with 14 and with 400 outputs (``--outputs``; whole-brain
parcels, every model trains all of them at once).

    python benchmarks/bench_models.py [--out FILE] [--threads 1] [--quick]
        [--part all|speed|science|outputs] [--models ridge,beira] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eeg2bold.models import model_names
from eeg2bold.protocols import build_sample_table, get_protocol
from eeg2bold.simulate import SimulationConfig
from eeg2bold.simulate.write import simulate_to_store
from eeg2bold.storage import open_dataset
from eeg2bold.training.config import build_config
from eeg2bold.training.data import FoldData
from eeg2bold.training.fit import FoldTrainer, SplitScore
from eeg2bold.training.metrics import combine_segments, fisher_mean, pearson_r
from eeg2bold.training.run import train_protocol

TARGET_DATA_SHARE = 0.05
SPEED_STORE = {"subjects": 4, "minutes": 10.0, "channels": 32, "sfreq": 250.0, "rois": 8}
SPEED_SETS = {"window_s": "10", "batch_size": "32", "device": "cpu"}
SCIENCE_STORE = {"subjects": 6, "minutes": 10.0, "channels": 32, "sfreq": 128.0, "rois": 8}
SCIENCE_STORE_QUICK = {"subjects": 4, "minutes": 8.0, "channels": 32, "sfreq": 128.0, "rois": 8}
SCIENCE_SETS = {
    "window_s": "20",
    "batch_size": "32",
    "steps_per_epoch": "10",
    "epochs": "12",
    "lr": "3e-3",
    "device": "cpu",
}
SCIENCE_QUICK_EPOCHS = "4"
PROTOCOLS = ("within", "loso")


# ------------------------------------------------------------------------------- helpers


def _proc_status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process; False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _rss_mb() -> float:
    kb = _proc_status_kb("VmRSS")
    return float("nan") if kb is None else kb / 1024


def _peak_rss_mb() -> float:
    kb = _proc_status_kb("VmHWM")
    if kb is None:  # not Linux: ru_maxrss is the peak since the process started
        import resource

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if sys.platform == "darwin":
            kb //= 1024
    return kb / 1024


def _loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _thread_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = str(threads)
    return env


def _fix_threads(threads: int) -> None:
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # already set once parallel work has run
        torch.set_num_interop_threads(1)


def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def _simulate(url: Path, store: dict[str, Any], seed: int) -> float:
    t0 = time.perf_counter()
    simulate_to_store(url, SimulationConfig(**store, seed=seed), progress=False)
    return time.perf_counter() - t0


# --------------------------------------------------------------------- (a) speed workers


def _timed_evaluate(trainer: FoldTrainer, clock: list[float], *, skip: bool) -> None:
    """Replace the trainer's val scoring by a timed (or, with ``skip``, a free) version."""
    real = trainer.evaluate
    n_out = len(trainer.data.outputs)

    def evaluate(split: str) -> SplitScore:
        t0 = time.perf_counter()
        score = SplitScore(r=np.zeros(n_out), n=0) if skip else real(split)
        clock.append(time.perf_counter() - t0)
        return score

    trainer.evaluate = evaluate  # type: ignore[method-assign]


def speed_worker(model: str, store: str, phase: str, repeats: int) -> dict[str, Any]:
    """One measurement in this (fresh) process: ``throughput`` (LOSO fold) or ``epoch``."""
    dataset = open_dataset(store)
    protocol = "loso" if phase == "throughput" else "within"
    config = build_config(model=model, protocol=protocol, sets=SPEED_SETS)
    samples = build_sample_table(dataset, window_s=config.data.window_s)
    fold = get_protocol(protocol).folds(samples)[0]
    data = FoldData(dataset, samples, fold, config=config.data, device="cpu")
    train_config = config.train.model_copy(update={"epochs": 1 + repeats, "patience": 0})
    gc.collect()
    rss_before = _rss_mb()
    peak_reset = _reset_peak_rss()

    def new_trainer() -> FoldTrainer:
        return FoldTrainer(
            data=data,
            model_name=model,
            model_params=config.model_params,
            config=train_config,
        )

    trainer = new_trainer()
    epochs: list[dict[str, float]] = []
    for _ in range(1 + repeats):  # the first epoch is the warm-up
        if trainer.done:  # closed form: one fit per trainer
            trainer = new_trainer()
        clock: list[float] = []
        _timed_evaluate(trainer, clock, skip=phase == "throughput")
        report = trainer.step()
        train_s = report.seconds - sum(clock)
        epochs.append(
            {"seconds": report.seconds, "eval_seconds": sum(clock), "train_seconds": train_s}
            | {"data_seconds": report.data_seconds}
        )
    peak = _peak_rss_mb()
    measured = epochs[1:]
    closed = trainer.model.closed_form
    n_train = int(fold.train.size)
    windows = n_train if closed else trainer.steps_per_epoch * train_config.batch_size
    out: dict[str, Any] = {
        "model": model,
        "phase": phase,
        "fold": fold.name,
        "closed_form": closed,
        "n_params": sum(p.numel() for p in trainer.model.parameters()),
        "n_train_windows": n_train,
        "steps_per_epoch": None if closed else trainer.steps_per_epoch,
        "windows_per_epoch": windows,
        "epochs": epochs,
        "rss_before_mb": rss_before,
        "peak_rss_mb": peak,
        "peak_rss_delta_mb": peak - rss_before,
        "peak_reset": peak_reset,
        "eeg_mb_in_fold": data.describe()["eeg_mb_on_device"],
        "torch_threads": torch.get_num_threads(),
    }
    train_s = _median([e["train_seconds"] for e in measured])
    out["windows_per_s"] = windows / train_s
    out["data_share"] = _median([e["data_seconds"] / e["train_seconds"] for e in measured])
    if phase == "epoch":
        out["epoch_seconds"] = _median([e["seconds"] for e in measured])
        out["epoch_train_seconds"] = train_s
        out["epoch_eval_seconds"] = _median([e["eval_seconds"] for e in measured])
        out["data_share_of_epoch"] = _median([e["data_seconds"] / e["seconds"] for e in measured])
    return out


def _run_worker(args: list[str], threads: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--threads", str(threads), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_thread_env(threads))
    if proc.returncode != 0:
        raise RuntimeError(f"worker {' '.join(args)} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------- (b) science


def oracle_on_test(dataset: Any, protocol: str, window_s: float, delay_s: float) -> dict:
    """Oracle r on each fold's test volumes: corr(bold_clean, bold), as the test r is scored.

    Segments (runs) of one fold are combined as the fit loop combines them (Fisher z weighted
    by n - 3); summaries are Fisher-z means over folds and ROIs.
    """
    samples = build_sample_table(dataset, window_s=window_s, delay_s=delay_s)
    runs = {key: dataset.read_run(key, truth=True) for key in samples.runs}
    per_fold = []
    for fold in get_protocol(protocol).folds(samples):
        rs, ns = [], []
        for r in np.unique(samples.run[fold.test]):
            run = runs[samples.runs[r]]
            vols = samples.volume[fold.test[samples.run[fold.test] == r]]
            clean = run.truth.arrays["bold_clean"][:, vols]
            rs.append(pearson_r(clean, run.bold[:, vols]))
            ns.append(vols.size)
        per_fold.append(np.atleast_1d(combine_segments(rs, ns)))
    arr = np.asarray(per_fold)
    return {"mean": float(fisher_mean(arr)), "per_fold": arr.tolist()}


def science_worker(model: str, store: str, sets: dict[str, str]) -> dict[str, Any]:
    """Train ``model`` under every protocol of PROTOCOLS with one budget; test r per fold."""
    dataset = open_dataset(store)
    out: dict[str, Any] = {"model": model}
    for protocol in PROTOCOLS:
        config = build_config(model=model, protocol=protocol, sets=sets)
        t0 = time.perf_counter()
        result = train_protocol(dataset, config)
        seconds = time.perf_counter() - t0
        summary = result.summary()
        out[protocol] = {
            "test_r": summary["test_r_mean"],
            "val_r": summary["val_r_mean"],
            "test_r_per_roi": summary["test_r_per_output"],
            "test_r_per_fold": [f["test_r_mean"] for f in summary["folds"]],
            "best_epoch_per_fold": [f["best_epoch"] for f in summary["folds"]],
            "epochs_run_per_fold": [len(f.history) for f in result.folds],
            # folds whose best val r came in their last epoch: the budget, not the data, limited
            "folds_best_at_last_epoch": sum(
                f.best_epoch == len(f.history) and len(f.history) > 1 for f in result.folds
            ),
            "n_train_per_fold": [f["n_train"] for f in summary["folds"]],
            "n_test_per_fold": [f["n_test"] for f in summary["folds"]],
            "seconds": seconds,
            "config_hash": summary["config_hash"],
            "config": config.model_dump(mode="json"),
        }
    return out


# --------------------------------------------------------------------------------- main


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None or not np.isfinite(x) else format(x, spec)


def run_speed(models: list[str], threads: int, repeats: int, tmp: Path) -> dict[str, Any]:
    url = tmp / "speed.zarr"
    build_s = _simulate(url, SPEED_STORE, seed=0)
    per_model = {}
    for model in models:
        print(f"speed: {model} ...", file=sys.stderr, flush=True)
        common = ["--model", model, "--store", str(url), "--repeats", str(repeats)]
        rows = {
            phase: _run_worker(["--worker", "speed", "--phase", phase, *common], threads)
            for phase in ("throughput", "epoch")
        }
        thr, ep = rows["throughput"], rows["epoch"]
        per_model[model] = {
            "closed_form": thr["closed_form"],
            "n_params": thr["n_params"],
            "windows_per_s": thr["windows_per_s"],
            "throughput_windows_per_epoch": thr["windows_per_epoch"],
            "peak_rss_delta_mb": thr["peak_rss_delta_mb"],
            "peak_rss_mb": thr["peak_rss_mb"],
            "epoch_seconds": ep["epoch_seconds"],
            "epoch_train_seconds": ep["epoch_train_seconds"],
            "epoch_eval_seconds": ep["epoch_eval_seconds"],
            "epoch_windows": ep["windows_per_epoch"],
            "epoch_peak_rss_delta_mb": ep["peak_rss_delta_mb"],
            "data_share": max(thr["data_share"], ep["data_share"]),
            "data_share_throughput": thr["data_share"],
            "data_share_epoch_steps": ep["data_share"],
            "data_share_of_epoch": ep["data_share_of_epoch"],
            "raw": rows,
        }
    deep = [m for m, r in per_model.items() if not r["closed_form"]]
    return {
        "store": SPEED_STORE | {"seed": 0},
        "store_build_s": build_s,
        "settings": SPEED_SETS,
        "warmup_epochs": 1,
        "measured_epochs": repeats,
        "target_data_share": TARGET_DATA_SHARE,
        "data_share_passed": bool(
            all(per_model[m]["data_share"] <= TARGET_DATA_SHARE for m in deep)
        ),
        "models": per_model,
    }


def run_outputs(
    models: list[str], threads: int, repeats: int, tmp: Path, counts: list[int]
) -> dict[str, Any]:
    """Training windows/s per model with few and with many outputs (whole-brain parcels):
    the speed store with ``--rois`` each of ``counts``, the throughput phase only."""
    rows: dict[str, dict[str, float]] = {m: {} for m in models}
    for count in counts:
        url = tmp / f"outputs-{count}.zarr"
        _simulate(url, SPEED_STORE | {"rois": count}, seed=0)
        for model in models:
            print(f"outputs: {model} x {count} ...", file=sys.stderr, flush=True)
            args = ["--worker", "speed", "--phase", "throughput", "--model", model]
            got = _run_worker([*args, "--store", str(url), "--repeats", str(repeats)], threads)
            rows[model][str(count)] = got["windows_per_s"]
    lo, hi = str(min(counts)), str(max(counts))
    return {
        "store": SPEED_STORE | {"seed": 0},
        "counts": counts,
        "windows_per_s": rows,
        "ratio_many_to_few": {m: r[hi] / r[lo] for m, r in rows.items()},
    }


def run_science(
    models: list[str], threads: int, quick: bool, extra: dict[str, str], tmp: Path
) -> dict[str, Any]:
    store = SCIENCE_STORE_QUICK if quick else SCIENCE_STORE
    sets = dict(SCIENCE_SETS)
    if quick:
        sets["epochs"] = SCIENCE_QUICK_EPOCHS
    sets.update(extra)
    url = tmp / "science.zarr"
    build_s = _simulate(url, store, seed=1)
    dataset = open_dataset(url)
    window_s = float(sets["window_s"])
    delay_s = float(sets.get("delay_s", 0.0))
    run_oracle = [dataset.read_truth(k).attrs["oracle_r"] for k in dataset.runs()]
    oracle = {p: oracle_on_test(dataset, p, window_s, delay_s) for p in PROTOCOLS}
    per_model = {}
    for model in models:
        print(f"science: {model} ...", file=sys.stderr, flush=True)
        row = _run_worker(
            ["--worker", "science", "--model", model, "--store", str(url)]
            + [f"--set={k}={v}" for k, v in sets.items()],
            threads,
        )
        for p in PROTOCOLS:
            row[p]["ratio_to_oracle"] = row[p]["test_r"] / oracle[p]["mean"]
        row["gap_within_minus_loso"] = row["within"]["test_r"] - row["loso"]["test_r"]
        per_model[model] = row
    return {
        "store": store | {"seed": 1},
        "store_build_s": build_s,
        "settings": sets,
        "oracle_r_run_level": float(fisher_mean(np.asarray(run_oracle))),
        "oracle_r_run_level_per_subject": [float(fisher_mean(r)) for r in run_oracle],
        "oracle_r_test": {p: oracle[p]["mean"] for p in PROTOCOLS},
        "oracle_r_test_per_fold": {p: oracle[p]["per_fold"] for p in PROTOCOLS},
        "models": per_model,
    }


def _print_tables(out: dict[str, Any]) -> None:
    speed = out.get("speed")
    if speed:
        print(
            f"speed: {out['threads']} torch thread(s), window 10 s, batch 32, "
            f"{speed['store']['subjects']} subj x {speed['store']['minutes']:g} min, "
            f"{speed['store']['channels']} ch @ {speed['store']['sfreq']:g} Hz"
        )
        print(
            f"{'model':<10} {'params':>8} {'win/s':>8} {'peak+MB':>8} "
            f"{'epoch s':>8} {'(train':>7} {'eval)':>6} {'data %':>7}"
        )
        for m, r in speed["models"].items():
            print(
                f"{m:<10} {r['n_params']:>8d} {_fmt(r['windows_per_s'], '8.0f')} "
                f"{_fmt(r['peak_rss_delta_mb'], '8.0f')} {_fmt(r['epoch_seconds'], '8.2f')} "
                f"{_fmt(r['epoch_train_seconds'], '7.2f')} {_fmt(r['epoch_eval_seconds'], '6.2f')} "
                f"{_fmt(100 * r['data_share'], '6.1f')}%"
                + ("  (closed form: windows fitted/s)" if r["closed_form"] else "")
            )
    sci = out.get("science")
    if sci:
        o = sci["oracle_r_test"]
        print(
            f"science: {sci['store']['subjects']} subj x {sci['store']['minutes']:g} min @ "
            f"{sci['store']['sfreq']:g} Hz; budget {sci['settings']}"
        )
        print(
            f"oracle r on the test volumes: within {o['within']:.3f}, loso {o['loso']:.3f} "
            f"(run level {sci['oracle_r_run_level']:.3f}); best@last = folds (within/LOSO) "
            "whose best val r came in their last epoch"
        )
        print(
            f"{'model':<10} {'within r':>8} {'/oracle':>8} {'LOSO r':>8} {'/oracle':>8} "
            f"{'gap':>7} {'train s':>8} {'best@last':>9}"
        )
        for m, r in sci["models"].items():
            w, lo = r["within"], r["loso"]
            print(
                f"{m:<10} {w['test_r']:8.3f} {w['ratio_to_oracle']:8.2f} {lo['test_r']:8.3f} "
                f"{lo['ratio_to_oracle']:8.2f} {r['gap_within_minus_loso']:7.3f} "
                f"{w['seconds'] + lo['seconds']:8.0f} "
                f"{w['folds_best_at_last_epoch']:>4d}/{lo['folds_best_at_last_epoch']:<4d}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/models.json")
    parser.add_argument("--threads", type=int, default=1, help="torch/BLAS threads (fixed)")
    parser.add_argument("--quick", action="store_true", help="a few-minute version")
    parser.add_argument("--part", choices=("all", "speed", "science", "outputs"), default="all")
    parser.add_argument(
        "--outputs",
        default="14,400",
        help="outputs part: ROI counts to compare training windows/s at (default 14,400)",
    )
    parser.add_argument("--models", default="", help="comma-separated (default: all registered)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="science budget override (build_config keys), repeatable",
    )
    parser.add_argument("--worker", choices=("speed", "science"), help=argparse.SUPPRESS)
    parser.add_argument("--phase", choices=("throughput", "epoch"), help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sets = dict(item.split("=", 1) for item in args.set)

    _fix_threads(args.threads)
    if args.worker == "speed":
        print(json.dumps(speed_worker(args.model, args.store, args.phase, args.repeats)))
        return
    if args.worker == "science":
        print(json.dumps(science_worker(args.model, args.store, sets)))
        return

    models = args.models.split(",") if args.models else model_names()
    unknown = sorted(set(models) - set(model_names()))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; known: {', '.join(model_names())}")
    t0 = time.perf_counter()
    out: dict[str, Any] = {
        "benchmark": "models",
        "quick": args.quick,
        "threads": args.threads,
        "load_average_start": _loadavg(),
        "platform": {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "system": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "numpy": np.__version__,
        },
    }
    with tempfile.TemporaryDirectory() as tmp:
        if args.part in ("all", "speed"):
            out["speed"] = run_speed(models, args.threads, 2 if args.quick else 3, Path(tmp))
        if args.part in ("all", "science"):
            out["science"] = run_science(models, args.threads, args.quick, sets, Path(tmp))
        if args.part in ("all", "outputs"):
            counts = [int(c) for c in args.outputs.split(",")]
            out["outputs"] = run_outputs(
                models, args.threads, 2 if args.quick else 3, Path(tmp), counts
            )
            for m, r in out["outputs"]["windows_per_s"].items():
                shown = "  ".join(f"{c} outputs {v:8.0f}" for c, v in r.items())
                print(f"outputs: {m:<10} {shown} windows/s", file=sys.stderr)
    out["load_average_end"] = _loadavg()
    out["total_seconds"] = time.perf_counter() - t0
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    _print_tables(out)
    parts = []
    if "speed" in out:
        s = out["speed"]
        deep = {m: r for m, r in s["models"].items() if not r["closed_form"]}
        worst = max(deep, key=lambda m: deep[m]["data_share"]) if deep else None
        if worst is not None:
            parts.append(
                f"max data share {100 * deep[worst]['data_share']:.1f}% ({worst}), target <= "
                f"{100 * TARGET_DATA_SHARE:.0f}% -> {'PASS' if s['data_share_passed'] else 'FAIL'}"
            )
    if "science" in out:
        sci = out["science"]
        best = max(sci["models"], key=lambda m: sci["models"][m]["loso"]["test_r"])
        r = sci["models"][best]
        parts.append(
            f"best LOSO r {r['loso']['test_r']:.3f} ({best}; {r['loso']['ratio_to_oracle']:.2f}x "
            f"oracle, within {r['within']['test_r']:.3f})"
        )
    print(
        "; ".join(parts)
        + f"  [{args.threads} thread(s), load {out['load_average_start']} -> "
        + f"{out['load_average_end']}, {out['total_seconds']:.0f} s]  ({path})"
    )


if __name__ == "__main__":
    main()

"""Report build time for a sweep of 200 trials × 8 subjects × 14 ROIs. Target: < 30 s.

The sweep folder is generated, not trained, in the layout a real sweep leaves
(``eeg2bold.launch.sweep`` + ``training.engine``, written through ``eeg2bold.run_folder``):

- a simulated dataset (8 subjects × ``--minutes`` min, 14 ROIs) the ``dataset`` section reads;
- ``sweep.json`` with the validated study config and the plan of ``make_plan`` (arms within,
  loso × ridge, beira, all ``done``);
- ``optuna.db`` (SQLite): ``--trials-per-arm`` completed trials per arm, each with the
  parameters the real search space samples (so importances compute) and the user attributes
  the sweep records (``trial_id``, ``finished``, ``config_hash``, ``test_r``,
  ``epochs_trained``, ``best_epoch``);
- ``table/<trial>-fold<k>.parquet``, one part per fold as the engine leaves a finished fold
  (its per-epoch parts replaced): the fold's val curve (``final=False``) and its val and test
  rows per ROI at the best epoch; ``configs/<hash>.json``;
- ``predictions/<trial>-fold<k>.npz`` for every trial × fold: the real protocol folds of the
  sampled window/delay, truth = the simulated BOLD at the val/test volumes, prediction = a
  noisy copy of the noise-free BOLD; the table's r is computed from these arrays with the
  report's own metric, so the two agree as they do after a real sweep.

No ``models/*.pt``: the interpretation section is skipped (recorded in the JSON). Every trial
runs to the end (FIFO), the largest table a 200-trial sweep can leave.

Timed: ``build_report`` (default n_boot=10000, n_surrogates=1000, seed 0; per-phase times from
its progress messages) and ``write_report`` (HTML + JSON), one run each after a warm-up import.
The target applies to the sum, the wait of ``eeg2bold report``. Absolute times on a shared
machine are noisy; ``--profile`` adds a second, cProfiled build and lists where the time goes.

    python benchmarks/bench_report.py [--out FILE] [--trials-per-arm 50] [--minutes 10]
        [--n-boot 10000] [--n-surrogates 1000] [--profile] [--keep DIR]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import platform
import pstats
import tempfile
import time
import uuid
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

TARGET_S = 30.0
SUBJECTS, ROIS = 8, 14
PROTOCOLS, MODELS = ("within", "loso"), ("ridge", "beira")
MAX_EPOCHS = 20


# ----------------------------------------------------------------------------- the folder


def _segments(samples: Any, idx: np.ndarray) -> list[np.ndarray]:
    """Contiguous stretches (same run, consecutive volumes), as ``FoldData.segments``."""
    order = idx[np.lexsort((samples.volume[idx], samples.run[idx]))]
    run, vol = samples.run[order], samples.volume[order]
    breaks = np.flatnonzero((np.diff(run) != 0) | (np.diff(vol) != 1)) + 1
    return [s for s in np.split(order, breaks) if s.size]


def _split_arrays(
    *,
    samples: Any,
    idx: np.ndarray,
    runs: dict[Any, dict[str, np.ndarray]],
    skill: np.ndarray,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """times/truth/pred/segment/run of one split, shaped as ``FoldTrainer.predictions``."""
    times, truth, pred, segment, run_idx = [], [], [], [], []
    for k, seg in enumerate(_segments(samples, idx)):
        run = runs[samples.runs[int(samples.run[seg[0]])]]
        vols = samples.volume[seg]
        y, clean = run["bold"][:, vols], run["bold_clean"][:, vols]
        z = (clean - clean.mean(1, keepdims=True)) / (clean.std(1, keepdims=True) + 1e-12)
        noise = rng.standard_normal(z.shape)
        p = skill[:, None] * z + np.sqrt(1 - skill[:, None] ** 2) * noise
        pred.append(y.mean(1, keepdims=True) + y.std(1, keepdims=True) * p)
        times.append(samples.time[seg])
        truth.append(y)
        segment.append(np.full(seg.size, k))
        run_idx.append(samples.run[seg])
    return {
        "times": np.concatenate(times),
        "truth": np.concatenate(truth, axis=1),
        "pred": np.concatenate(pred, axis=1),
        "segment": np.concatenate(segment),
        "run": np.concatenate(run_idx),
    }


def make_sweep_folder(root: Path, *, trials_per_arm: int, minutes: float) -> dict[str, Any]:
    """Write a finished sweep's folder under ``root``; returns its sizes."""
    import optuna

    from eeg2bold.launch.config import parse_study_config
    from eeg2bold.launch.plan import make_plan
    from eeg2bold.protocols import build_sample_table, get_protocol
    from eeg2bold.run_folder import RunFolder
    from eeg2bold.search_spaces.spaces import define_space, experiment_from_sample
    from eeg2bold.simulate import SimulationConfig
    from eeg2bold.simulate.write import simulate_to_store
    from eeg2bold.storage import open_dataset
    from eeg2bold.study.stats import segment_r
    from eeg2bold.training.metrics import fisher_mean

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t0 = time.perf_counter()
    store = root / "data.zarr"
    sim = SimulationConfig(subjects=SUBJECTS, minutes=minutes, rois=ROIS, seed=0)
    simulate_to_store(store, sim, progress=False)
    simulate_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    sweep_root = root / "sweep"
    config = parse_study_config(
        {
            "name": "bench-report",
            "dataset": str(store),
            "protocols": list(PROTOCOLS),
            "models": list(MODELS),
            "budget": {"num_samples": trials_per_arm},
            "scheduler": {"type": "fifo", "max_epochs": MAX_EPOCHS},
            "storage": {"results": str(sweep_root)},
            "seed": 0,
        },
        where="bench_report",
    )
    plan = make_plan(config)
    for arm in plan.arms:
        arm.status = "done"
    from eeg2bold.provenance import environment

    state = {
        "plan": plan.to_dict(),
        "config": config.model_dump(mode="json"),
        "provenance": environment(),  # as ``launch.sweep`` records it
    }
    folder = RunFolder(sweep_root)
    folder.write_manifest("sweep", state)

    dataset = open_dataset(store)
    runs = {}
    for key in dataset.runs():
        run = dataset.read_run(key, truth=True)
        assert run.truth is not None  # simulated: the noise-free BOLD is stored
        runs[key] = {
            "bold": np.asarray(run.bold, dtype=np.float64),
            "bold_clean": np.asarray(run.truth.arrays["bold_clean"], dtype=np.float64),
        }
    outputs = np.asarray(list(dataset.info.bold.rois))
    storage = optuna.storages.RDBStorage(config.optuna_url)
    tables: dict[tuple[float, float], Any] = {}
    folds: dict[tuple[str, float, float], list[Any]] = {}
    rng = np.random.default_rng(0)
    n_rows = n_parts = n_npz = npz_bytes = 0
    for a, arm in enumerate(plan.arms):
        closed = arm.model == "ridge"
        sampler = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=a))
        frozen = []
        tag = uuid.uuid4().hex[:5]  # Tune's trial ids: <experiment tag>_<counter>
        for i in range(trials_per_arm):
            ask = sampler.ask()
            sample = define_space(ask, model=arm.model, constraints=config.search)
            experiment = experiment_from_sample(
                sample,
                model=arm.model,
                protocol=arm.protocol,
                protocol_options=config.protocol_options.get(arm.protocol, {}),
                data=config.data_settings(),
                train=config.train_settings(),
            )
            window_s, delay_s = experiment.data.window_s, experiment.data.delay_s
            if (window_s, delay_s) not in tables:
                tables[window_s, delay_s] = build_sample_table(
                    dataset, window_s=window_s, delay_s=delay_s
                )
            samples = tables[window_s, delay_s]
            if (arm.protocol, window_s, delay_s) not in folds:
                splitter = get_protocol(arm.protocol, **experiment.protocol_options)
                folds[arm.protocol, window_s, delay_s] = list(splitter.folds(samples))
            trial = f"{tag}_{i:05d}"
            base = {
                "sweep": plan.sweep_id,
                "trial": trial,
                "config_hash": experiment.config_hash(),
                "model": arm.model,
                "protocol": arm.protocol,
                "seed": experiment.train.seed,
                "window_s": window_s,
                "delay_s": delay_s,
            }
            folder.write_config(base["config_hash"], experiment.model_dump(mode="json"))
            quality = rng.uniform(0.15, 0.85) * (0.7 if arm.protocol == "loso" else 1.0)
            n_epochs = 1 if closed else int(rng.integers(4, MAX_EPOCHS + 1))
            epoch_rows: list[list[dict[str, Any]]] = [[] for _ in range(n_epochs)]
            final_rows, fold_val, fold_test, best_epochs = [], [], [], []
            for fold in folds[arm.protocol, window_s, delay_s]:
                skill = np.clip(quality * rng.uniform(0.4, 1.0, ROIS), 0.0, 0.95)
                arrays: dict[str, np.ndarray] = {
                    "outputs": outputs,
                    "subject": np.asarray(fold.subject),
                    "runs": np.asarray([str(k) for k in samples.runs]),
                }
                scores = {}
                for split in ("val", "test"):
                    got = _split_arrays(
                        samples=samples, idx=fold.split(split), runs=runs, skill=skill, rng=rng
                    )
                    arrays.update({f"{split}_{k}": v for k, v in got.items()})
                    scores[split] = segment_r(
                        got["truth"], got["pred"], times=got["times"], segment=got["segment"]
                    )
                written = folder.write_predictions(trial, fold.index, arrays)
                n_npz += 1
                npz_bytes += Path(written).stat().st_size
                best = n_epochs if closed else int(rng.integers(1, n_epochs + 1))
                best_epochs.append(best)
                fold_row = {**base, "fold": fold.index, "subject": fold.subject}
                for e in range(n_epochs):  # the val curve: below the best epoch's score
                    shrink = 1.0 if e + 1 == best else rng.uniform(0.5, 0.98)
                    epoch_rows[e] += [
                        fold_row
                        | {"roi": roi, "split": "val", "epoch": e + 1, "final": False}
                        | {"r": float(r * shrink), "n": int(arrays["val_times"].size)}
                        for roi, r in zip(outputs.tolist(), scores["val"], strict=True)
                    ]
                for split in ("val", "test"):
                    final_rows += [
                        fold_row
                        | {"roi": roi, "split": split, "epoch": best, "final": True}
                        | {"r": float(r), "n": int(arrays[f"{split}_times"].size)}
                        for roi, r in zip(outputs.tolist(), scores[split], strict=True)
                    ]
                fold_val.append(float(fisher_mean(scores["val"])))
                fold_test.append(float(fisher_mean(scores["test"])))
            # one part per finished fold, as the engine leaves it (replace_epoch_parts)
            all_rows = [r for rows in epoch_rows for r in rows] + final_rows
            for k in sorted({r["fold"] for r in all_rows}):
                mine = [r for r in all_rows if r["fold"] == k]
                folder.write_rows(mine, trial, f"fold{k}")
                n_rows, n_parts = n_rows + len(mine), n_parts + 1
            value = float(fisher_mean(np.asarray(fold_val)))
            sampler.tell(ask, value)
            frozen.append(
                optuna.trial.create_trial(
                    params=ask.params,
                    distributions=ask.distributions,
                    value=value,
                    user_attrs={
                        "trial_id": trial,
                        "finished": True,
                        "config_hash": base["config_hash"],
                        "test_r": float(fisher_mean(np.asarray(fold_test))),
                        "epochs_trained": n_epochs,
                        "best_epoch": max(best_epochs),
                    },
                )
            )
        study = optuna.create_study(
            study_name=arm.study_name, storage=storage, direction="maximize"
        )
        study.add_trials(frozen)
    return {
        "subjects": SUBJECTS,
        "rois": ROIS,
        "minutes_per_subject": minutes,
        "eeg": {"channels": sim.channels, "sfreq": sim.sfreq, "tr": sim.tr},
        "arms": [asdict(arm) | {"folds": len(arm.folds)} for arm in plan.arms],
        "trials": trials_per_arm * len(plan.arms),
        "trial_folds": n_npz,
        "results_rows": n_rows,
        "results_rows_final": n_npz * ROIS * 2,
        "parquet_parts": n_parts,
        "prediction_files": n_npz,
        "prediction_mb": npz_bytes / 1e6,
        "model_files": 0,
        "distinct_window_delay": len(tables),
        "simulate_s": simulate_s,
        "generate_s": time.perf_counter() - t0,
    }


# ------------------------------------------------------------------------------ timing


def _phases(marks: list[tuple[str, float]], end: float) -> list[dict[str, Any]]:
    """Seconds from each progress message of ``build_report`` to the next (or the end)."""
    stamps = [*marks, ("(end)", end)]
    return [
        {"phase": msg, "seconds": stamps[k + 1][1] - t} for k, (msg, t) in enumerate(stamps[:-1])
    ]


def _profile(study: Path, *, n_boot: int, n_surrogates: int, top: int) -> list[dict[str, Any]]:
    from eeg2bold.study.report import ReportOptions, build_report

    profiler = cProfile.Profile()
    profiler.enable()
    build_report(study, options=ReportOptions(n_boot=n_boot, n_surrogates=n_surrogates))
    profiler.disable()
    stats = pstats.Stats(profiler)
    rows = []
    entries = stats.stats.items()  # type: ignore[attr-defined]
    for (file, line, name), (_cc, calls, tottime, cumtime, _) in entries:
        rows.append(
            {
                "function": f"{Path(file).name}:{line}({name})",
                "file": file,
                "calls": calls,
                "tottime_s": tottime,
                "cumtime_s": cumtime,
            }
        )
    rows.sort(key=lambda r: r["cumtime_s"], reverse=True)
    return rows[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/report.json")
    parser.add_argument("--trials-per-arm", type=int, default=50, help="4 arms: 200 trials")
    parser.add_argument("--minutes", type=float, default=10.0, help="per simulated subject")
    parser.add_argument("--n-boot", type=int, default=10000)
    parser.add_argument("--n-surrogates", type=int, default=1000)
    parser.add_argument("--profile", action="store_true", help="add a cProfiled second build")
    parser.add_argument("--keep", help="build the folder here and keep it (default: temporary)")
    args = parser.parse_args()

    load_start = os.getloadavg()
    from eeg2bold.study.report import ReportOptions, build_report, write_report

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        root.mkdir(parents=True, exist_ok=True)
        sizes = make_sweep_folder(root, trials_per_arm=args.trials_per_arm, minutes=args.minutes)
        study = root / "sweep"
        gc.collect()
        marks: list[tuple[str, float]] = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t0 = time.perf_counter()
            report = build_report(
                study,
                options=ReportOptions(n_boot=args.n_boot, n_surrogates=args.n_surrogates),
                echo=lambda msg: marks.append((msg, time.perf_counter())),
            )
            t1 = time.perf_counter()
            written = write_report(report, study / "report.html", study / "report.json")
            t2 = time.perf_counter()
        build_s, write_s = t1 - t0, t2 - t1
        phases = [{"phase": "(start, before the first message)", "seconds": marks[0][1] - t0}]
        phases += _phases(marks, t1) if marks else []
        profile = (
            _profile(study, n_boot=args.n_boot, n_surrogates=args.n_surrogates, top=30)
            if args.profile
            else None
        )
        data = report.data
        out = {
            "benchmark": "report_build",
            "sizes": sizes,
            "settings": {"n_boot": args.n_boot, "n_surrogates": args.n_surrogates, "seed": 0},
            "build_report_s": build_s,
            "write_report_s": write_s,
            "total_s": build_s + write_s,
            "build_phases": phases,
            "target_s": TARGET_S,
            "target_applies_to": "build_report + write_report",
            "passed": bool(build_s + write_s < TARGET_S),
            "html_mb": written["html"].stat().st_size / 1e6,
            "json_mb": written["json"].stat().st_size / 1e6,
            "figures": len(report.figures),
            "sections_skipped": {
                k: data[k]["skipped"]
                for k in ("traces", "interpretation")
                if isinstance(data.get(k), dict) and "skipped" in data[k]
            },
            "interpretation_skipped_reason": "no models/*.pt written (optional for this bench)",
            "dataset_section_error": data["dataset"].get("error"),
            "report_notes": {
                "count": len(data.get("notes") or []),
                "first": (data.get("notes") or [])[:5],
            },
            "warnings": {
                "count": len(caught),
                "first": [str(w.message) for w in caught[:5]],
            },
            "profile_top_cumulative": profile,
            "load_average": {"start": load_start, "end": os.getloadavg()},
            "platform": {
                "machine": platform.machine(),
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
            },
            "note": "absolute times on a shared machine are noisy",
        }
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    verdict = "pass" if out["passed"] else "FAIL"
    print(
        f"report of {sizes['trials']} trials × {SUBJECTS} subjects × {ROIS} ROIs "
        f"({sizes['parquet_parts']} parquet parts, {sizes['prediction_files']} predictions): "
        f"build {build_s:.1f} s + write {write_s:.1f} s = {build_s + write_s:.1f} s "
        f"(target < {TARGET_S:g} s: {verdict}) ({path})"
    )


if __name__ == "__main__":
    main()

"""Does a sweep find a better model than the defaults, and by how much? (issue 22)

For every store × protocol × model: the defaults through ``eeg2bold train`` (what a user gets
without searching), then a sweep with the study config's defaults (trial 0 = those defaults,
TPE after a budget-scaled start-up, ASHA over ``train.epochs``) on the same store. Both are
scored as the report scores them: per held-out subject, each subject's Fisher mean over ROIs
of its test r, then the Fisher mean over subjects; the sweep's per fold after nested
selection (each fold's configuration chosen by that fold's val r only, never test). Compute is
counted in fold-epochs (one fold trained one epoch; ridge's closed-form fit counts one) from
the run folders' results tables.

Stores:
- ``sim``: the default simulator, 8 subjects × 20 min, 32 channels, 100 Hz;
- ``hybrid`` (where ``../shared/data/real`` exists): the simulator's EEG and its noise-free
  EEG-driven BOLD, with the BOLD noise replaced by real resting-state BOLD region series
  (``vu_rest_bold``, one scan per subject, TR 2.1 s): each ROI is
  ``sqrt(snr/(1+snr))·signal + sqrt(1/(1+snr))·real``, both standardised, so the noise has
  real autocorrelation and inter-region correlation.

Targets: averaged over the deep models × protocols the sweep's test r is at least the
defaults' + 0.02, and no arm is more than 0.01 below its defaults.

    python benchmarks/bench_search.py                    # the full benchmark (hours on 2 cores)
    python benchmarks/bench_search.py --subjects 4 --minutes 6 --channels 16 \\
        --models ridge beira --epochs 12 --num-samples 6   # a small one (minutes)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from results_json import write_result

HERE = Path(__file__).resolve().parent
REAL = HERE.parent.parent / "shared" / "data" / "real" / "vu_rest_bold"
EEG2BOLD = [str(Path(sys.executable).parent / "eeg2bold")]
DEEP_GAIN_TARGET = 0.02
ARM_LOSS_LIMIT = -0.01
SMOOTH_EPOCHS = 3  # the alternative scored beside the default (report --smooth-epochs 3)
# real regions standing in for the simulator's 8 ROIs' noise (any 8 distinct ones would do)
REAL_COLUMNS = [
    "Thalamus",
    "Caudate",
    "Putamen",
    "Cingulate cortex posterior",
    "Anterior Cingulate Cortex",
    "Insula antero-superior",
    "Precuneus superior",
    "Superior frontal gyrus medial",
]


def simulated_store(path: Path, args: argparse.Namespace, *, tr: float = 2.0) -> Path:
    from eeg2bold.simulate.write import simulate_to_store

    config = _sim_config(args, tr=tr)
    simulate_to_store(path, config, progress=False)
    return path


def _sim_config(args: argparse.Namespace, *, tr: float) -> Any:
    from eeg2bold.simulate import SimulationConfig

    return SimulationConfig(
        subjects=args.subjects,
        minutes=args.minutes,
        channels=args.channels,
        sfreq=args.sfreq,
        tr=tr,
        seed=args.seed,
    )


def hybrid_store(path: Path, args: argparse.Namespace, *, snr: float = 1.0) -> Path | None:
    """Simulated EEG and EEG-driven BOLD, real BOLD noise (see the module docstring)."""
    import pandas as pd

    from eeg2bold.simulate import dataset_info, simulate_runs
    from eeg2bold.storage import create_dataset

    scans = sorted(REAL.glob("sub-*_timeseries.tsv"))
    firsts = {s.name.split("_")[0]: s for s in reversed(scans)}  # one scan per subject
    scans = [firsts[k] for k in sorted(firsts)]
    if len(scans) < args.subjects:
        return None
    config = _sim_config(args, tr=2.1)
    dataset = create_dataset(path, dataset_info(config=config))
    for k, run in enumerate(simulate_runs(config=config)):
        assert run.truth is not None
        real = pd.read_csv(scans[k], sep="\t")[REAL_COLUMNS].to_numpy(dtype=np.float64).T
        clean = run.truth.arrays["bold_clean"].astype(np.float64)
        n = min(real.shape[1], clean.shape[1])
        signal, noise = _z(clean[: len(REAL_COLUMNS), :n]), _z(real[:, :n])
        bold = np.sqrt(snr / (1 + snr)) * signal + np.sqrt(1 / (1 + snr)) * noise
        run.bold = bold.astype(np.float32)
        run.volume_times = run.volume_times[:n]
        run.truth = None  # the simulator's oracle no longer describes this BOLD
        run.provenance = {**run.provenance, "bold_noise": str(scans[k].name)}
        dataset.write_run(run)
    return path


def _z(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(axis=1, keepdims=True)) / x.std(axis=1, keepdims=True)


def arm_scores(
    results: Any,
    *,
    trials: dict[tuple[str, str], str] | None = None,
    defaults: dict[tuple[str, str], str] | None = None,
    smooth_epochs: int | None = None,
) -> dict:
    """Per (protocol, model): val and test r as the report's arm table computes them, after
    nested selection (the report's default rule; with ``defaults``, the one-standard-error
    rule anchored at them, ``report --selection one_se``; ``trials``: one given trial
    instead; ``smooth_epochs``: ranking on smoothed val curves, ``report --smooth-epochs``),
    the folds where the defaults were chosen, and the fold-epochs trained."""
    from eeg2bold.study.selection import DEFAULT_SMOOTH_EPOCHS, fixed_choice, nested_selection
    from eeg2bold.training.metrics import fisher_mean

    if trials:
        chosen = fixed_choice(results, trials)
    else:
        rule = "one_se" if defaults else "best"
        smooth = smooth_epochs or DEFAULT_SMOOTH_EPOCHS
        chosen = nested_selection(results, rule=rule, defaults=defaults, smooth_epochs=smooth)
    curve = results[(results["split"] == "val") & ~results["final"].astype(bool)]
    out = {}
    for (protocol, model), frame in chosen.groupby(["protocol", "model"]):
        scores = {}
        for split in ("val", "test"):
            per_subject = frame.groupby("subject")[f"{split}_r"].agg(
                lambda r: float(fisher_mean(r.to_numpy()))
            )
            scores[f"{split}_r"] = float(fisher_mean(per_subject.to_numpy()))
        mine = curve[(curve["protocol"] == protocol) & (curve["model"] == model)]
        epochs = len(mine.drop_duplicates(["trial", "fold", "epoch"]))
        finals = results[(results["protocol"] == protocol) & (results["model"] == model)]
        closed_form = len(mine) == 0  # ridge: one closed-form pass per fold
        if closed_form:
            epochs = len(finals[finals["final"].astype(bool)].drop_duplicates(["trial", "fold"]))
        kept = frame.drop_duplicates("fold")["chosen_by"].isin(["defaults", "fixed"])
        out[(protocol, model)] = scores | {"fold_epochs": epochs, "defaults_kept": int(kept.sum())}
    return out


def protocol_options(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """``--protocol-option loso.val_subjects=1`` as the study config's protocol_options."""
    out: dict[str, dict[str, Any]] = {}
    for text in args.protocol_option or []:
        name, _, value = text.partition("=")
        protocol, _, key = name.partition(".")
        out.setdefault(protocol, {})[key] = yaml.safe_load(value)
    return out


def run_defaults(
    store: Path, model: str, protocol: str, out: Path, args: argparse.Namespace
) -> dict:
    from eeg2bold.search_spaces import common_footprint

    # the sweep's footprint, so both are scored on the same volumes (docs/sweeps.md)
    sets = ["--set", f"data.footprint_s={common_footprint()}"]
    sets += ["--set", f"train.epochs={args.epochs}"] if args.epochs else []
    for key, value in protocol_options(args).get(protocol, {}).items():
        sets += ["--set", f"protocol.{key}={value}"]
    command = [*EEG2BOLD, "train", str(store), "--model", model, "--protocol", protocol, "-q"]
    seconds = _timed(out, [*command, *sets, "--out", str(out)])
    from eeg2bold.run_folder import RunFolder

    ((_, scores),) = arm_scores(RunFolder(out).results()).items()
    return scores | {"seconds": seconds}


def run_sweep(store: Path, args: argparse.Namespace, root: Path, label: str) -> dict:
    import pandas as pd

    from eeg2bold.run_folder import RunFolder
    from eeg2bold.study.aggregate import search_gain
    from eeg2bold.study.queries import defaults_trials, load_sweep, trials_table

    study = {
        "name": f"bench-search-{label}",
        "dataset": str(store),
        "protocols": args.protocols,
        "protocol_options": protocol_options(args),
        "models": args.models,
        "budget": {"num_samples": args.num_samples},
        # 2 CPUs: two folds per actor, one trial at a time
        "resources": {"cpu": 1.9 / args.subjects, "trial_cpu": 0.05, "folds_per_actor": 2},
        "max_concurrent_trials": 1,
        "storage": {"results": str(root / f"sweep-{label}")},
        "seed": args.seed,
    }
    if args.epochs:
        study["search"] = {"train.epochs": args.epochs}
    path = root / f"study-{label}.yaml"
    path.write_text(yaml.safe_dump(study))
    seconds = _timed(root / f"sweep-{label}", [*EEG2BOLD, "sweep", str(path)])
    folder = RunFolder(root / f"sweep-{label}")
    results = folder.results()
    defaults = defaults_trials(trials_table(load_sweep(folder.url)))
    selected = arm_scores(results)
    one_se = arm_scores(results, defaults=defaults)
    smoothed = arm_scores(results, smooth_epochs=SMOOTH_EPOCHS)
    in_sweep = arm_scores(results, trials=defaults)
    # the report's paired bootstrap CI of what the search bought over trial 0 (subjects the unit)
    arms = pd.DataFrame([{"protocol": p, "model": m} for p, m in selected])
    gain = search_gain(results, arms, defaults).set_index(["protocol", "model"])
    return {
        "seconds": seconds,
        "arms": {
            key: selected[key]
            | {
                "defaults_in_sweep": in_sweep.get(key),
                "one_se": one_se.get(key),
                f"smoothed_{SMOOTH_EPOCHS}": smoothed.get(key),
                "bought_ci_vs_trial_0": [gain.loc[key, "bought_low"], gain.loc[key, "bought_high"]]
                if key in gain.index
                else None,
            }
            for key in selected
        },
    }


def _timed(folder: Path, command: list[str]) -> float | None:
    """Run ``command`` (which writes ``folder``) and time it; with ``--work`` a folder an
    earlier run of this script finished is scored again instead (seconds: that run's)."""
    done = folder / "bench-seconds.json"
    if done.exists():
        return json.loads(done.read_text())["seconds"]
    t0 = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - t0
    done.write_text(json.dumps({"seconds": seconds}))
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE / "results" / "search.json"))
    parser.add_argument("--subjects", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--sfreq", type=float, default=100.0)
    parser.add_argument(
        "--models", nargs="+", default=["ridge", "beira", "twin", "linker", "neurobolt"]
    )
    parser.add_argument("--protocols", nargs="+", default=["within", "loso"])
    parser.add_argument("--num-samples", type=int, default=8, help="trials per arm")
    parser.add_argument("--epochs", type=int, help="train.epochs for both (default: 30)")
    parser.add_argument("--stores", nargs="+", default=["sim", "hybrid"])
    parser.add_argument(
        "--protocol-option",
        action="append",
        metavar="PROTOCOL.KEY=VALUE",
        help="a splitter option for both (e.g. loso.val_subjects=1); repeatable",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--work",
        help="keep stores and run folders here (default: temporary); run again with the same "
        "folder and settings to score the finished runs again without training",
    )
    args = parser.parse_args()

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench-search-"))
    work.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for kind in args.stores:
        store = work / f"{kind}.zarr"
        if store.exists():
            made: Path | None = store
        elif kind == "sim":
            made = simulated_store(store, args)
        else:
            made = hybrid_store(store, args)
        if made is None:
            print(f"{kind}: skipped (no real recordings in {REAL})", file=sys.stderr)
            continue
        print(
            f"{kind}: sweep ({len(args.models)} models × {len(args.protocols)} protocols)",
            file=sys.stderr,
        )
        sweep = run_sweep(store, args, work, kind)
        for protocol in args.protocols:
            for model in args.models:
                print(f"{kind}: train {protocol} × {model} with the defaults", file=sys.stderr)
                defaults = run_defaults(
                    store, model, protocol, work / f"train-{kind}-{protocol}-{model}", args
                )
                searched = sweep["arms"].get((protocol, model))
                row = {
                    "store": kind,
                    "protocol": protocol,
                    "model": model,
                    "defaults": defaults,
                    "sweep": searched,
                    "bought_test_r": None
                    if searched is None
                    else searched["test_r"] - defaults["test_r"],
                    "bought_val_r": None
                    if searched is None
                    else searched["val_r"] - defaults["val_r"],
                    "compute_ratio": None
                    if searched is None
                    else searched["fold_epochs"] / max(1, defaults["fold_epochs"]),
                }
                rows.append(row)
                if searched:
                    row["one_se_bought_test_r"] = searched["one_se"]["test_r"] - defaults["test_r"]
                    row["smoothed_bought_test_r"] = (
                        searched[f"smoothed_{SMOOTH_EPOCHS}"]["test_r"] - defaults["test_r"]
                    )
                print(
                    f"  {kind:<6} {protocol:<7} {model:<10} defaults val/test "
                    f"{defaults['val_r']:.3f}/{defaults['test_r']:.3f}  sweep "
                    + (
                        f"{searched['val_r']:.3f}/{searched['test_r']:.3f}  bought "
                        f"{row['bought_test_r']:+.3f} ("
                        f"{row['one_se_bought_test_r']:+.3f} by one-SE, which kept the defaults "
                        f"on {searched['one_se']['defaults_kept']} folds; "
                        f"{row['smoothed_bought_test_r']:+.3f} on val curves smoothed over "
                        f"{SMOOTH_EPOCHS} epochs; 95 % CI over "
                        f"subjects {_interval(searched['bought_ci_vs_trial_0'])})  compute "
                        f"{row['compute_ratio']:.1f}×"
                        if searched
                        else "(no finished trial)"
                    ),
                    file=sys.stderr,
                )
    deep, every = _gains(rows, "bought_test_r")
    se_deep, se_every = _gains(rows, "one_se_bought_test_r")
    sm_deep, sm_every = _gains(rows, "smoothed_bought_test_r")
    summary = {
        "deep_mean_bought_test_r": float(np.mean(deep)) if deep else None,
        "worst_arm_bought_test_r": float(min(every)) if every else None,
        "target_deep_mean": DEEP_GAIN_TARGET,
        "target_worst_arm": ARM_LOSS_LIMIT,
        "met": bool(deep and np.mean(deep) >= DEEP_GAIN_TARGET and min(every) >= ARM_LOSS_LIMIT),
        # the same trials chosen by the one-standard-error rule (report --selection one_se)
        "one_se_deep_mean_bought_test_r": float(np.mean(se_deep)) if se_deep else None,
        "one_se_worst_arm_bought_test_r": float(min(se_every)) if se_every else None,
        # ranked on val curves smoothed over SMOOTH_EPOCHS epochs (report --smooth-epochs)
        "smoothed_deep_mean_bought_test_r": float(np.mean(sm_deep)) if sm_deep else None,
        "smoothed_worst_arm_bought_test_r": float(min(sm_every)) if sm_every else None,
        # arms whose loss is more than 0.01 and outside the subjects' spread (CI below -0.01)
        "arms_clearly_below_limit": [
            f"{r['store']}/{r['protocol']}/{r['model']}"
            for r in rows
            if r["sweep"]
            and r["sweep"]["bought_ci_vs_trial_0"]
            and r["sweep"]["bought_ci_vs_trial_0"][1] < ARM_LOSS_LIMIT
        ],
    }
    print(json.dumps(summary, indent=2), file=sys.stderr)
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "work")}
    write_result({"settings": settings, "summary": summary, "rows": _plain(rows)}, args.out)
    return 0


def _interval(ci: list[float] | None) -> str:
    return "–" if ci is None else f"[{ci[0]:+.3f}, {ci[1]:+.3f}]"


def _gains(rows: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """The deep models' and every arm's ``key`` over the rows whose sweep finished."""
    finished = [r for r in rows if r["sweep"]]
    return [r[key] for r in finished if r["model"] != "ridge"], [r[key] for r in finished]


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {("/".join(k) if isinstance(k, tuple) else k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


if __name__ == "__main__":
    sys.exit(main())

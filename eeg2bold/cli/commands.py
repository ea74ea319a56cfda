"""The commands: each turns parsed arguments into a call into the subpackages and prints the
outcome (no logic of their own beyond parsing and printing)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eeg2bold.cli.flags import (
    BEST_FLAGS,
    MODEL_CHOICE_FLAGS,
    PREDICT_FLAGS,
    STREAM_FLAGS,
    SWEEP_FLAGS,
    TRAIN_FLAGS,
)
from eeg2bold.cli.options import given, options_of, passed, validated
from eeg2bold.errors import ConfigError

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


def _cmd_simulate(args: argparse.Namespace) -> int:
    from eeg2bold.simulate import SimulationConfig
    from eeg2bold.simulate.write import simulate_to_store

    values: dict[str, Any] = given(args)  # the options generated from SimulationConfig
    values.update(_parse_sets(args.set))
    config = validated(SimulationConfig, values)
    dataset = simulate_to_store(args.out, config, overwrite=args.overwrite, progress=not args.quiet)
    if not args.quiet:
        from eeg2bold.storage.summary import format_summary, summarize

        print(format_summary(summarize(dataset)))
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from eeg2bold.storage import open_dataset
    from eeg2bold.storage.summary import format_summary, summarize

    dataset = open_dataset(args.dataset)
    if args.repair:
        removed = dataset.remove_stale_temporaries()
        print(
            f"repair: removed {len(removed)} temporary write(s) of crashed writers"
            + (f" ({', '.join(removed)})" if removed else ""),
            file=sys.stderr,
        )
    summary = summarize(dataset, verify=args.verify)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(format_summary(summary))
    problems = [p for r in summary["runs"] for p in r.get("problems", [])]
    return EXIT_ERROR if problems else 0


def _cmd_train(args: argparse.Namespace) -> int:
    from eeg2bold.storage import open_dataset
    from eeg2bold.training.display import format_curve, format_epoch, format_fold, format_result
    from eeg2bold.training.options import TrainRunOptions
    from eeg2bold.training.run import train_run

    options = options_of(args, TrainRunOptions, TRAIN_FLAGS)
    config = options.experiment(args.model, _parse_sets(args.set))  # checked before any data
    dataset = open_dataset(args.dataset)
    quiet = args.quiet

    def on_epoch(epoch: Any) -> None:
        if not quiet:
            line = format_epoch(config.protocol, epoch, max_epochs=config.train.epochs)
            print(line, file=sys.stderr)

    def on_fold(outcome: Any) -> None:
        if not quiet:
            print(format_fold(config.protocol, outcome), file=sys.stderr)

    outcome = train_run(dataset, config, options, on_epoch=on_epoch, on_fold=on_fold)
    summary: Any
    if isinstance(outcome, list):  # a calibration curve: one result per amount
        text, summary, what = format_curve(outcome), [r.summary() for r in outcome], "configs"
    else:
        text, summary, what = format_result(outcome), outcome.summary(), "config"
    print(text)
    print(f"\nresults, model files and {what} in {options.folder(config)}")
    if args.json:
        from eeg2bold.jsonsafe import json_safe

        with open(args.json, "w") as f:
            json.dump(json_safe(summary), f, indent=2)
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from eeg2bold.models.catalog import describe_models, format_models

    models = describe_models()
    print(json.dumps(models, indent=2, default=str) if args.json else format_models(models))
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from eeg2bold.launch.config import SweepOptions, load_study_config
    from eeg2bold.launch.sweep import run_sweep
    from eeg2bold.study.queries import best_trials, format_gain, format_trials, load_sweep

    options = options_of(args, SweepOptions, SWEEP_FLAGS)
    config = options.study(load_study_config(args.config))
    outcome = run_sweep(
        config,
        address=options.address,
        resume=options.resume,
        dry_run=options.dry_run,
        num_cpus=options.num_cpus,
        echo=lambda line: print(line, file=sys.stderr, flush=True),
        debug=args.debug,
    )
    if isinstance(outcome, str):
        print(outcome)
        return 0
    sweep = load_sweep(outcome.plan.results)
    print("best configuration per protocol and model (ranked by mean validation r):")
    best = best_trials(sweep)
    print(format_trials(best))
    if gain := format_gain(best):
        print(gain)
    if outcome.orphans:
        print(f"({outcome.orphans} Optuna trial(s) left RUNNING by a killed driver marked FAIL)")
    if outcome.n_retried:
        print(
            f"({outcome.n_retried} trial(s) retried, each from its last epoch checkpoint; "
            f"{outcome.n_lost_nodes} of them had lost their node)"
        )
    if outcome.ray_log:
        print(f"(Ray's own messages — tracebacks, node dumps — are in {outcome.ray_log})")
    print(f"\nsweep folder: {outcome.plan.results}  (eeg2bold trials / best / report)")
    if outcome.n_trials and outcome.n_failed == outcome.n_trials:
        print(
            f"eeg2bold: error: all {outcome.n_trials} trial(s) failed; see `eeg2bold trials "
            f"{outcome.plan.results}` for the reasons",
            file=sys.stderr,
        )
        return EXIT_ERROR
    return 0


def _run_folder(path: str) -> str:
    """A run folder as given, or the results folder a study config names."""
    if path.endswith((".yaml", ".yml")) and Path(path).is_file():
        from eeg2bold.launch.config import load_study_config

        return load_study_config(path).results_url
    return path


def _load_searched(path: str) -> Any:
    """The run folder for ``trials`` and ``best``; a train run has no trials, said once."""
    from eeg2bold.study.queries import load_sweep

    sweep = load_sweep(_run_folder(path))
    if sweep.kind == "train":
        print(
            f"eeg2bold: note: {sweep.root} is an `eeg2bold train` run (one configuration, no "
            f"search), so it has no trials; `eeg2bold report {path}` shows its scores",
            file=sys.stderr,
        )
    return sweep


def _cmd_trials(args: argparse.Namespace) -> int:
    from eeg2bold.study.queries import format_trials, trial_records, trials_table

    frame = trials_table(_load_searched(args.study))
    if args.json:
        print(json.dumps(trial_records(frame), indent=2, default=str))
    else:
        print(format_trials(frame, params=args.params))
    return 0


def _cmd_best(args: argparse.Namespace) -> int:
    from eeg2bold.study.options import BestOptions
    from eeg2bold.study.queries import best_trials, format_gain, format_trials, trial_records

    options = options_of(args, BestOptions, BEST_FLAGS)  # checked before the sweep is read
    frame = best_trials(_load_searched(args.study), options)
    if args.json:
        print(json.dumps(trial_records(frame), indent=2, default=str))
    else:
        print(format_trials(frame, params=True))
        if gain := format_gain(frame):
            print(gain)
    return 0


def _cmd_spaces(args: argparse.Namespace) -> int:
    from eeg2bold.models import model_names
    from eeg2bold.search_spaces import describe_space

    models = args.models or model_names()
    spaces = {m: describe_space(m) for m in models}
    if args.json:
        print(json.dumps({m: [p.__dict__ for p in ps] for m, ps in spaces.items()}, indent=2))
        return 0
    for m, params in spaces.items():
        print(m)
        for p in params:
            print(f"    {p.name:<28} {p.describe()}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from eeg2bold.predict import PredictOptions, predict, summary_lines, write_outputs

    def say(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr)

    prediction = predict(
        args.model,
        args.recording,
        options_of(args, PredictOptions, PREDICT_FLAGS),
        mat=_mat_options(args),
        progress=not args.quiet,
        echo=say,
    )
    written = write_outputs(prediction, args.out, plot=not args.no_plot)
    if not args.quiet:
        print("\n".join(summary_lines(prediction, written)))
    return 0


def _cmd_stream(args: argparse.Namespace) -> int:
    from eeg2bold.live import StreamOptions, run_stream
    from eeg2bold.predict import ModelChoice, load_models

    def say(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    options = options_of(args, StreamOptions, STREAM_FLAGS)
    choice = options_of(args, ModelChoice, MODEL_CHOICE_FLAGS)
    models = load_models(args.model, protocol=choice.protocol, model=choice.model)
    return run_stream(models, options, out=args.out, echo=say)


def _cmd_report(args: argparse.Namespace) -> int:
    from eeg2bold.study.report import ReportOptions, build_report, write_report

    def say(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr)

    chosen = passed(args, "n_boot", "n_surrogates", "seed", "selection", "smooth_epochs")
    options = validated(ReportOptions, chosen, {k: "--" + k.replace("_", "-") for k in chosen})
    report = build_report(_run_folder(args.study), options=options, echo=say)
    written = write_report(report, args.out, args.json)
    if not args.quiet:
        print(f"report: {written['html'].resolve()}")
        if "json" in written:
            print(f"numbers: {written['json'].resolve()}")
    sweep_config = report.data.get("reproducibility", {}).get("study_config") or {}
    if (sweep_config.get("tracking") or {}).get("mlflow"):
        from eeg2bold.study.tracking import attach_report

        run = attach_report(sweep_config, list(written.values()))
        if not args.quiet:
            print(f"attached to MLflow: run {run} ('report') of the sweep's experiment")
    return 0


def _cmd_launch(args: argparse.Namespace) -> int:
    from eeg2bold.launch.jobs import write_job

    submit = getattr(args, "submit", False)
    job = write_job(args.target, args.config, output=args.output, submit=submit, **given(args))
    if job.staged:
        print(f"staged the study config for the job: {job.staged}", file=sys.stderr)
    if job.path is None:
        sys.stdout.write(job.text)
        return 0
    print(f"wrote {job.path}", file=sys.stderr)
    if job.job_id:
        print(job.job_id)  # the job id alone on stdout, for scripts
        print(
            f"submitted Slurm job {job.job_id}: `squeue -j {job.job_id}` while it runs, "
            f"`sacct -j {job.job_id}` after; its log is {job.log} in the folder sbatch ran in",
            file=sys.stderr,
        )
    return 0


def _parse_sets(items: Sequence[str] | None) -> dict[str, str]:
    """``KEY=VALUE`` pairs from repeated ``--set`` options (values are validated downstream)."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def _cmd_ingest(args: argparse.Namespace) -> int:
    """Shared tail of the ``ingest`` subcommands: resolve the config, run, print the report."""
    from eeg2bold.cli.ingest_options import build_config
    from eeg2bold.ingest import ingest
    from eeg2bold.ingest.layouts import make_layout

    options = {k: v for k, v in vars(args).items() if not k.startswith("cfg:")}
    mat = _mat_options(args) if "mat_variable" in options else None
    layout = make_layout(options.pop("layout_name"), mat=mat, **options)
    defaults = layout.timing_defaults()  # e.g. a table's marker/start columns
    config = build_config(
        given(args), config_file=args.config, defaults=defaults, require_timing=not defaults
    )
    report = ingest(
        layout,
        args.out,
        config=config,
        **passed(args, "on_error", "common"),
        overwrite=args.overwrite,
        name=args.name,
        progress=not args.quiet,
    )
    if not args.quiet:
        print("\n".join(report.lines()))
    return EXIT_ERROR if report.failed else 0


def _mat_options(args: argparse.Namespace) -> Any:
    from eeg2bold.ingest.specs import mat_options

    return mat_options(
        args.mat_variable, args.mat_sfreq, units=args.mat_units, channels=args.mat_channels
    )

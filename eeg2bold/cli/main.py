"""The ``eeg2bold`` command: argument parsing and output only; the work lives in the packages.

Errors a user can fix (:class:`~eeg2bold.errors.Eeg2BoldError`) are printed as one line with a
non-zero exit status; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from eeg2bold import __version__
from eeg2bold.cli.options import add_options, given
from eeg2bold.errors import ConfigError, Eeg2BoldError, Eeg2BoldWarning

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


def _cmd_simulate(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from eeg2bold.simulate import SimulationConfig
    from eeg2bold.simulate.write import simulate_to_store

    values: dict[str, Any] = given(args)  # the options generated from SimulationConfig
    values.update(_parse_sets(args.set))
    try:
        config = SimulationConfig(**values)
    except ValidationError as exc:
        raise ConfigError(_pydantic_one_line(exc)) from None
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
    from eeg2bold.run_folder.folder import default_train_folder
    from eeg2bold.storage import open_dataset
    from eeg2bold.training.config import build_config
    from eeg2bold.training.display import format_curve, format_epoch, format_fold, format_result
    from eeg2bold.training.run import train_calibration_curve, train_protocol

    dataset = open_dataset(args.dataset)
    protocol = "loso_calibrated" if args.calibration_minutes else args.protocol
    config = build_config(model=args.model, protocol=protocol, sets=_parse_sets(args.set))
    kind = "calibration" if args.calibration_minutes else config.protocol
    out = args.out or default_train_folder(config.model, kind, config.config_hash())
    quiet = args.quiet

    def on_epoch(epoch: Any) -> None:
        if not quiet:
            line = format_epoch(config.protocol, epoch, max_epochs=config.train.epochs)
            print(line, file=sys.stderr)

    def on_fold(outcome: Any) -> None:
        if not quiet:
            print(format_fold(config.protocol, outcome), file=sys.stderr)

    common = {"out_dir": out, "subjects": args.subjects, "resume": args.resume}
    if args.calibration_minutes:
        curve = train_calibration_curve(
            dataset,
            config,
            minutes=args.calibration_minutes,
            on_epoch=on_epoch,
            on_fold=on_fold,
            **common,
        )
        print(format_curve(curve))
        print(f"\nresults, model files and configs in {out}")
        if args.json:
            with open(args.json, "w") as f:
                from eeg2bold.run_folder.files import json_safe

                json.dump(json_safe([r.summary() for r in curve]), f, indent=2)
        return 0
    result = train_protocol(dataset, config, on_epoch=on_epoch, on_fold=on_fold, **common)
    print(format_result(result))
    print(f"\nresults, model files and config in {out}")
    if args.json:
        with open(args.json, "w") as f:
            from eeg2bold.run_folder.files import json_safe

            json.dump(json_safe(result.summary()), f, indent=2)
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from eeg2bold.models.catalog import describe_models, format_models

    models = describe_models()
    print(json.dumps(models, indent=2, default=str) if args.json else format_models(models))
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from eeg2bold.launch.config import load_study_config
    from eeg2bold.launch.sweep import run_sweep
    from eeg2bold.study.queries import best_trials, format_gain, format_trials, load_sweep

    config = load_study_config(args.config)
    if args.warm_start:
        config = config.with_warm_start(args.warm_start, top_k=args.warm_start_k)
    outcome = run_sweep(
        config,
        address=args.address,
        resume=args.resume,
        dry_run=args.dry_run,
        num_cpus=args.num_cpus,
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


def _cmd_trials(args: argparse.Namespace) -> int:
    from eeg2bold.study.queries import format_trials, load_sweep, trial_records, trials_table

    frame = trials_table(load_sweep(_run_folder(args.study)))
    if args.json:
        print(json.dumps(trial_records(frame), indent=2, default=str))
    else:
        print(format_trials(frame, params=args.params))
    return 0


def _cmd_best(args: argparse.Namespace) -> int:
    from eeg2bold.study.queries import (
        best_trials,
        format_gain,
        format_trials,
        load_sweep,
        trial_records,
    )

    frame = best_trials(
        load_sweep(_run_folder(args.study)),
        protocol=args.protocol,
        model=args.model,
        top=args.top,
        overall=args.overall,
    )
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
    from eeg2bold.predict import predict, summary_lines, write_outputs

    def say(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr)

    prediction = predict(
        args.model,
        args.recording,
        protocol=args.protocol,
        model=args.model_name,
        fmt=args.eeg_format,
        mat=_mat_options(args),
        bad_channels=args.bad or (),
        preprocess=not args.no_preprocess,
        check_amplitude=not args.no_amplitude_check,
        step_s=args.step,
        device=args.device,
        progress=not args.quiet,
        echo=say,
    )
    written = write_outputs(prediction, args.out, plot=not args.no_plot)
    if not args.quiet:
        print("\n".join(summary_lines(prediction, written)))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from eeg2bold.study.report import build_report, write_report

    def say(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr)

    report = build_report(
        _run_folder(args.study),
        n_boot=args.n_boot,
        n_surrogates=args.n_surrogates,
        seed=args.seed,
        echo=say,
    )
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
    import os

    from eeg2bold.launch.cluster import render_k8s, render_slurm, stage_study, staged_study_path
    from eeg2bold.launch.config import load_study_config
    from eeg2bold.run_folder.files import write_bytes

    config = load_study_config(args.config)
    render = render_slurm if args.target == "slurm" else render_k8s
    options = given(args)
    text = render(args.config, config=config, **options)
    if args.target == "slurm":  # the job reads a copy every node sees, not the file given
        staged = staged_study_path(config, options.get("stage_dir"))
        stage_study(config, staged)
        print(f"staged the study config for the job: {staged}", file=sys.stderr)
    submit = getattr(args, "submit", False)
    if submit and args.output in (None, "-"):
        args.output = os.path.splitext(staged)[0] + ".sbatch"
    if args.output is None or args.output == "-":
        sys.stdout.write(text)
        return 0
    write_bytes(args.output, text.encode(), what="the job file")
    if args.target == "slurm":
        os.chmod(args.output, 0o755)
    print(f"wrote {args.output}", file=sys.stderr)
    if submit:
        from eeg2bold.launch.cluster import submit_slurm

        job = submit_slurm(args.output)
        print(job)  # the job id alone on stdout, for scripts
        print(
            f"submitted Slurm job {job}: `squeue -j {job}` while it runs, `sacct -j {job}` "
            f"after; its log is {options.get('job_name') or 'eeg2bold-' + config.name}-{job}.log "
            "in the folder sbatch ran in",
            file=sys.stderr,
        )
    return 0


# Launch flags: flag -> option field of the renderer (type, help and default from there).
SLURM_FLAGS = {
    "--nodes": "nodes",
    "--cpus-per-node": "cpus_per_node",
    "--gpus-per-node": "gpus_per_node",
    "--time": "time",
    "--partition": "partition",
    "--account": "account",
    "--mem": "mem",
    "--job-name": "job_name",
    "--venv": "venv",
    "--setup": "setup",
    "--env-file": "env_file",
    "--env": "forward_env",
    "--port": "port",
    "--shared-nodes": "exclusive",
    "--no-dashboard": "dashboard",
    "--stage-dir": "stage_dir",
    "--image": "image",
    "--container": "container",
    "--container-bind": "container_bind",
}
K8S_FLAGS = {
    "--image": "image",
    "--workers": "workers",
    "--cpu": "cpu",
    "--memory": "memory",
    "--gpu": "gpu",
    "--namespace": "namespace",
    "--secret": "secret_name",
    "--name": "name",
    "--head-cpu": "head_cpu",
    "--head-memory": "head_memory",
    "--pvc": "pvc",
    "--pvc-mount": "pvc_mount",
    "--deadline": "active_deadline_s",
    "--image-pull-secret": "image_pull_secrets",
    "--node-selector": "node_selector",
    "--toleration": "tolerations",
    "--service-account": "service_account",
}


def _add_launch_parser(sub: Any) -> None:
    from eeg2bold.launch.cluster import K8sOptions, SlurmOptions

    p = sub.add_parser(
        "launch",
        help="render a Slurm script or a KubeRay manifest that runs a sweep on a Ray cluster",
        description="Render (never submit) what runs `eeg2bold sweep CONFIG --address auto` on "
        "a multi-node Ray cluster. The study config must use shared storage (an absolute path "
        "every node mounts, or an object store) and PostgreSQL or a journal file for Optuna. "
        "Credentials stay ${NAME} references, supplied at run time; Ray token authentication "
        "stays on. Existing clusters: `eeg2bold sweep CONFIG --address HOST:PORT`; Ray's "
        "cluster launcher: examples/cluster/ray-cluster.yaml.",
    )
    targets = p.add_subparsers(dest="target", metavar="TARGET", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("config", help="study config (YAML)")
    common.add_argument(
        "-o", "--output", metavar="FILE", help="write here instead of standard output"
    )
    add_options(common, SlurmOptions, {"--resume": "resume"})

    q = targets.add_parser(
        "slurm",
        parents=[common],
        help="an sbatch script: Ray head + workers in one job, then the sweep",
        description="One Slurm job: `ray start --head` on the first node (dashboard on "
        "127.0.0.1), `ray start --address` on the others via srun, a wait until every node "
        "has joined, the sweep driver, and teardown. Submit with `sbatch FILE`.",
    )
    add_options(
        q,
        SlurmOptions,
        SLURM_FLAGS,
        metavars=_METAVARS,
        repeatable=("--setup", "--env", "--container-bind"),
    )
    q.add_argument(
        "--submit",
        action="store_true",
        help="submit the job with `sbatch` (the script is written to -o FILE, by default "
        "beside the staged study config) and print its job id",
    )
    q.set_defaults(func=_cmd_launch)

    q = targets.add_parser(
        "k8s",
        parents=[common],
        help="a KubeRay RayJob manifest (plus a ConfigMap holding the study config)",
        description="A ConfigMap with the study config and a RayJob (ray.io/v1, KubeRay >= "
        "1.5.1) whose cluster runs the sweep and is deleted when it ends. Credentials come "
        "from a Secret (--secret) via envFrom. Apply with `kubectl apply -f FILE`.",
    )
    add_options(
        q,
        K8sOptions,
        K8S_FLAGS,
        metavars=_METAVARS,
        repeatable=("--image-pull-secret", "--node-selector", "--toleration"),
    )
    q.set_defaults(func=_cmd_launch)


def _minutes(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected minutes like 0,1,2,4, got {text!r}") from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected minutes >= 0 like 0,1,2,4, got {text!r}")
    return values


def _parse_sets(items: Sequence[str] | None) -> dict[str, str]:
    """``KEY=VALUE`` pairs from repeated ``--set`` options (values are validated downstream)."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def _pydantic_one_line(exc: Any) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "invalid option(s): " + "; ".join(parts)


def _cmd_ingest(args: argparse.Namespace) -> int:
    """Shared tail of the ``ingest`` subcommands: resolve the config, run, print the report."""
    from eeg2bold.cli.ingest_options import build_config
    from eeg2bold.ingest import ingest
    from eeg2bold.ingest.layouts import CONFIG_DEFAULTS, make_layout

    options = {k: v for k, v in vars(args).items() if not k.startswith("cfg:")}
    mat = _mat_options(args) if "mat_variable" in options else None
    layout = make_layout(options.pop("layout_name"), mat=mat, **options)
    defaults = CONFIG_DEFAULTS[args.layout_name]
    if args.layout_name == "table":  # timed as the manifest's marker/start columns say
        defaults = layout.timing_defaults()  # type: ignore[attr-defined]
    config = build_config(
        given(args),
        config_file=args.config,
        defaults=defaults,
        require_timing=args.layout_name == "files"
        or (args.layout_name == "table" and not defaults),
    )
    report = ingest(
        layout,
        args.out,
        config=config,
        on_error=args.on_error,
        common=args.common,
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


def _add_mat_arguments(q: Any) -> None:
    from eeg2bold.cli.options import split_names

    q.add_argument(
        "--mat-variable",
        metavar="NAME",
        help="MATLAB variable with the [channels x samples] array (a.b for fields)",
    )
    q.add_argument("--mat-sfreq", type=float, metavar="HZ", help="its sampling rate")
    q.add_argument(
        "--mat-units", choices=("V", "mV", "uV"), default="uV", help="its units (default uV)"
    )
    q.add_argument(
        "--mat-channels",
        type=split_names,
        metavar="NAMES",
        help="its channel names (default EEG001, EEG002, ...)",
    )


# Ingest flags by help group: flag -> IngestConfig field (type, help and default from there).
INGEST_FLAGS = {
    "EEG preprocessing": {
        "--sfreq": "eeg.sfreq",
        "--l-freq": "eeg.l_freq",
        "--h-freq": "eeg.h_freq",
        "--line-freq": "eeg.line_freq",
        "--reference": "eeg.reference",
        "--resample-method": "eeg.resample_method",
    },
    "channels": {
        "--keep": "channels.keep_types",
        "--channels": "channels.include",
        "--drop-channels": "channels.exclude",
        "--bad-channels": "channels.bad_channels",
        "--bads": "channels.bads",
        "--montage": "channels.montage",
    },
    "volume timing": {
        "--marker": "timing.markers",
        "--start": "timing.start_s",
        "--marker-mismatch": "timing.mismatch",
        "--crop-margin": "timing.crop_margin_s",
    },
    "BOLD": {
        "--tr": "bold.tr",
        "--atlas": "bold.atlas",
        "--atlas-labels": "bold.atlas_labels",
        "--atlas-threshold": "bold.atlas_threshold",
        "--rois": "bold.rois",
        "--no-motion": "bold.motion",
        "--global-signal": "bold.global_signal",
        "--no-detrend": "bold.detrend",
        "--no-standardize": "bold.standardize",
        "--high-pass": "bold.high_pass",
        "--low-pass": "bold.low_pass",
    },
}
_METAVARS = {
    "--venv": "DIR",
    "--env-file": "FILE",
    "--setup": "CMD",
    "--env": "NAME",
    "--secret": "NAME",
    "--pvc": "CLAIM",
    "--pvc-mount": "DIR",
    "--deadline": "SECONDS",
    "--stage-dir": "DIR",
    "--container-bind": "DIR",
    "--image-pull-secret": "NAME",
    "--node-selector": "KEY=VALUE",
    "--toleration": "KEY[=VALUE]:EFFECT",
    "--service-account": "NAME",
    "--sfreq": "HZ",
    "--l-freq": "HZ",
    "--h-freq": "HZ",
    "--line-freq": "HZ",
    "--high-pass": "HZ",
    "--low-pass": "HZ",
    "--reference": "REF",
    "--montage": "NAME",
    "--keep": "TYPES",
    "--start": "SECONDS",
    "--crop-margin": "SECONDS",
    "--tr": "SECONDS",
    "--atlas": "ATLAS",
    "--atlas-labels": "FILE",
    "--atlas-threshold": "PERCENT",
}
SIMULATE_FLAGS = {
    f"--{name}": name
    for name in ("subjects", "minutes", "runs", "channels", "sfreq", "tr", "rois", "snr", "seed")
} | {"--name": "name"}


def _add_ingest_parser(sub: Any) -> None:
    """``eeg2bold ingest {files,cwl,bids,natview}``: options generated from IngestConfig."""
    from pathlib import Path

    from eeg2bold.ingest.config import IngestConfig

    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("run control")
    g.add_argument("--config", metavar="FILE", help="IngestConfig as YAML/JSON (flags win)")
    g.add_argument("--name", help="dataset name (default: the store's file name)")
    g.add_argument(
        "--common",
        choices=("exact", "intersect"),
        default="exact",
        help="channel/ROI sets that differ between runs: refuse listing the differences "
        "(exact, default) or keep the names all runs share (intersect)",
    )
    g.add_argument(
        "--on-error",
        choices=("skip", "abort"),
        default="skip",
        help="a failing run: report it and go on (skip, default) or stop (abort)",
    )
    g.add_argument("--overwrite", action="store_true", help="replace runs whose content differs")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    for title, flags in INGEST_FLAGS.items():
        add_options(common.add_argument_group(title), IngestConfig, flags, metavars=_METAVARS)

    p = sub.add_parser(
        "ingest",
        help="ingest real EEG-fMRI recordings into a dataset store",
        description="Read EEG and BOLD, preprocess, time volumes on the EEG clock and write "
        "each run atomically; runs already stored from the same inputs are skipped.",
    )
    layouts = p.add_subparsers(dest="layout_name", metavar="LAYOUT", required=True)

    def layout(name: str, **kw: Any) -> Any:
        q = layouts.add_parser(name, parents=[common], **kw)
        q.add_argument("out", help="output store (folder ending in .zarr, or an s3:// URL)")
        q.set_defaults(func=_cmd_ingest)
        return q

    q = layout(
        "files",
        help="one run from explicit files",
        description="One run: an EEG file (EEGLAB, BrainVision, EDF/BDF, FIF, MATLAB) and a "
        "4-D BOLD NIfTI or a region table (TSV/CSV with a header).",
    )
    q.add_argument("--eeg", required=True, metavar="FILE", help="EEG recording")
    q.add_argument("--bold", required=True, metavar="FILE", help="4-D NIfTI or region table")
    q.add_argument("--subject", default="sub-01", help="subject name (default sub-01)")
    q.add_argument("--run", default="run-1", help="run name (default run-1)")
    q.add_argument(
        "--confounds",
        metavar="FILE",
        help="motion parameters (SPM rp_*.txt) or fMRIPrep confounds TSV",
    )
    q.add_argument(
        "--eeg-format",
        choices=("eeglab", "brainvision", "edf", "bdf", "fif", "mat"),
        help="EEG format when the file name does not say it",
    )
    _add_mat_arguments(q)

    q = layout(
        "table",
        help="many runs from a manifest (CSV/TSV, one row per run)",
        description="A manifest with columns eeg, bold, subject, run and optional confounds, "
        "tr, start, marker, format; relative paths resolve against the manifest's folder. "
        "Resumable and idempotent like every layout; one summary at the end.",
    )
    q.add_argument("manifest", type=Path, help="CSV or TSV manifest, one row per run")

    q = layout(
        "cwl",
        help="CWL eyes-open/eyes-closed folders",
        description="ROOT/<subject>/CWL_Data/{eeg/in-scan/*.set, mri/epi_normalized/*.nii, "
        "mri/epi_motionparams/rp_*.txt}; volumes from the 'mri' markers by default.",
    )
    q.add_argument("root", type=Path, help="folder holding one folder per subject")

    q = layout(
        "bids",
        help="BIDS EEG + fMRIPrep derivatives",
        description="BIDS raw EEG (mne-bids) paired with fMRIPrep *_desc-preproc_bold.nii.gz "
        "and *_desc-confounds_timeseries.tsv; volumes from 'R128' markers by default.",
    )
    q.add_argument("root", type=Path, help="BIDS root")
    q.add_argument(
        "--derivatives",
        type=Path,
        metavar="DIR",
        help="fMRIPrep output folder (default ROOT/derivatives/fmriprep)",
    )
    q.add_argument("--space", help="fMRIPrep output space, e.g. MNI152NLin2009cAsym")
    q.add_argument("--task", action="append", help="only this task (repeatable)")
    q.add_argument("--subject", action="append", help="only this subject (repeatable)")

    q = layout(
        "natview",
        help="NATVIEW BrainVision EEG + per-run ROI CSV",
        description="ROOT/sub-*/[ses-*/]eeg/*.vhdr with one ROI table <entities>*.csv per run "
        "(columns: ROIs, Nvol, Tstart); volumes start at Tstart, one per TR.",
    )
    q.add_argument("root", type=Path, help="dataset root")
    q.add_argument(
        "--roi-dir", type=Path, metavar="DIR", help="where the ROI tables are (default ROOT)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eeg2bold",
        description="Predict deep-brain BOLD from scalp EEG: datasets, models, sweeps, reports.",
    )
    parser.add_argument("--version", action="version", version=f"eeg2bold {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show full tracebacks instead of one-line errors"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "simulate",
        help="simulate an EEG-fMRI dataset with known ground truth",
        description="Write a simulated dataset (EEG, ROI BOLD, ground truth) to a Zarr store.",
    )
    p.add_argument("out", help="output store (folder ending in .zarr, or s3://bucket/path.zarr)")
    from eeg2bold.simulate.config import SimulationConfig

    add_options(p, SimulationConfig, SIMULATE_FLAGS, required=("subjects", "minutes"))
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="any other simulation option, e.g. --set envelope_timescale_s=20 (repeatable; "
        "see the README for the list)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace runs whose content differs")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser(
        "inspect",
        help="summarise a dataset store",
        description="Subjects, runs, durations, channels, ROIs, sampling rate, TR and QC flags.",
    )
    p.add_argument("dataset", help="dataset store (path or URL)")
    p.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")
    p.add_argument(
        "--verify", action="store_true", help="re-read every run and check its content hash"
    )
    p.add_argument(
        "--repair",
        action="store_true",
        help="remove temporary writes of crashed writers (never a live writer's)",
    )
    p.set_defaults(func=_cmd_inspect)

    p = sub.add_parser(
        "train",
        help="train one configuration on every fold of a protocol",
        description="Fit a model on all folds of a protocol; print per-fold and per-ROI val/test "
        "r; save model files, resume checkpoints and a results table.",
    )
    p.add_argument("dataset", help="dataset store (path or URL)")
    p.add_argument("--model", required=True, help="model name (see `eeg2bold models`)")
    p.add_argument(
        "--protocol",
        default="within",
        help="within (default), within_run, leave_one_run_out, loso or loso_calibrated",
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="hyperparameter or setting, e.g. --set lr=3e-4 --set window_s=20 "
        "--set model.n_branches=8 (sections: model, data, train, loss, protocol)",
    )
    p.add_argument(
        "--calibration-minutes",
        type=_minutes,
        metavar="M,M,...",
        help="the calibration curve: loso_calibrated at each amount of the held-out subject's "
        "data (e.g. 0,1,2,4,8; one fixed test block), one trial per amount",
    )
    p.add_argument("--subjects", nargs="+", metavar="SUBJECT", help="only these folds")
    p.add_argument("--out", help="output folder (default eeg2bold_runs/MODEL-PROTOCOL-HASH)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.add_argument("--json", metavar="FILE", help="also write the scores as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-epoch progress")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "sweep",
        help="run a hyperparameter sweep (Ray Tune + Optuna) from a study config",
        description="Every protocol × model of the study config gets an Optuna study; trials "
        "run as Ray Tune trials (folds as actors), locally or on an existing Ray cluster.",
    )
    p.add_argument("config", help="study config (YAML)")
    p.add_argument(
        "--address", help="existing Ray cluster: 'auto' or HOST:PORT (default: start Ray here)"
    )
    p.add_argument("--resume", action="store_true", help="continue an interrupted sweep")
    p.add_argument(
        "--dry-run", action="store_true", help="validate and print the resolved plan only"
    )
    p.add_argument("--num-cpus", type=float, help="CPUs of a local Ray instance (default: all)")
    p.add_argument(
        "--warm-start",
        metavar="SWEEP",
        help="enqueue the best configurations of each arm of an earlier sweep (its folder or "
        "study config) after the defaults (the study config's warm_start, given here)",
    )
    p.add_argument(
        "--warm-start-k",
        type=int,
        metavar="K",
        help="how many of each arm's best (default: warm_start.top_k's default)",
    )
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("trials", help="list the trials of a sweep (Optuna storage)")
    p.add_argument("study", help="sweep folder (or its study config)")
    p.add_argument("--params", action="store_true", help="show every sampled parameter")
    p.add_argument("--json", action="store_true", help="machine-readable JSON")
    p.set_defaults(func=_cmd_trials)

    p = sub.add_parser("best", help="best trials per protocol and model (by validation r)")
    p.add_argument("study", help="sweep folder (or its study config)")
    p.add_argument("--protocol", help="only this protocol")
    p.add_argument("--model", help="only this model")
    p.add_argument("--top", type=int, default=1, help="trials per protocol and model")
    p.add_argument(
        "--overall",
        action="store_true",
        help="one ranking across protocols and models (their val r are not comparable)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable JSON")
    p.set_defaults(func=_cmd_best)

    p = sub.add_parser("spaces", help="print the search spaces (per model, plus shared ones)")
    p.add_argument("models", nargs="*", help="models to show (default: all)")
    p.add_argument("--json", action="store_true", help="machine-readable JSON")
    p.set_defaults(func=_cmd_spaces)

    p = sub.add_parser(
        "report",
        help="write the generalisation report of a sweep (HTML, optional JSON)",
        description="Dataset and sweep summary, per-ROI test r with bootstrap CIs and chance "
        "bands, LOSO vs within per subject, predicted vs true traces, interpretation figures "
        "and a reproducibility block, in one self-contained HTML file.",
    )
    p.add_argument("study", help="sweep folder (or its study config)")
    p.add_argument("-o", "--out", default="report.html", help="HTML file (default report.html)")
    p.add_argument("--json", metavar="FILE", help="also write every number as JSON")
    p.add_argument(
        "--n-boot", type=int, default=10000, help="bootstrap resamples and sign flips (10000)"
    )
    p.add_argument(
        "--n-surrogates", type=int, default=1000, help="circular-shift surrogates per fold (1000)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the resampling (default 0)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser(
        "predict",
        help="predict ROI BOLD from an EEG-only recording with a trained model",
        description="Apply a model file, a train output folder or a sweep's best trial of a "
        "protocol to a recording (any format ingest reads), with the preprocessing recorded at "
        "training time; writes a TSV of times and ROI BOLD, a JSON sidecar and a plot.",
    )
    p.add_argument("model", help="model file (models/*.pt), train output folder or sweep folder")
    p.add_argument("recording", help="EEG recording (.vhdr, .set, .edf, .bdf, .fif, .mat)")
    p.add_argument("-o", "--out", required=True, help="output table (e.g. bold.tsv)")
    p.add_argument("--protocol", help="for a sweep or train folder: which protocol's best trial")
    p.add_argument("--model-name", help="for a sweep or train folder: only this model")
    p.add_argument("--step", type=float, help="seconds between predictions (default: the TR)")
    p.add_argument("--bad", nargs="+", metavar="CHANNEL", help="bad channels to interpolate")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument(
        "--eeg-format",
        choices=("eeglab", "brainvision", "edf", "bdf", "fif", "mat"),
        help="EEG format when the file name does not say it",
    )
    _add_mat_arguments(p)
    p.add_argument(
        "--no-preprocess",
        action="store_true",
        help="the recording is already preprocessed like the training data",
    )
    p.add_argument(
        "--no-amplitude-check",
        action="store_true",
        help="predict even if the EEG scale is far from the training data's",
    )
    p.add_argument("--no-plot", action="store_true", help="do not write the PNG plot")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(func=_cmd_predict)

    _add_launch_parser(sub)

    p = sub.add_parser("models", help="list the registered models and their hyperparameters")
    p.add_argument("--json", action="store_true", help="machine-readable JSON")
    p.set_defaults(func=_cmd_models)
    _add_ingest_parser(sub)
    return parser


_PYTHON_SHOW_WARNING: Any = None
EXIT_BROKEN_PIPE = 141  # what a shell reports for a process ended by SIGPIPE (128 + 13)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot raise again."""
    import os

    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Our own warnings as one line (others as Python shows them)."""
    if issubclass(category, Eeg2BoldWarning):
        print(f"eeg2bold: warning: {message}", file=file or sys.stderr)
    else:
        _PYTHON_SHOW_WARNING(message, category, filename, lineno, file, line)


def main(argv: Sequence[str] | None = None) -> int:
    import warnings

    if warnings.showwarning is not _show_warning:
        global _PYTHON_SHOW_WARNING
        _PYTHON_SHOW_WARNING = warnings.showwarning
        warnings.showwarning = _show_warning
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except BrokenPipeError:  # `eeg2bold trials … | head`: the reader has what it wanted
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except Eeg2BoldError as exc:
        if args.debug:
            raise
        print(f"eeg2bold: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("eeg2bold: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if args.debug:
            raise
        print(
            f"eeg2bold: internal error: {type(exc).__name__}: {exc} (rerun with --debug for the "
            "traceback and please report it)",
            file=sys.stderr,
        )
        return EXIT_ERROR

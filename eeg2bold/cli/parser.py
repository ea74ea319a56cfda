"""The argument parser: options generated from the typed configs where they own them
(:mod:`.options`), each command wired to its function in :mod:`.commands`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from eeg2bold import __version__
from eeg2bold.cli.commands import (
    _cmd_best,
    _cmd_ingest,
    _cmd_inspect,
    _cmd_launch,
    _cmd_models,
    _cmd_predict,
    _cmd_report,
    _cmd_simulate,
    _cmd_spaces,
    _cmd_stream,
    _cmd_sweep,
    _cmd_train,
    _cmd_trials,
)
from eeg2bold.cli.flags import (
    BEST_FLAGS,
    METAVARS,
    MODEL_CHOICE_FLAGS,
    PREDICT_FLAGS,
    STREAM_FLAGS,
    SWEEP_FLAGS,
    TRAIN_FLAGS,
)
from eeg2bold.cli.options import add_options, owned_option
from eeg2bold.eeg_formats import FILE_FORMATS
from eeg2bold.launch.config import SweepOptions
from eeg2bold.live.options import StreamOptions
from eeg2bold.predict.options import ModelChoice, PredictOptions
from eeg2bold.study.options import BestOptions
from eeg2bold.training.options import TrainRunOptions

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
    from eeg2bold.launch.k8s import K8sOptions
    from eeg2bold.launch.slurm import SlurmOptions

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


INGEST = "eeg2bold.ingest.engine:ingest"
FILE_RUN = "eeg2bold.ingest.layouts.files:FileRun"
REPORT_OPTIONS = "eeg2bold.study.report:ReportOptions"


def _add_mat_arguments(q: Any) -> None:
    from eeg2bold.cli.options import split_names

    q.add_argument(
        "--mat-variable",
        metavar="NAME",
        help="MATLAB variable with the [channels x samples] array (a.b for fields)",
    )
    q.add_argument("--mat-sfreq", type=float, metavar="HZ", help="its sampling rate")
    owned_option(
        q,
        "--mat-units",
        choices=("V", "mV", "uV"),
        owner="eeg2bold.ingest.specs:MatOptions",
        name="units",
        help="its units",
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

    from eeg2bold.ingest.config import IngestConfig

    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("run control")
    g.add_argument("--config", metavar="FILE", help="IngestConfig as YAML/JSON (flags win)")
    g.add_argument("--name", help="dataset name (default: the store's file name)")
    owned_option(
        g,
        "--common",
        choices=("exact", "intersect"),
        owner=INGEST,
        help="channel/ROI sets that differ between runs: refuse listing the differences "
        "(exact) or keep the names all runs share (intersect)",
    )
    owned_option(
        g,
        "--on-error",
        choices=("skip", "abort"),
        owner=INGEST,
        help="a failing run: report it and go on (skip) or stop (abort)",
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
    owned_option(q, "--subject", owner=FILE_RUN, help="subject name")
    owned_option(q, "--run", owner=FILE_RUN, help="run name")
    q.add_argument(
        "--confounds",
        metavar="FILE",
        help="motion parameters (SPM rp_*.txt) or fMRIPrep confounds TSV",
    )
    q.add_argument(
        "--eeg-format",
        choices=FILE_FORMATS,
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
    add_options(p, TrainRunOptions, TRAIN_FLAGS, metavars=METAVARS, many=("--subjects",))
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="hyperparameter or setting, e.g. --set lr=3e-4 --set window_s=20 "
        "--set model.n_branches=8 (sections: model, data, train, loss, protocol)",
    )
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
    add_options(p, SweepOptions, SWEEP_FLAGS, metavars=METAVARS)
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("trials", help="list the trials of a sweep (Optuna storage)")
    p.add_argument("study", help="sweep folder (or its study config)")
    p.add_argument("--params", action="store_true", help="show every sampled parameter")
    p.add_argument("--json", action="store_true", help="machine-readable JSON")
    p.set_defaults(func=_cmd_trials)

    p = sub.add_parser("best", help="best trials per protocol and model (by validation r)")
    p.add_argument("study", help="sweep folder (or its study config)")
    add_options(p, BestOptions, BEST_FLAGS, metavars=METAVARS)
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
    for flag in ("--n-boot", "--n-surrogates", "--seed"):
        owned_option(p, flag, type=int, owner=REPORT_OPTIONS)  # help: the field's description
    owned_option(p, "--selection", metavar="RULE", owner=REPORT_OPTIONS)
    owned_option(p, "--smooth-epochs", type=int, metavar="K", owner=REPORT_OPTIONS)
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
    add_options(p, PredictOptions, PREDICT_FLAGS, metavars=METAVARS, many=("--bad",))
    _add_mat_arguments(p)
    p.add_argument("--no-plot", action="store_true", help="do not write the PNG plot")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser(
        "stream",
        help="the live twin: predict ROI BOLD from a live EEG stream (Lab Streaming Layer)",
        description="Connect to an LSL EEG stream, check it against the model as predict "
        "checks a file, and send the predicted BOLD of every output out as an LSL stream "
        "(timestamps of the EEG each update ends at) and to a TSV written line by line.",
    )
    p.add_argument("model", help="model file (models/*.pt), train output folder or sweep folder")
    p.add_argument(
        "-o", "--out", help="also write the updates to this .tsv or .parquet (and a .json)"
    )
    add_options(p, ModelChoice, MODEL_CHOICE_FLAGS, metavars=METAVARS)
    add_options(p, StreamOptions, STREAM_FLAGS, metavars=METAVARS)
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=_cmd_stream)

    _add_launch_parser(sub)

    p = sub.add_parser("models", help="list the registered models and their hyperparameters")
    p.add_argument("--json", action="store_true", help="machine-readable JSON")
    p.set_defaults(func=_cmd_models)
    _add_ingest_parser(sub)
    return parser

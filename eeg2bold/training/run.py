"""``eeg2bold train``: one configuration on every fold of its protocol, in this process (no
Ray), one fold after another — a thin driver of :class:`~eeg2bold.training.engine.ProtocolRun`.

With a run folder (``out_dir``) every fold leaves its rows, model file, predictions and resume
state there (see :mod:`eeg2bold.run_folder`), so ``resume=True`` continues an interrupted run
where it stopped and keeps the folds that finished.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from eeg2bold.protocols import protocol_label
from eeg2bold.provenance import environment
from eeg2bold.run_folder import RunFolder
from eeg2bold.storage import Dataset
from eeg2bold.training.config import ExperimentConfig
from eeg2bold.training.engine import EpochOutcome, FoldOutcome, ProtocolResult, ProtocolRun
from eeg2bold.training.options import CURVE_PROTOCOL, TrainRunOptions


def train_run(
    dataset: Dataset,
    config: ExperimentConfig,
    options: TrainRunOptions,
    *,
    on_epoch: Callable[[EpochOutcome], None] | None = None,
    on_fold: Callable[[FoldOutcome], None] | None = None,
) -> ProtocolResult | list[ProtocolResult]:
    """``eeg2bold train``: ``config`` (from :meth:`TrainRunOptions.experiment`) on every fold
    of its protocol, or its calibration curve, into :meth:`TrainRunOptions.folder`."""
    common: dict[str, Any] = {
        "out_dir": options.folder(config),
        "subjects": options.subjects,
        "resume": options.resume,
        "on_epoch": on_epoch,
        "on_fold": on_fold,
    }
    if options.calibration_minutes:
        return train_calibration_curve(
            dataset, config, minutes=options.calibration_minutes, **common
        )
    return train_protocol(dataset, config, **common)


def train_protocol(
    dataset: Dataset,
    config: ExperimentConfig,
    *,
    out_dir: str | Path | None = None,
    subjects: Sequence[str] | None = None,
    resume: bool = False,
    on_epoch: Callable[[EpochOutcome], None] | None = None,
    on_fold: Callable[[FoldOutcome], None] | None = None,
) -> ProtocolResult:
    """Fit ``config`` on every fold of its protocol (or the folds of ``subjects``)."""
    folder = RunFolder(out_dir) if out_dir is not None else None
    run = ProtocolRun(dataset=dataset, config=config, folder=folder, subjects=subjects)
    run.refuse_existing(resume=resume)
    if folder is not None:
        _record_trial(folder, run, dataset)
    result = run.run_sequential(resume=resume, on_epoch=on_epoch, on_fold=on_fold)
    if folder is not None:  # where each fold's windows came from (it changes their order)
        paths = {f.label: f.data_path for f in result.folds}
        _record_trial(folder, run, dataset, data_paths=paths)
    return result


def _record_trial(
    folder: RunFolder,
    run: ProtocolRun,
    dataset: Dataset,
    *,
    data_paths: dict[str, str] | None = None,
) -> None:
    """The manifest lists every configuration trained into the folder (a calibration curve
    puts several there); the first one's config stands for the folder. ``data_paths``: per
    fold, ``memory`` or ``stream`` (known once the folds ran)."""
    manifest = folder.read_manifest() if folder.kind == "train" else {}
    trials = list(manifest.get("trials", []))
    trial: dict[str, Any] = {
        "trial": run.trial,
        "config_hash": run.config_hash,
        "protocol": protocol_label(run.config.protocol, run.config.protocol_options),
        "config": run.config.model_dump(mode="json"),
    }
    if data_paths is not None:
        trial["data_path"] = data_paths
    mine = [i for i, t in enumerate(trials) if t["trial"] == run.trial]
    if mine:  # recorded before (a resume, or its folds just ran): in its place
        trials[mine[0]] = trial
    else:
        trials.append(trial)
    folder.write_manifest(
        "train",
        {
            "trial": trials[0]["trial"],
            "config_hash": trials[0]["config_hash"],
            "config": trials[0]["config"],
            "trials": trials,
            "dataset": dataset.url,
            "subjects": [f.subject for f in run.folds],
            "provenance": environment(),
        },
    )


def train_calibration_curve(
    dataset: Dataset,
    config: ExperimentConfig,
    *,
    minutes: Sequence[float],
    out_dir: str | Path | None = None,
    subjects: Sequence[str] | None = None,
    resume: bool = False,
    on_epoch: Callable[[EpochOutcome], None] | None = None,
    on_fold: Callable[[FoldOutcome], None] | None = None,
) -> list[ProtocolResult]:
    """``config`` under ``loso_calibrated`` at each amount of the held-out subject's data (one
    trial per amount, one fixed test block; 0 = LOSO on that block), into one run folder."""
    results = []
    for m in sorted(float(x) for x in minutes):
        options = {**config.protocol_options, "calibration_s": 60.0 * m}
        point = config.model_copy(update={"protocol": CURVE_PROTOCOL, "protocol_options": options})
        results.append(
            train_protocol(
                dataset,
                point,
                out_dir=out_dir,
                subjects=subjects,
                resume=resume,
                on_epoch=on_epoch,
                on_fold=on_fold,
            )
        )
    return results

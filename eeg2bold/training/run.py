"""``eeg2bold train``: one configuration on every fold of its protocol, in this process (no
Ray), one fold after another — a thin driver of :class:`~eeg2bold.training.engine.ProtocolRun`.

With a run folder (``out_dir``) every fold leaves its rows, model file, predictions and resume
state there (see :mod:`eeg2bold.run_folder`), so ``resume=True`` continues an interrupted run
where it stopped and keeps the folds that finished.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from eeg2bold.provenance import environment
from eeg2bold.run_folder import RunFolder
from eeg2bold.storage import Dataset
from eeg2bold.training.config import ExperimentConfig
from eeg2bold.training.engine import EpochOutcome, FoldOutcome, ProtocolResult, ProtocolRun


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
        folder.write_manifest(
            "train",
            {
                "trial": run.trial,
                "config_hash": run.config_hash,
                "config": run.config.model_dump(mode="json"),
                "dataset": dataset.url,
                "subjects": [f.subject for f in run.folds],
                "provenance": environment(),
            },
        )
    return run.run_sequential(resume=resume, on_epoch=on_epoch, on_fold=on_fold)

"""What a finished fold leaves behind, as data: the model card and the prediction arrays.

The run folder (:mod:`eeg2bold.run_folder`) writes them: ``models/<trial>-fold<k>.pt`` (format
``eeg2bold.model/1``: the best weights and everything needed to apply them to new EEG) and
``predictions/<trial>-fold<k>.npz`` (val and test predictions and truth at the volume times,
in BOLD units, for reports and surrogate chance levels).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from eeg2bold.storage import Dataset
from eeg2bold.training.config import ExperimentConfig
from eeg2bold.training.fit import FoldTrainer


def model_card(trainer: FoldTrainer, dataset: Dataset, config: ExperimentConfig) -> dict[str, Any]:
    """Everything ``predict`` needs to apply the best weights to new EEG."""
    data = trainer.data
    return {
        "model": config.model,
        "model_params": trainer.model_params,
        "spec": {
            "n_channels": data.spec.n_channels,
            "n_rois": data.spec.n_rois,
            "sfreq": data.spec.sfreq,
            "window_s": data.spec.window_s,
            "n_out": data.spec.n_out,
        },
        "sample_config": config.data.model_dump(mode="json"),
        "channels": list(data.channels),
        "units": dataset.info.eeg.units,
        "eeg": json.dumps(dataset.info.eeg.to_attrs()),
        "bold": json.dumps(dataset.info.bold.to_attrs()),  # the TR predictions default to
        "outputs": list(data.outputs),
        "normaliser": data.normaliser.state(),
        "state_dict": trainer.model.state_dict(),
        "dataset": {
            "name": dataset.info.name,
            "url": dataset.url,
            "preprocessing": json.dumps(dataset.info.preprocessing),
        },
        "protocol": config.protocol,
        "fold": {
            "index": data.fold.index,
            "subject": data.fold.subject,
            "held_out": data.fold.held_out,
        },
        "best_epoch": trainer.best_epoch,
        "config": json.dumps(config.model_dump(mode="json")),
        "config_hash": config.config_hash(),
    }


def prediction_arrays(trainer: FoldTrainer) -> dict[str, np.ndarray]:
    """Val and test truth and predictions of the best weights (``<split>_times``, ``_truth``,
    ``_pred``, ``_segment``, ``_run``) plus the outputs, the fold's subject and the runs."""
    arrays: dict[str, np.ndarray] = {
        "outputs": np.asarray(trainer.data.outputs),
        "subject": np.asarray(trainer.data.fold.subject),
        "runs": np.asarray([str(k) for k in trainer.data.samples.runs]),
    }
    for split in ("val", "test"):
        for key, value in trainer.predictions(split).items():
            arrays[f"{split}_{key}"] = value
    return arrays

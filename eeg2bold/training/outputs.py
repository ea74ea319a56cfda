"""What a finished fold leaves behind: a model file and its stitched predictions.

The model file (``models/<stem>.pt``, format ``eeg2bold.model/1``) holds the best weights and
everything needed to apply them to new EEG; the predictions file (``predictions/<stem>.npz``)
holds val and test predictions and truth at the volume times, in BOLD units, for reports and
surrogate chance levels. Both are written atomically (local) or as one object (object stores)
and load without unpickling (``torch.load(weights_only=True)``, ``np.load``).
"""

from __future__ import annotations

import io
import json
import os
import uuid
from typing import Any

import fsspec
import numpy as np
import torch
from fsspec.implementations.local import LocalFileSystem

from eeg2bold.storage import Dataset
from eeg2bold.training.checkpoint import MODEL_FORMAT
from eeg2bold.training.config import ExperimentConfig
from eeg2bold.training.fit import FoldTrainer


def model_card(trainer: FoldTrainer, dataset: Dataset, config: ExperimentConfig) -> dict[str, Any]:
    """Everything ``predict`` needs to apply the best weights to new EEG."""
    data = trainer.data
    return {
        "format": MODEL_FORMAT,
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
        "fold": {"index": data.fold.index, "subject": data.fold.subject},
        "best_epoch": trainer.best_epoch,
        "config": json.dumps(config.model_dump(mode="json")),
    }


def _publish(root: str, relative: str, payload: bytes) -> str:
    fs, base = fsspec.core.url_to_fs(root)
    path = f"{base.rstrip('/')}/{relative}"
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    if isinstance(fs, LocalFileSystem):
        tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
        with open(tmp, "wb") as f:
            f.write(payload)
        os.replace(tmp, path)
    else:
        with fs.open(path, "wb") as f:
            f.write(payload)
    return path if "://" not in root else f"{root.rstrip('/')}/{relative}"


def write_fold_outputs(
    trainer: FoldTrainer, *, dataset: Dataset, config: ExperimentConfig, root: str, stem: str
) -> dict[str, str]:
    """Write ``models/<stem>.pt`` and ``predictions/<stem>.npz`` under ``root``."""
    buffer = io.BytesIO()
    torch.save(model_card(trainer, dataset, config), buffer)
    model = _publish(root, f"models/{stem}.pt", buffer.getvalue())
    arrays: dict[str, np.ndarray] = {
        "outputs": np.asarray(trainer.data.outputs),
        "subject": np.asarray(trainer.data.fold.subject),
        "runs": np.asarray([str(k) for k in trainer.data.samples.runs]),
    }
    for split in ("val", "test"):
        for key, value in trainer.predictions(split).items():
            arrays[f"{split}_{key}"] = value
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]  # numpy's stub: kwds
    predictions = _publish(root, f"predictions/{stem}.npz", buffer.getvalue())
    return {"model": model, "predictions": predictions}

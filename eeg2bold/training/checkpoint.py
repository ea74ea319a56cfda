"""Checkpoint files: atomic writes, ``weights_only`` loads, and the trained-model card.

Two kinds of file:

- a *resume* state (``FoldTrainer.state_dict``), rewritten after every epoch;
- a *model file* (format ``eeg2bold.model/1``): best weights plus everything needed to apply
  the model to new EEG — model name and hyperparameters, data spec, channel list, sampling
  rate, outputs, normalisation statistics and the dataset's preprocessing record.

Both contain only tensors and plain containers, so ``torch.load(weights_only=True)`` reads
them and nothing from outside is unpickled.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import torch

from eeg2bold.errors import Eeg2BoldError

MODEL_FORMAT = "eeg2bold.model/1"


def save_atomic(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` to a temporary name in the same folder, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``) with a one-line error on failure."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise Eeg2BoldError(f"{path}: no such checkpoint") from None
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        raise Eeg2BoldError(f"{path}: not a readable eeg2bold checkpoint ({exc})") from None
    if not isinstance(obj, dict):
        raise Eeg2BoldError(f"{path}: not an eeg2bold checkpoint")
    return obj


def load_model_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A trained-model card; refuses files of another format."""
    card = load(path)
    if card.get("format") != MODEL_FORMAT:
        raise Eeg2BoldError(f"{path}: not an eeg2bold model file (format {card.get('format')!r})")
    return card

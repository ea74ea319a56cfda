"""Resume states of a fit (``FoldTrainer.state_dict``): bytes that hold only tensors and plain
containers, so ``torch.load(weights_only=True)`` reads them and nothing is unpickled.

Model files (the best weights plus their card) are :mod:`eeg2bold.run_folder.cards`.
"""

from __future__ import annotations

import io
import os
from typing import Any

import torch

from eeg2bold.errors import Eeg2BoldError
from eeg2bold.run_folder.cards import load_refusal
from eeg2bold.run_folder.files import read_bytes, write_bytes


def dumps(state: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def loads(blob: bytes, *, where: str) -> dict[str, Any]:
    """A resume state from bytes (``weights_only``), with a one-line error naming ``where``."""
    try:
        obj = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        reason = load_refusal(exc)
        raise Eeg2BoldError(f"{where}: not a readable eeg2bold checkpoint ({reason})") from None
    if not isinstance(obj, dict):
        raise Eeg2BoldError(f"{where}: not an eeg2bold checkpoint")
    return obj


def save_atomic(state: dict[str, Any], path: str | os.PathLike[str]) -> str:
    """Publish a resume state at ``path`` (whole or not at all)."""
    return write_bytes(path, dumps(state), what="a checkpoint")


def load(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A resume state from a file, with a one-line error on failure."""
    blob = read_bytes(path)
    if blob is None:
        raise Eeg2BoldError(f"{path}: no such checkpoint")
    return loads(blob, where=str(path))

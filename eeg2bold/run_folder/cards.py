"""Model files (format ``eeg2bold.model/1``): the best weights of one fold plus everything
needed to apply them to new EEG — model name and hyperparameters, data spec, channel list,
sampling rate, units, outputs, normalisation statistics, sample geometry and the training
dataset's preprocessing record.

The card holds only tensors and plain containers, so ``torch.load(weights_only=True)`` reads
it and nothing from outside is unpickled. :func:`card_bytes` and :func:`read_card` are the
writer's and the reader's halves of one format; ``training`` fills the card, ``predict`` and
``study`` read it.
"""

from __future__ import annotations

import io
import os
from typing import Any

from eeg2bold.errors import Eeg2BoldError
from eeg2bold.run_folder.files import read_bytes

MODEL_FORMAT = "eeg2bold.model/1"
CARD_KEYS = (
    "model",
    "model_params",
    "spec",
    "sample_config",
    "channels",
    "units",
    "outputs",
    "normaliser",
    "state_dict",
    "dataset",
)


class ModelFileError(Eeg2BoldError):
    """A file that is not a readable eeg2bold model file (one line naming it)."""


def card_bytes(card: dict[str, Any]) -> bytes:
    """The bytes of a model file holding ``card`` (checked for the keys a reader needs)."""
    import torch

    missing = [k for k in CARD_KEYS if k not in card]
    if missing:
        raise ValueError(f"a model card needs {missing}")
    buffer = io.BytesIO()
    torch.save({"format": MODEL_FORMAT, **card}, buffer)
    return buffer.getvalue()


def read_card(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A model card, loaded with ``weights_only=True``; a one-line error otherwise."""
    import torch

    blob = read_bytes(path)
    if blob is None:
        raise ModelFileError(f"{path}: no such model file")
    try:
        card = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for foreign or unsafe files
        raise ModelFileError(f"{path}: not an eeg2bold model file ({_one_line(exc)})") from None
    if not isinstance(card, dict) or card.get("format") != MODEL_FORMAT:
        found = card.get("format") if isinstance(card, dict) else type(card).__name__
        raise ModelFileError(
            f"{path}: not an eeg2bold model file (format {found!r}, expected {MODEL_FORMAT!r}; "
            "resume checkpoints under checkpoints/ cannot be applied, model files under models/ "
            "can)"
        )
    missing = [k for k in CARD_KEYS if k not in card]
    if missing:
        raise ModelFileError(f"{path}: model file lacks {missing}")
    return card


def _one_line(exc: BaseException, limit: int = 160) -> str:
    return load_refusal(exc, limit=limit)


def load_refusal(exc: BaseException, *, limit: int = 160) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, in one line, without PyTorch's
    advice to load it unsafely (``weights_only=False`` runs whatever code the file holds:
    eeg2bold never suggests it)."""
    import re

    text = " ".join(str(exc).split()) or type(exc).__name__
    unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if unsafe or "Weights only load failed" in text:
        what = f" ({unsafe.group(1)})" if unsafe else ""
        return (
            f"it holds Python objects{what} beyond tensors and plain containers, which "
            "eeg2bold never unpickles"
        )
    return text if len(text) <= limit else text[: limit - 3] + "..."

"""Training losses: a weighted sum of (1 − Pearson r), MSE and a CLIP contrastive term.

The weights are hyperparameters (searchable). The r term matches the reported metric; MSE keeps
the scale anchored; CLIP aligns EEG and BOLD embeddings for models that provide them (``twin``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from eeg2bold.models import ModelOutputs
from eeg2bold.strict_config import StrictConfig


class LossWeights(StrictConfig):
    """Weights of the loss terms; a term with weight 0 is not computed."""

    r: float = Field(
        1.0, ge=0, description="Weight of (1 − Pearson r), r per output over the batch."
    )
    mse: float = Field(0.5, ge=0, description="Weight of the mean squared error.")
    clip: float = Field(0.1, ge=0, description="Weight of the CLIP loss (models with embeddings).")
    clip_temperature: float = Field(0.1, gt=0, le=10, description="CLIP softmax temperature.")


def pearson_loss(pred: Tensor, target: Tensor, eps: float = 1e-8) -> Tensor:
    """1 − mean over outputs of Pearson r, each computed over batch × time ([B, R, T])."""
    p = pred.transpose(0, 1).reshape(pred.shape[1], -1)
    t = target.transpose(0, 1).reshape(target.shape[1], -1)
    p = p - p.mean(dim=1, keepdim=True)
    t = t - t.mean(dim=1, keepdim=True)
    r = (p * t).sum(dim=1) / torch.sqrt((p * p).sum(dim=1) * (t * t).sum(dim=1) + eps)
    return 1.0 - r.mean()


def clip_loss(eeg_embedding: Tensor, bold_embedding: Tensor, temperature: float) -> Tensor:
    """Symmetric InfoNCE: each EEG window should pick out its own BOLD among the batch's."""
    a = F.normalize(eeg_embedding, dim=-1)
    b = F.normalize(bold_embedding, dim=-1)
    logits = a @ b.T / temperature
    labels = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def total_loss(out: ModelOutputs, target: Tensor, weights: LossWeights) -> tuple[Tensor, dict]:
    """The weighted loss and its parts (floats, for logging). Computed in float32."""
    pred = out.pred.float()
    target = target.float()
    parts: dict[str, Tensor] = {}
    if weights.r > 0:
        parts["r"] = pearson_loss(pred, target)
    if weights.mse > 0:
        parts["mse"] = F.mse_loss(pred, target)
    if weights.clip > 0 and out.eeg_embedding is not None and out.bold_embedding is not None:
        parts["clip"] = clip_loss(
            out.eeg_embedding.float(), out.bold_embedding.float(), weights.clip_temperature
        )
    if not parts:
        raise ValueError("every loss weight is zero")
    loss = sum(getattr(weights, k) * v for k, v in parts.items())
    assert isinstance(loss, Tensor)
    return loss, {k: float(v.detach()) for k, v in parts.items()}

"""Raw EEG → model input, with one owner.

A model never sees raw EEG: training fits a per-channel normaliser on the fold's training
samples and, with ``data.align: euclidean``, re-centres each subject's EEG first. The
:class:`InputMap` is that transform as one float32 affine map. Training's batches, ``predict``,
the report's interpretation and the live stream all apply it, so none of them can drift from
what the model was trained on (the report once computed Haufe patterns on unaligned EEG).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from eeg2bold.training.alignment import Alignment


@dataclass(frozen=True)
class Normaliser:
    """Affine maps fitted on training data: EEG per channel, targets per output."""

    eeg_mean: np.ndarray
    eeg_scale: np.ndarray
    target_mean: np.ndarray
    target_scale: np.ndarray

    def state(self) -> dict[str, Tensor]:
        return {k: torch.as_tensor(v, dtype=torch.float64) for k, v in self.__dict__.items()}

    @classmethod
    def from_state(cls, state: dict[str, Tensor]) -> Normaliser:
        return cls(**{k: np.asarray(v.cpu().numpy(), dtype=np.float64) for k, v in state.items()})


class InputMap:
    """x ↦ (x − mean) / scale, or with an alignment x ↦ A (x − m) normalised, folded into one map
    (A / scale) x − (A m + mean) / scale; applied in float32 to [..., C, T] tensors."""

    def __init__(self, normaliser: Normaliser, alignment: Alignment | None = None):
        self.alignment = alignment
        norm = normaliser
        self.matrix: Tensor | None = None
        if alignment is None:
            self.mean = torch.as_tensor(norm.eeg_mean[:, None].astype(np.float32))
            self.scale = torch.as_tensor(norm.eeg_scale[:, None].astype(np.float32))
        else:
            a = alignment
            offset = -(a.matrix @ a.mean + norm.eeg_mean) / norm.eeg_scale
            self.matrix = torch.as_tensor(a.matrix / norm.eeg_scale[:, None], dtype=torch.float32)
            self.offset = torch.as_tensor(offset[:, None], dtype=torch.float32)

    def to(self, device: torch.device | str) -> InputMap:
        """The same map with its tensors on ``device`` (self, moved)."""
        if self.matrix is None:
            self.mean, self.scale = self.mean.to(device), self.scale.to(device)
        else:
            self.matrix, self.offset = self.matrix.to(device), self.offset.to(device)
        return self

    def __call__(self, eeg: Tensor, *, inplace: bool = False) -> Tensor:
        """The model input of raw float32 EEG [..., C, T]; ``inplace`` reuses a fresh batch's
        memory where the map allows (the unaligned case)."""
        if self.matrix is None:
            mean, scale = self.mean.to(eeg.device), self.scale.to(eeg.device)
            return eeg.sub_(mean).div_(scale) if inplace else (eeg - mean) / scale
        return torch.matmul(self.matrix.to(eeg.device), eeg) + self.offset.to(eeg.device)

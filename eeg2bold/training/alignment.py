"""Euclidean alignment (He and Wu 2019): each subject's EEG re-centred so that its mean spatial
covariance is the identity.

Subjects differ in head shape, electrode placement and impedances: the same sources reach the
scalp through a different mixing. Whitening each subject by the inverse square root of its own
mean covariance removes the part of that mixing a covariance can see, without any label: the
statistics come from a subject's EEG alone, never from its BOLD. The fold engine computes them
from a subject's training windows; for a subject with none (the held-out subject of LOSO) from
its own unlabelled EEG, as ``predict`` does for a new recording.

Sums are accumulated in float64 over chunks, so no float64 copy of a recording is made.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

CHUNK = 65536  # samples per float64 chunk
# eigenvalues below this fraction of the largest are treated as absent directions (e.g. the
# one an average reference removes): left at zero instead of amplified into noise
RANK_TOL = 1e-10


def coverage(starts: np.ndarray, n_window: int, n_samples: int) -> np.ndarray:
    """[n_samples] bool: the EEG samples inside at least one window starting at ``starts``."""
    cover = np.zeros(n_samples + 1, dtype=np.int64)
    np.add.at(cover, np.asarray(starts, dtype=np.int64), 1)
    np.add.at(cover, np.asarray(starts, dtype=np.int64) + n_window, -1)
    return np.cumsum(cover[:-1]) > 0


class Moments:
    """Streaming first and second moments of multichannel signals (float64 sums)."""

    def __init__(self, n_channels: int):
        self.n = 0
        self.sum = np.zeros(n_channels)
        self.sumsq = np.zeros(n_channels)
        self.cross = np.zeros((n_channels, n_channels))

    def add(self, eeg: Any, mask: np.ndarray | None = None, *, cross: bool = False) -> None:
        """Add the samples of ``eeg`` [C, N] where ``mask`` (default all), chunk by chunk;
        ``eeg`` may also be a run read block by block from the store (``.blocks()``)."""
        if hasattr(eeg, "blocks"):
            for start, block in eeg.blocks():
                part = None if mask is None else mask[start : start + block.shape[1]]
                if part is None or part.any():
                    self.add(block, part, cross=cross)
            return
        idx = np.flatnonzero(mask) if mask is not None else None
        total = eeg.shape[1] if idx is None else idx.size
        for lo in range(0, total, CHUNK):
            part = eeg[:, lo : lo + CHUNK] if idx is None else eeg[:, idx[lo : lo + CHUNK]]
            x = part.astype(np.float64)
            self.n += x.shape[1]
            self.sum += x.sum(axis=1)
            self.sumsq += np.einsum("ij,ij->i", x, x)
            if cross:
                self.cross += x @ x.T

    @property
    def mean(self) -> np.ndarray:
        return self.sum / max(self.n, 1)

    @property
    def std(self) -> np.ndarray:
        var = self.sumsq / max(self.n, 1) - self.mean**2
        return np.sqrt(np.maximum(var, 0.0))

    @property
    def covariance(self) -> np.ndarray:
        mean = self.mean
        return self.cross / max(self.n, 1) - np.outer(mean, mean)


def inverse_sqrt(matrix: np.ndarray) -> np.ndarray:
    """R^(-1/2) of a symmetric positive semi-definite matrix (absent directions stay 0)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    keep = values > RANK_TOL * max(float(values.max()), 0.0)
    scale = np.zeros_like(values)
    scale[keep] = 1.0 / np.sqrt(values[keep])
    return (vectors * scale) @ vectors.T


@dataclass(frozen=True)
class Alignment:
    """x ↦ matrix @ (x − mean): one subject's (or recording's) Euclidean alignment."""

    mean: np.ndarray  # [C]
    matrix: np.ndarray  # [C, C]
    n_samples: int
    source: str  # which EEG the statistics came from ("train", "unlabelled", "recording")

    def apply(self, eeg: np.ndarray) -> np.ndarray:
        """The aligned EEG as float32 [C, N] (float64 arithmetic chunk by chunk): the reference
        definition; model input is made by :class:`~eeg2bold.training.inputs.InputMap`."""
        out = np.empty(eeg.shape, dtype=np.float32)
        for lo in range(0, eeg.shape[1], CHUNK):
            x = eeg[:, lo : lo + CHUNK].astype(np.float64) - self.mean[:, None]
            out[:, lo : lo + CHUNK] = self.matrix @ x
        return out


def euclidean_alignment(
    parts: Iterable[tuple[Any, np.ndarray | None]], *, source: str
) -> Alignment:
    """The alignment of the EEG samples in ``parts`` — (eeg [C, N], mask or None) per run."""
    moments: Moments | None = None
    for eeg, mask in parts:
        moments = moments or Moments(eeg.shape[0])
        moments.add(eeg, mask, cross=True)
    if moments is None or moments.n < 2:
        raise ValueError("Euclidean alignment needs EEG samples")
    return Alignment(
        mean=moments.mean,
        matrix=inverse_sqrt(moments.covariance),
        n_samples=moments.n,
        source=source,
    )

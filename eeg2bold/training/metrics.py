"""The one metric (DESIGN.md): Pearson r per ROI at native volume times, Fisher-z summaries.

Predictions of overlapping windows are stitched onto one time line and sampled at the volume
times of the evaluation segment; r is computed per ROI over each contiguous segment. A subject's
segments (e.g. the test blocks of several runs) are combined by Fisher z weighted by n − 3, the
inverse variance of z. Summaries across ROIs or subjects average Fisher z and transform back.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

_R_CLIP = 1 - 1e-7


def pearson_r(y_true: ArrayLike, y_pred: ArrayLike) -> np.ndarray:
    """Pearson r per row of ``[R, n]`` arrays (or one value for 1-D input).

    A constant row (zero variance) has no defined correlation: NaN is returned for it, and
    callers decide (the fit loop treats a NaN score as a failure, never as a number).
    """
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.shape != p.shape:
        raise ValueError(f"shapes differ: truth {t.shape} vs prediction {p.shape}")
    squeeze = t.ndim == 1
    t, p = np.atleast_2d(t), np.atleast_2d(p)
    tc = t - t.mean(axis=-1, keepdims=True)
    pc = p - p.mean(axis=-1, keepdims=True)
    denom = np.sqrt((tc**2).sum(axis=-1) * (pc**2).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(denom > 0, (tc * pc).sum(axis=-1) / np.where(denom > 0, denom, 1), np.nan)
    r = np.clip(r, -1.0, 1.0)
    return r[0] if squeeze else r


def fisher_z(r: ArrayLike) -> np.ndarray:
    """arctanh, clipped just inside ±1 so a perfect r stays finite."""
    return np.arctanh(np.clip(np.asarray(r, dtype=np.float64), -_R_CLIP, _R_CLIP))


def fisher_mean(r: ArrayLike, *, weights: ArrayLike | None = None, axis: int | None = None):
    """Average correlations through Fisher z (optionally weighted) and transform back."""
    z = fisher_z(r)
    if weights is None:
        return np.tanh(np.mean(z, axis=axis))
    w = np.broadcast_to(np.asarray(weights, dtype=np.float64), z.shape)
    return np.tanh(np.sum(z * w, axis=axis) / np.sum(w, axis=axis))


def combine_segments(rs: Sequence[ArrayLike], ns: Sequence[int]) -> np.ndarray:
    """Per-ROI r of several segments combined by Fisher z weighted by n − 3.

    A segment whose r is undefined (NaN: a constant prediction or truth there) does not
    count; an ROI with no defined segment is NaN — never a made-up 0 that could rank.
    """
    r = np.asarray([np.asarray(x, dtype=np.float64) for x in rs])
    w = np.maximum(np.asarray(ns, dtype=np.float64) - 3, 1.0)
    w = np.broadcast_to(w[:, None] if r.ndim == 2 else w, r.shape)
    defined = np.isfinite(r)
    z = np.where(defined, fisher_z(np.where(defined, r, 0.0)), 0.0)
    total = np.sum(np.where(defined, w, 0.0), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, np.tanh(np.sum(z * w, axis=0) / total), np.nan)


def stitch(window_values: ArrayLike, window_times: ArrayLike, query_times: ArrayLike) -> np.ndarray:
    """Stitch overlapping windowed predictions onto one time line, sampled at ``query_times``.

    ``window_values`` [N, R, K] holds each window's prediction at ``window_times`` [N, K]
    (seconds). Predictions for the same instant from different windows are averaged; the
    time line is then linearly interpolated at ``query_times`` [V] → [R, V]. With K = 1
    (seq2one at each volume time) this is the identity on the volume grid.
    """
    vals = np.asarray(window_values, dtype=np.float64)
    times = np.asarray(window_times, dtype=np.float64)
    query = np.asarray(query_times, dtype=np.float64)
    if vals.ndim != 3 or times.shape != (vals.shape[0], vals.shape[2]):
        raise ValueError(
            f"expected values [N, R, K] and times [N, K], got {vals.shape}, {times.shape}"
        )
    flat_t = np.round(times.reshape(-1), 6)
    grid, inverse = np.unique(flat_t, return_inverse=True)
    n_roi = vals.shape[1]
    flat_v = vals.transpose(1, 0, 2).reshape(n_roi, -1)
    sums = np.zeros((n_roi, grid.size))
    counts = np.bincount(inverse, minlength=grid.size).astype(np.float64)
    for r in range(n_roi):
        sums[r] = np.bincount(inverse, weights=flat_v[r], minlength=grid.size)
    mean = sums / counts
    if grid.size == 1:
        return np.repeat(mean, query.size, axis=1)
    return np.stack([np.interp(query, grid, mean[r]) for r in range(n_roi)])

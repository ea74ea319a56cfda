"""``ridge``: lagged filter-bank log band power → closed-form ridge regression.

The classical EEG-to-BOLD baseline every deep model must beat: band power per channel and
band, in short bins across the window (so the regression can learn an HRF-shaped weighting
over the last ``lag_s`` seconds), standardised, then ridge with the penalty chosen inside the
training data by blocked cross-validation over contiguous stretches of time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import Tensor

from eeg2bold.models.base import (
    ClosedFormModel,
    DataSpec,
    ModelParams,
    SuggestTrial,
    TrainingBatch,
    register_model,
)

BAND_SETS: dict[str, tuple[tuple[float, float], ...]] = {
    # delta, theta, alpha, beta, gamma
    "classic": ((1.0, 4.0), (4.0, 8.0), (8.0, 13.0), (13.0, 30.0), (30.0, 45.0)),
    # the same range with alpha and beta split (individual alpha peaks, low/high beta)
    "fine": (
        (1.0, 4.0),
        (4.0, 8.0),
        (8.0, 10.5),
        (10.5, 13.0),
        (13.0, 20.0),
        (20.0, 30.0),
        (30.0, 45.0),
    ),
}
_LOG_EPS = 1e-10  # floor of the band power before the log (unit-scale EEG: PSD ~ 1e-2)
_MIN_SCALE = 1e-8  # features with a smaller training SD are left unscaled (constant)


class RidgeParams(ModelParams):
    """Hyperparameters of :class:`Ridge`; the ridge penalty itself is chosen internally."""

    band_set: Literal["classic", "fine"] = Field(
        "classic",
        description=(
            "Frequency bands: 'classic' = delta 1-4, theta 4-8, alpha 8-13, beta 13-30, "
            "gamma 30-45 Hz; 'fine' splits alpha at 10.5 Hz and beta at 20 Hz. Bands at or "
            "above 0.9 x Nyquist are dropped, upper edges capped at Nyquist."
        ),
    )
    bin_s: float = Field(
        2.0,
        ge=0.25,
        le=10.0,
        description=(
            "Length of one lag bin in seconds: band power is a Hann-windowed periodogram of "
            "each bin (frequency resolution 1/bin_s Hz). Capped at the window length."
        ),
    )
    lag_s: float = Field(
        20.0,
        gt=0.0,
        le=60.0,
        description=(
            "Lags covered, in seconds before the window's end: the most recent "
            "floor(lag_s / bin_s) bins (at least one), limited to the window length."
        ),
    )
    log10_alpha_min: float = Field(
        -2.0, ge=-8.0, le=12.0, description="Smallest ridge penalty of the grid (log10)."
    )
    log10_alpha_max: float = Field(
        7.0, ge=-8.0, le=12.0, description="Largest ridge penalty of the grid (log10)."
    )
    n_alphas: int = Field(
        37, ge=1, le=200, description="Penalties in the log-spaced grid (37: quarter decades)."
    )
    cv_folds: int = Field(
        5,
        ge=2,
        le=20,
        description=(
            "Blocked cross-validation folds for choosing the penalty: whole segments are "
            "grouped into at most this many folds; with a single segment, contiguous blocks."
        ),
    )
    cv_gap: int = Field(
        10,
        ge=0,
        le=10_000,
        description=(
            "Samples left out of training on each side of a validation block when folds cut "
            "through one segment (autocorrelation guard; 10 samples = 20 s at TR 2 s)."
        ),
    )

    @model_validator(mode="after")
    def _check_grid(self) -> RidgeParams:
        if self.log10_alpha_min > self.log10_alpha_max:
            raise ValueError("log10_alpha_min must not exceed log10_alpha_max")
        return self


def blocked_folds(
    segment: np.ndarray, *, n_folds: int, gap: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Train/validation index pairs that never split autocorrelated stretches at random.

    With two or more segment ids, whole segments form the folds (sorted ids, split into at
    most ``n_folds`` contiguous groups), so no segment contributes to both sides of a fold.
    With one segment, the samples (assumed in time order) are cut into ``n_folds``
    contiguous blocks, and ``gap`` samples on each side of the validation block are dropped
    from training. Folds with an empty side are skipped.
    """
    segment = np.asarray(segment).reshape(-1)
    n = segment.size
    index = np.arange(n)
    ids = np.unique(segment)
    folds: list[tuple[np.ndarray, np.ndarray]] = []
    if ids.size >= 2:
        for group in np.array_split(ids, min(n_folds, ids.size)):
            val = np.isin(segment, group)
            folds.append((index[~val], index[val]))
    else:
        for block in np.array_split(index, min(n_folds, n)):
            if block.size == 0:
                continue
            lo, hi = block[0] - gap, block[-1] + gap
            train = index[(index < lo) | (index > hi)]
            folds.append((train, block))
    return [(tr, va) for tr, va in folds if tr.size > 0 and va.size > 0]


def _usable_bands(
    band_set: str, *, sfreq: float, freqs: np.ndarray
) -> tuple[list[tuple[float, float]], np.ndarray]:
    """Bands below Nyquist and the [n_bands, n_freqs] averaging matrix over FFT bins."""
    nyq = sfreq / 2
    bands = [(lo, min(hi, nyq)) for lo, hi in BAND_SETS[band_set] if lo < 0.9 * nyq]
    matrix = np.zeros((len(bands), freqs.size))
    for k, (lo, hi) in enumerate(bands):
        members = (freqs >= lo) & (freqs < hi) & (freqs > 0)
        if not members.any():  # band narrower than the resolution: nearest non-DC bin
            centre = (lo + hi) / 2
            members = np.zeros(freqs.size, dtype=bool)
            members[1 + int(np.argmin(np.abs(freqs[1:] - centre)))] = True
        matrix[k, members] = 1.0 / members.sum()
    return bands, matrix


@register_model("ridge")
class Ridge(ClosedFormModel):
    """Lagged filter-bank log band power + ridge: the baseline every deep model must beat.

    Features: for each channel, the Hann periodogram of each ``bin_s`` bin among the most
    recent ``lag_s`` seconds of the window (PSD density, mean removed per bin, as
    ``scipy.signal.periodogram(window="hann")``), averaged over the FFT bins of each band,
    log-transformed; flattened as [channel, band, lag] (lag 0 = the bin ending at the
    window's end). Standardised with training means/SDs; one weight vector and intercept per
    (ROI, output step), each with its own penalty from blocked cross-validation. Everything
    fitted is a buffer, so ``state_dict`` round-trips; before fitting the output is zero.
    """

    Params = RidgeParams
    params: RidgeParams
    taper: Tensor
    band_matrix: Tensor
    feature_mean: Tensor
    feature_scale: Tensor
    weight: Tensor
    intercept: Tensor
    alpha: Tensor

    def __init__(self, spec: DataSpec, params: RidgeParams | None = None):
        super().__init__(spec, params)
        p = self.params
        n_times = spec.n_times
        self.n_bin = max(2, min(n_times, int(round(p.bin_s * spec.sfreq))))
        self.n_lags = max(1, min(int(math.floor(p.lag_s / p.bin_s + 1e-9)), n_times // self.n_bin))
        freqs = np.fft.rfftfreq(self.n_bin, d=1.0 / spec.sfreq)
        self.bands, band_matrix = _usable_bands(p.band_set, sfreq=spec.sfreq, freqs=freqs)
        window = np.hanning(self.n_bin + 1)[:-1]  # periodic Hann, as scipy.signal's "hann"
        # one-sided PSD density (as scipy.signal.periodogram with scaling="density")
        fold = np.full(freqs.size, 2.0)
        fold[0] = 1.0
        if self.n_bin % 2 == 0:
            fold[-1] = 1.0
        density = fold / (spec.sfreq * np.sum(window**2))
        self.register_buffer("taper", torch.tensor(window, dtype=torch.float32), persistent=False)
        self.register_buffer(
            "band_matrix",
            torch.tensor(band_matrix * density[None, :], dtype=torch.float32),
            persistent=False,
        )
        self.n_features = spec.n_channels * len(self.bands) * self.n_lags
        n_targets = spec.n_rois * spec.n_out
        self.register_buffer("feature_mean", torch.zeros(self.n_features))
        self.register_buffer("feature_scale", torch.ones(self.n_features))
        self.register_buffer("weight", torch.zeros(n_targets, self.n_features))
        self.register_buffer("intercept", torch.zeros(n_targets))
        self.register_buffer("alpha", torch.full((n_targets,), float("nan")))

    @property
    def alpha_grid(self) -> np.ndarray:
        p = self.params
        return np.logspace(p.log10_alpha_min, p.log10_alpha_max, p.n_alphas)

    @property
    def is_fitted(self) -> bool:
        return bool(torch.isfinite(self.alpha).all())

    def features(self, eeg: Tensor) -> Tensor:
        """[B, C, T] EEG → [B, C·bands·lags] log band power (unstandardised)."""
        batch, n_channels, _ = eeg.shape
        span = self.n_lags * self.n_bin
        x = eeg[..., -span:].to(self.taper.dtype)
        x = x.reshape(batch, n_channels, self.n_lags, self.n_bin)
        x = (x - x.mean(dim=-1, keepdim=True)).mul_(self.taper)
        power = torch.view_as_real(torch.fft.rfft(x, dim=-1)).square().sum(dim=-1)
        bands = power @ self.band_matrix.T  # [B, C, lags, freqs] -> [B, C, lags, bands]
        logp = torch.log(bands + _LOG_EPS)
        logp = logp.flip(2).transpose(2, 3)  # [B, C, bands, lags], lag 0 = most recent
        return logp.reshape(batch, -1)

    def forward(self, eeg: Tensor) -> Tensor:
        z = (self.features(eeg) - self.feature_mean) / self.feature_scale
        out = z @ self.weight.T + self.intercept
        return out.reshape(eeg.shape[0], self.spec.n_rois, self.spec.n_out)

    @torch.no_grad()
    def fit_closed_form(self, batches: Iterable[TrainingBatch]) -> dict[str, Any]:
        """Standardise, pick each target's penalty by blocked CV, refit on all samples.

        Returns the chosen penalties [R][n_out] (``alpha``), their pooled out-of-fold MSE and
        Pearson r (``cv_mse``, ``cv_r``), the grid, and the fold and sample counts.
        """
        feats, targets, segments = [], [], []
        for batch in batches:
            feats.append(self.features(batch.eeg.to(self.taper.device)).cpu().double())
            targets.append(batch.bold.reshape(batch.bold.shape[0], -1).cpu().double())
            segments.append(batch.segment.reshape(-1).cpu())
        if not feats:
            raise ValueError("ridge: no training batches")
        x = torch.cat(feats)
        y = torch.cat(targets)
        segment = torch.cat(segments).numpy()
        if y.shape[1] != self.weight.shape[0]:
            raise ValueError(
                f"ridge: targets have {y.shape[1]} values per sample, expected "
                f"{self.weight.shape[0]} (n_rois x n_out)"
            )
        mean = x.mean(dim=0)
        scale = x.std(dim=0, correction=0)
        scale = torch.where(scale < _MIN_SCALE, torch.ones_like(scale), scale)
        z = (x - mean) / scale
        grid = torch.tensor(self.alpha_grid, dtype=torch.float64)

        folds = (
            blocked_folds(segment, n_folds=self.params.cv_folds, gap=self.params.cv_gap)
            if len(segment) >= 4
            else []
        )
        n_targets = y.shape[1]
        sse = torch.zeros(grid.numel(), n_targets, dtype=torch.float64)
        sums = {k: torch.zeros_like(sse) for k in ("p", "pp", "py")}
        sy = torch.zeros(n_targets, dtype=torch.float64)
        syy = torch.zeros_like(sy)
        n_val = 0
        for train, val in folds:
            basis, s2, coef, x_mean, y_mean = _ridge_path(z[train], y[train])
            proj = (z[val] - x_mean) @ basis  # [n_val, k]
            yv = y[val]
            for a, alpha in enumerate(grid):
                pred = proj @ (coef / (s2 + alpha)[:, None]) + y_mean
                sse[a] += (pred - yv).square().sum(dim=0)
                sums["p"][a] += pred.sum(dim=0)
                sums["pp"][a] += pred.square().sum(dim=0)
                sums["py"][a] += (pred * yv).sum(dim=0)
            sy += yv.sum(dim=0)
            syy += yv.square().sum(dim=0)
            n_val += len(val)

        if n_val:
            best = sse.argmin(dim=0)
            chosen = grid[best]
            cols = torch.arange(n_targets)
            cv_mse = (sse[best, cols] / n_val).tolist()
            cov = sums["py"][best, cols] - sums["p"][best, cols] * sy / n_val
            var_p = sums["pp"][best, cols] - sums["p"][best, cols].square() / n_val
            var_y = syy - sy.square() / n_val
            cv_r = (cov / (var_p * var_y).clamp_min(1e-300).sqrt()).tolist()
        else:  # too few samples to cross-validate: the grid's geometric middle
            chosen = torch.full((n_targets,), float(grid[grid.numel() // 2]), dtype=torch.float64)
            cv_mse = cv_r = [float("nan")] * n_targets

        basis, s2, coef, _, y_mean = _ridge_path(z, y)
        weight = basis @ (coef / (s2[:, None] + chosen[None, :]))  # [F, targets]
        self.feature_mean.copy_(mean.float())
        self.feature_scale.copy_(scale.float())
        self.weight.copy_(weight.T.float())
        self.intercept.copy_(y_mean.float())
        self.alpha.copy_(chosen.float())

        def per_roi(values: Any) -> list[list[float]]:
            arr = np.asarray(values, dtype=float).reshape(self.spec.n_rois, self.spec.n_out)
            return arr.tolist()

        return {
            "alpha": per_roi(chosen.numpy()),
            "cv_mse": per_roi(cv_mse),
            "cv_r": per_roi(cv_r),
            "alpha_grid": grid.tolist(),
            "n_folds": len(folds),
            "n_samples": int(len(y)),
            "n_features": self.n_features,
        }

    @classmethod
    def search_space(cls, trial: SuggestTrial) -> dict[str, Any]:
        return {
            "band_set": trial.suggest_categorical("band_set", ["classic", "fine"]),
            "bin_s": trial.suggest_categorical("bin_s", [1.0, 2.0, 4.0]),
            "lag_s": trial.suggest_float("lag_s", 4.0, 20.0),
        }


def _ridge_path(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Centre, then decompose once so every penalty costs one small product.

    Returns ``basis`` [F, k], eigenvalues ``s2`` [k], ``coef`` [k, M] and the means, such
    that the ridge weights for penalty a are ``basis @ (coef / (s2 + a))``. The smaller Gram
    matrix is decomposed: X'X (primal) when samples outnumber features, else XX' (dual).
    """
    x_mean, y_mean = x.mean(dim=0), y.mean(dim=0)
    xc, yc = x - x_mean, y - y_mean
    if xc.shape[0] >= xc.shape[1]:
        s2, vecs = torch.linalg.eigh(xc.T @ xc)
        basis = vecs
        coef = vecs.T @ (xc.T @ yc)
    else:
        s2, vecs = torch.linalg.eigh(xc @ xc.T)
        basis = xc.T @ vecs
        coef = vecs.T @ yc
    return basis, s2.clamp_min(0.0), coef, x_mean, y_mean

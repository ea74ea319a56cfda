"""Statistics across subjects: confidence intervals, chance levels, tests and FDR.

Honest numbers need three things beside the mean r (DESIGN.md, "Study"): how uncertain it is
(bootstrap across subjects, the unit of replication), what chance would give on the same
autocorrelated signals (circularly shifted predictions, not shuffled samples — shuffling
destroys the autocorrelation and makes chance look far too narrow), and whether the effect
survives testing many ROIs (Benjamini–Hochberg). Every summary of r goes through Fisher z,
as in :mod:`eeg2bold.training.metrics`; the tests here are checked against scipy.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import ndtr

from eeg2bold.errors import Eeg2BoldError
from eeg2bold.training.metrics import combine_segments, fisher_mean, fisher_z

Alternative = Literal["two-sided", "greater", "less"]
_ALTERNATIVES = ("two-sided", "greater", "less")
N_BOOT = 10000  # bootstrap resamples and random sign flips
N_SURROGATES = 1000  # circular-shift surrogates per fold: p down to 1/1001
MIN_SHIFT_S = 30.0  # a surrogate's shift: beyond the BOLD autocorrelation


class SurrogateError(Eeg2BoldError, ValueError):
    """A surrogate chance level cannot be computed for these predictions (segment too short)."""


def _check_alternative(alternative: str) -> None:
    if alternative not in _ALTERNATIVES:
        raise ValueError(f"alternative must be one of {_ALTERNATIVES}, got {alternative!r}")


def _finite(values: ArrayLike, name: str = "values") -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 0 or x.shape[0] == 0:
        raise ValueError(f"{name}: need at least one subject (got shape {x.shape})")
    if not np.isfinite(x).all():
        raise ValueError(f"{name}: NaN or infinite entries; drop those subjects first")
    return x


# -- confidence intervals ---------------------------------------------------------------------


def fisher_mean_over_subjects(samples: np.ndarray) -> np.ndarray:
    """The default bootstrap statistic: Fisher-z mean over axis 1 (subjects), back in r."""
    return np.asarray(fisher_mean(samples, axis=1))


def bootstrap_ci(
    values: ArrayLike,
    *,
    n_boot: int = N_BOOT,
    level: float = 0.95,
    seed: int = 0,
    statistic: Callable[[np.ndarray], np.ndarray] = fisher_mean_over_subjects,
) -> tuple[np.ndarray | float, np.ndarray | float]:
    """Percentile bootstrap CI across subjects, the unit of replication.

    ``values`` has subjects on axis 0 (``[S]``, ``[S, R]`` or any ``[S, ...]``); whole subjects
    are resampled with replacement (so paired columns, e.g. ``[S, 2, R]`` for within and LOSO,
    stay paired). ``statistic`` receives the resamples as ``[n_boot, S, ...]`` and must reduce
    axis 1; the default is the Fisher-z mean of per-subject r. Returns ``(low, high)``, the
    ``(1 − level)/2`` and ``(1 + level)/2`` quantiles of the bootstrap distribution, shaped like
    one statistic (a float for ``[S]``). With fewer than two subjects there is no spread to
    resample: both bounds are NaN. NaN inputs are refused (drop those subjects first).
    """
    x = _finite(values)
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be positive, got {n_boot}")
    n = x.shape[0]
    shape = np.shape(statistic(x[None]))[1:]
    if n < 2:
        nan = np.full(shape, np.nan)
        return nan[()], nan[()]
    rng = np.random.default_rng(seed)
    chunk = max(1, 2_000_000 // max(1, x.size))  # bound memory of the [chunk, S, ...] gather
    stats = []
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, n, size=(min(chunk, n_boot - start), n))
        stats.append(np.asarray(statistic(x[idx])))
    boot = np.concatenate(stats, axis=0)
    tail = (1 - level) / 2
    low, high = np.quantile(boot, [tail, 1 - tail], axis=0)
    return low[()], high[()]


# -- surrogate chance levels ------------------------------------------------------------------


def _segments(times: np.ndarray, segment: ArrayLike | None) -> list[np.ndarray]:
    """Index arrays of the contiguous segments, in order of first appearance."""
    if segment is None:
        if times.size < 2:
            return [np.arange(times.size)]
        steps = np.diff(times)
        dt = np.median(steps)
        breaks = np.flatnonzero(steps > 1.5 * dt) + 1
        return np.split(np.arange(times.size), breaks)
    seg = np.asarray(segment)
    if seg.shape != times.shape:
        raise ValueError(f"segment {seg.shape} and times {times.shape} differ in shape")
    _, first, inverse = np.unique(seg, return_index=True, return_inverse=True)
    return [np.flatnonzero(inverse == k) for k in np.argsort(first)]


def _segment_label(segment: ArrayLike | None, idx: np.ndarray, k: int) -> str:
    """How an error names a segment: its id in ``segment``, else its position."""
    return str(np.asarray(segment)[idx[0]]) if segment is not None and idx.size else str(k)


def _min_shift_volumes(times: np.ndarray, idx: np.ndarray, k: str, min_shift_s: float) -> int:
    t = times[idx]
    length = idx.size
    if length < 2 or np.any(np.diff(t) <= 0):
        if length >= 2:
            raise SurrogateError(f"segment {k}: volume times must increase")
        raise SurrogateError(
            f"segment {k} has {length} volume(s): too short for a circular shift of "
            f"≥ {min_shift_s:g} s"
        )
    dt = float(np.median(np.diff(t)))
    k_min = max(1, math.ceil(min_shift_s / dt - 1e-9))
    if length < 2 * k_min:
        raise SurrogateError(
            f"segment {k} has {length} volumes ({length * dt:.1f} s at {dt:g} s per volume): a "
            f"circular shift of at least {min_shift_s:g} s either way needs at least "
            f"{2 * k_min} volumes ({2 * k_min * dt:.1f} s); lower min_shift_s or leave this "
            f"segment out"
        )
    return k_min


def surrogate_shifts(
    *,
    times: ArrayLike,
    segment: ArrayLike | None = None,
    min_shift_s: float = MIN_SHIFT_S,
    n_surrogates: int = N_SURROGATES,
    seed: int = 0,
) -> np.ndarray:
    """Circular shifts ``[n_surrogates, n_segments]`` in volumes, one per segment.

    A shift ``k`` of a segment of ``L`` volumes moves the prediction ``k`` volumes later (with
    wrap-around), i.e. by ``k·dt`` one way and ``(L − k)·dt`` the other; both must be at least
    ``min_shift_s`` (``dt`` = the segment's median volume step), so ``k`` is drawn uniformly
    from the integers ``[k_min, L − k_min]`` with ``k_min = max(1, ceil(min_shift_s / dt))``.
    A segment shorter than ``2·k_min`` volumes has no allowed shift: :class:`SurrogateError`
    names it (by its id in ``segment``, else by position).
    ``segment=None`` infers segments from gaps in ``times`` longer than 1.5 median steps.
    """
    t = np.asarray(times, dtype=np.float64)
    if t.ndim != 1:
        raise ValueError(f"times must be 1-D, got shape {t.shape}")
    if n_surrogates < 1:
        raise ValueError(f"n_surrogates must be positive, got {n_surrogates}")
    segments = _segments(t, segment)
    rng = np.random.default_rng(seed)
    out = np.empty((n_surrogates, len(segments)), dtype=np.int64)
    for k, idx in enumerate(segments):
        k_min = _min_shift_volumes(t, idx, _segment_label(segment, idx, k), min_shift_s)
        out[:, k] = rng.integers(k_min, idx.size - k_min + 1, size=n_surrogates)
    return out


def _circular_r(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """r per ROI for every circular shift k of ``pred`` (``np.roll(pred, k)``): ``[L, R]``.

    Shifting changes neither mean nor variance, so only the cross-covariance depends on k;
    the FFT gives it for all L shifts at once (``c[k] = Σ_i t[i]·p[i − k]``).
    """
    tc = truth - truth.mean(axis=1, keepdims=True)
    pc = pred - pred.mean(axis=1, keepdims=True)
    length = truth.shape[1]
    cross = np.fft.irfft(np.fft.rfft(tc, axis=1) * np.conj(np.fft.rfft(pc, axis=1)), n=length)
    denom = np.sqrt((tc**2).sum(axis=1) * (pc**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(denom[:, None] > 0, cross / np.where(denom > 0, denom, 1)[:, None], np.nan)
    return np.clip(r, -1.0, 1.0).T


def _combine(per_segment: list[np.ndarray], ns: list[int]) -> np.ndarray:
    """Segments combined as the metric does (FoldTrainer.evaluate): an undefined segment r
    does not count; an ROI with none defined is NaN."""
    shape = per_segment[0].shape
    flat = [np.asarray(r, dtype=np.float64).reshape(-1) for r in per_segment]
    return np.asarray(combine_segments(flat, ns)).reshape(shape)


def _check_pair(truth: ArrayLike, pred: ArrayLike, times: ArrayLike):
    t = np.asarray(truth, dtype=np.float64)
    p = np.asarray(pred, dtype=np.float64)
    tm = np.asarray(times, dtype=np.float64)
    if t.ndim == 1 and p.ndim == 1:
        t, p = t[None], p[None]
    if t.shape != p.shape or t.ndim != 2:
        raise ValueError(f"truth {t.shape} and pred {p.shape} must both be [R, V]")
    if tm.shape != (t.shape[1],):
        raise ValueError(f"times {tm.shape} must be [V] with V = {t.shape[1]}")
    return t, p, tm


def segment_r(
    truth: ArrayLike, pred: ArrayLike, *, times: ArrayLike, segment: ArrayLike | None = None
) -> np.ndarray:
    """The one metric on a predictions file: r per ROI over each segment, combined (n − 3).

    Mirrors ``FoldTrainer.evaluate`` (an undefined segment r does not count), so it reproduces the
    results table's r from ``predictions/<stem>.npz`` and is the unshifted point of
    :func:`circular_shift_null`.
    """
    t, p, tm = _check_pair(truth, pred, times)
    segments = _segments(tm, segment)
    per = [_circular_r(t[:, idx], p[:, idx])[0] for idx in segments]
    return _combine(per, [idx.size for idx in segments])


def circular_shift_null(
    truth: ArrayLike,
    pred: ArrayLike,
    *,
    times: ArrayLike,
    segment: ArrayLike | None = None,
    min_shift_s: float = MIN_SHIFT_S,
    n_surrogates: int = N_SURROGATES,
    seed: int = 0,
) -> np.ndarray:
    """Surrogate r ``[n_surrogates, R]``: the metric with the prediction shifted ≥ min_shift_s.

    Chance level for autocorrelated BOLD: each contiguous segment's prediction is circularly
    shifted within that segment (shifts from :func:`surrogate_shifts`, independent per
    segment), which keeps its spectrum and autocorrelation but breaks its alignment with the
    truth; r is then computed per segment and combined exactly as the metric does
    (:func:`segment_r`). ``truth`` and ``pred`` are ``[R, V]`` at the volume ``times`` [V].

    The circular cross-correlation sums to zero over all shifts, so when the prediction is
    good and the segment short, the excluded shifts near zero hold the positive lags and the
    surrogates' mean lies slightly below zero: a property of this null, not an error.
    """
    t, p, tm = _check_pair(truth, pred, times)
    shifts = surrogate_shifts(
        times=tm, segment=segment, min_shift_s=min_shift_s, n_surrogates=n_surrogates, seed=seed
    )
    segments = _segments(tm, segment)
    per = [_circular_r(t[:, idx], p[:, idx])[shifts[:, k]] for k, idx in enumerate(segments)]
    return _combine(per, [idx.size for idx in segments])


def chance_summary(null: ArrayLike, *, level: float = 0.95) -> dict[str, np.ndarray]:
    """Chance level per ROI: Fisher-z mean of the surrogates and their central ``level`` band.

    ``null`` is ``[n_surrogates, R]`` (or ``[n_surrogates]``); NaN surrogates are ignored.
    Returns ``{"mean", "low", "high"}``, each ``[R]``: the band is the ``(1 − level)/2`` and
    ``(1 + level)/2`` quantiles, so an observed r above ``high`` is beyond chance at
    ``(1 − level)/2`` one-sided (use :func:`surrogate_p` for the p-value).
    """
    z = np.asarray(null, dtype=np.float64)
    tail = (1 - level) / 2
    with warnings.catch_warnings():  # an all-NaN ROI simply yields NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.tanh(np.nanmean(fisher_z(z), axis=0))
        low, high = np.nanquantile(z, [tail, 1 - tail], axis=0)
    return {"mean": np.asarray(mean), "low": np.asarray(low), "high": np.asarray(high)}


def surrogate_p(
    observed_r: ArrayLike, null: ArrayLike, *, alternative: Alternative = "greater"
) -> np.ndarray:
    """Surrogate p per ROI with the +1 correction: ``(1 + #{null ≥ r}) / (1 + N)``.

    The observed value counts as one of the surrogates (Phipson & Smyth 2010), so p is never
    0. ``"less"`` counts ``null ≤ r``; ``"two-sided"`` is ``min(1, 2·min(p_greater, p_less))``.
    ``N`` counts the finite surrogates of each ROI; an undefined observed r gives NaN.
    """
    _check_alternative(alternative)
    obs = np.asarray(observed_r, dtype=np.float64)
    nul = np.asarray(null, dtype=np.float64)
    if nul.ndim != obs.ndim + 1 or nul.shape[1:] != obs.shape:
        raise ValueError(f"null {nul.shape} must be [n_surrogates, *{obs.shape}]")
    finite = np.isfinite(nul)
    n = finite.sum(axis=0)
    with np.errstate(invalid="ignore"):
        greater = (1 + (finite & (nul >= obs)).sum(axis=0)) / (1 + n)
        less = (1 + (finite & (nul <= obs)).sum(axis=0)) / (1 + n)
    if alternative == "greater":
        p = greater
    elif alternative == "less":
        p = less
    else:
        p = np.minimum(1.0, 2 * np.minimum(greater, less))
    return np.where(np.isfinite(obs), p, np.nan)[()]


# -- tests across subjects --------------------------------------------------------------------


def _tail_p(null: np.ndarray, obs: float, alternative: str) -> np.ndarray:
    """Which null statistics are at least as extreme as ``obs`` (with float tolerance)."""
    gamma = abs(obs) * 1e-12 + 1e-15
    if alternative == "greater":
        return null >= obs - gamma
    if alternative == "less":
        return null <= obs + gamma
    return np.abs(null) >= abs(obs) - gamma


def sign_flip_test(
    values: ArrayLike,
    *,
    n_perm: int = N_BOOT,
    alternative: Alternative = "two-sided",
    seed: int = 0,
    exact_if_small: bool = True,
) -> tuple[float, float]:
    """One-sample sign-flip test of H0 "mean = 0" on per-subject values (pass Fisher z).

    Under H0 each subject's value is as likely to be negated, so the null distribution of the
    mean is that of ``mean(s·x)`` over sign vectors ``s``. With ``exact_if_small`` and
    ``2**n ≤ n_perm`` every sign vector is enumerated and ``p = #{extreme} / 2**n`` (the
    identity is one of them, so ``p ≥ 2**-n``); otherwise ``n_perm`` random sign vectors give
    ``p = (1 + #{extreme}) / (1 + n_perm)``. Extreme means ``≥ obs`` (greater), ``≤ obs``
    (less) or ``|·| ≥ |obs|`` (two-sided). Returns ``(mean of values, p)``.
    """
    _check_alternative(alternative)
    x = _finite(values)
    if x.ndim != 1:
        raise ValueError(f"values must be 1-D per-subject values, got shape {x.shape}")
    n = x.size
    obs = float(x.mean())
    if exact_if_small and 2**n <= n_perm:
        codes = np.arange(2**n)[:, None] >> np.arange(n)[None, :]
        signs = 1.0 - 2.0 * (codes & 1)
        null = signs @ x / n
        return obs, float(np.mean(_tail_p(null, obs, alternative)))
    rng = np.random.default_rng(seed)
    count = 0
    chunk = max(1, 1_000_000 // n)
    for start in range(0, n_perm, chunk):
        signs = rng.choice([-1.0, 1.0], size=(min(chunk, n_perm - start), n))
        count += int(np.sum(_tail_p(signs @ x / n, obs, alternative)))
    return obs, (1 + count) / (1 + n_perm)


def paired_sign_flip(
    a: ArrayLike,
    b: ArrayLike,
    *,
    n_perm: int = N_BOOT,
    alternative: Alternative = "two-sided",
    seed: int = 0,
    exact_if_small: bool = True,
) -> tuple[float, float]:
    """Paired sign-flip test on ``a − b`` (subjects paired by position): H0 mean difference 0.

    ``alternative="greater"`` tests ``a > b`` (e.g. within-subject z above LOSO z).
    """
    da, db = _finite(a, "a"), _finite(b, "b")
    if da.shape != db.shape:
        raise ValueError(f"a {da.shape} and b {db.shape} must be paired (same shape)")
    return sign_flip_test(
        da - db, n_perm=n_perm, alternative=alternative, seed=seed, exact_if_small=exact_if_small
    )


@lru_cache(maxsize=64)
def _signed_rank_pmf(n: int) -> np.ndarray:
    """Exact null pmf of W+ for n untied, nonzero differences (each sign ½, independent)."""
    counts = np.zeros(n * (n + 1) // 2 + 1)
    counts[0] = 1.0
    for k in range(1, n + 1):
        counts[k:] = counts[k:] + counts[:-k].copy()
    pmf = counts / 2.0**n
    pmf.flags.writeable = False
    return pmf


def _average_ranks(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Average ranks (1-based) of ``a`` and the sizes of its tie groups."""
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    _, start, counts = np.unique(sorted_a, return_index=True, return_counts=True)
    avg = start + (counts + 1) / 2.0  # mean of ranks start+1 … start+count
    ranks = np.empty(a.size)
    ranks[order] = np.repeat(avg, counts)
    return ranks, counts


def wilcoxon_signed_rank(
    a: ArrayLike,
    b: ArrayLike | None = None,
    *,
    alternative: Alternative = "two-sided",
    method: Literal["auto", "exact", "approx"] = "auto",
    correction: bool = True,
) -> tuple[float, float]:
    """Wilcoxon signed-rank test of ``d = a − b`` (or ``a``) symmetric about 0.

    Zero differences are dropped (Wilcoxon's method); the remaining ``|d|`` get average ranks
    and ``W+`` sums the ranks of positive ``d``. ``method="exact"`` uses the exact null of
    ``W+`` (each of the 2**n sign patterns equally likely; with ties it is only approximate:
    a non-integer ``W+`` is rounded down for the upper tail and up for the lower, as scipy
    does). ``"approx"`` uses the normal approximation with the tie-corrected variance
    ``n(n+1)(2n+1)/24 − Σ(t³ − t)/48`` and, if ``correction``, a continuity correction of ½
    towards the mean. ``"auto"`` is exact when ``len(d) ≤ 50`` and there are neither ties nor
    zeros, else approx. ``"greater"`` means ``d`` tends to be positive (``a > b``).

    Returns ``(statistic, p)`` as ``scipy.stats.wilcoxon`` does: the statistic is
    ``min(W+, W−)`` for two-sided and ``W+`` for one-sided; tails come from ``W+``
    (two-sided ``p = min(1, 2·min(P(W ≥ W+), P(W ≤ W+)))``). NB scipy's default is
    ``correction=False``; ours is True. With no nonzero difference p is NaN.
    """
    _check_alternative(alternative)
    if method not in ("auto", "exact", "approx"):
        raise ValueError(f"method must be 'auto', 'exact' or 'approx', got {method!r}")
    d = _finite(a, "a")
    if b is not None:
        db = _finite(b, "b")
        if db.shape != d.shape:
            raise ValueError(f"a {d.shape} and b {db.shape} must be paired (same shape)")
        d = d - db
    if d.ndim != 1:
        raise ValueError(f"expected 1-D samples, got shape {d.shape}")
    n_total = d.size
    has_zeros = bool(np.any(d == 0))
    d = d[d != 0]
    n = d.size
    ranks, ties = _average_ranks(np.abs(d))
    r_plus = float(ranks[d > 0].sum())
    r_minus = float(ranks[d < 0].sum())
    statistic = min(r_plus, r_minus) if alternative == "two-sided" else r_plus
    if n == 0:
        return statistic, float("nan")
    has_ties = bool(np.any(ties > 1))
    if method == "auto":
        method = "exact" if n_total <= 50 and not has_ties and not has_zeros else "approx"
    if method == "exact":
        pmf = _signed_rank_pmf(n)
        upper = float(pmf[int(math.floor(r_plus)) :].sum())  # P(W ≥ W+)
        lower = float(pmf[: int(math.ceil(r_plus)) + 1].sum())  # P(W ≤ W+)
        p = {"greater": upper, "less": lower}.get(alternative, min(1.0, 2 * min(upper, lower)))
        return statistic, p
    mean = n * (n + 1) / 4.0
    var = n * (n + 1) * (2 * n + 1) / 24.0 - float(np.sum(ties**3 - ties)) / 48.0
    se = math.sqrt(var)
    z = (r_plus - mean) / se
    if correction:
        direction = {"greater": 1.0, "less": -1.0}.get(alternative, float(np.sign(z)))
        z -= direction * 0.5 / se
    if alternative == "greater":
        p = float(ndtr(-z))
    elif alternative == "less":
        p = float(ndtr(z))
    else:
        p = min(1.0, 2 * float(min(ndtr(z), ndtr(-z))))
    return statistic, p


def benjamini_hochberg(pvalues: ArrayLike, *, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Benjamini–Hochberg FDR: q-values and which hypotheses are rejected at ``alpha``.

    ``q_(i) = min_{j ≥ i} p_(j)·m / j`` over the sorted p-values, capped at 1 (the same numbers
    as ``scipy.stats.false_discovery_control(p, method="bh")``); ``reject = q ≤ alpha``, which
    is exactly the step-up rule "reject the k smallest, k = max{i : p_(i) ≤ i·alpha/m}". NaN
    p-values (untestable ROIs) are left out of ``m`` and get NaN q and no rejection.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    if np.any((p < 0) | (p > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    q = np.full(p.shape, np.nan)
    flat = p.reshape(-1)
    ok = np.flatnonzero(np.isfinite(flat))
    m = ok.size
    if m:
        order = ok[np.argsort(flat[ok], kind="mergesort")]
        scaled = flat[order] * m / np.arange(1, m + 1)
        adjusted = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
        qf = q.reshape(-1)
        qf[order] = adjusted
        q = qf.reshape(p.shape)
    with np.errstate(invalid="ignore"):
        reject = np.where(np.isfinite(q), q <= alpha, False)
    return q, reject


# -- generalisation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GeneralizationGap:
    """Per-ROI within − LOSO gap in r (each side a Fisher-z mean over the paired subjects)."""

    within: np.ndarray
    loso: np.ndarray
    gap: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n: np.ndarray


def paired_difference(samples: np.ndarray) -> np.ndarray:
    """Bootstrap statistic for paired ``[S, 2]`` r: Fisher mean of column 0 minus column 1."""
    return np.asarray(fisher_mean(samples[:, :, 0], axis=1) - fisher_mean(samples[:, :, 1], axis=1))


def generalization_gap(
    within: ArrayLike,
    loso: ArrayLike,
    *,
    n_boot: int = N_BOOT,
    level: float = 0.95,
    seed: int = 0,
) -> GeneralizationGap:
    """How much r is lost for an unseen subject: ``fisher_mean(within) − fisher_mean(loso)``.

    ``within`` and ``loso`` are per-subject test r ``[S, R]`` (or ``[S]``), row ``i`` of both
    the same subject. The CI is a paired percentile bootstrap (:func:`bootstrap_ci`): subjects
    are resampled with both their values, so between-subject variation common to both protocols
    cancels. Per ROI, subjects with NaN in either protocol are left out (``n`` counts the rest).
    """
    w = np.asarray(within, dtype=np.float64)
    lo = np.asarray(loso, dtype=np.float64)
    if w.shape != lo.shape or w.ndim not in (1, 2):
        raise ValueError(f"within {w.shape} and loso {lo.shape} must both be [S, R] (or [S])")
    squeeze = w.ndim == 1
    w2, l2 = (w[:, None], lo[:, None]) if squeeze else (w, lo)
    n_roi = w2.shape[1]
    out = {k: np.full(n_roi, np.nan) for k in ("within", "loso", "gap", "low", "high")}
    counts = np.zeros(n_roi, dtype=np.int64)
    for j in range(n_roi):
        ok = np.isfinite(w2[:, j]) & np.isfinite(l2[:, j])
        counts[j] = int(ok.sum())
        if not counts[j]:
            continue
        pair = np.stack([w2[ok, j], l2[ok, j]], axis=1)
        out["within"][j] = fisher_mean(pair[:, 0])
        out["loso"][j] = fisher_mean(pair[:, 1])
        out["gap"][j] = out["within"][j] - out["loso"][j]
        out["low"][j], out["high"][j] = bootstrap_ci(
            pair, n_boot=n_boot, level=level, seed=seed, statistic=paired_difference
        )
    if squeeze:
        return GeneralizationGap(**{k: v[0] for k, v in out.items()}, n=counts[0])
    return GeneralizationGap(**out, n=counts)

"""Figures of the generalization report, each returned as PNG bytes (matplotlib, Agg)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(fig: Any) -> bytes:
    """Render and close a figure."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return buffer.getvalue()


def roi_bars(
    rows: Sequence[Mapping[str, Any]],
    *,
    title: str,
    oracle: float | Sequence[float | None] | None = None,
) -> bytes:
    """Mean test r per ROI with 95% bootstrap CIs, and the surrogate chance band.

    ``rows``: one per ROI with ``roi``, ``r``, ``ci_low``, ``ci_high`` and optionally
    ``chance_low``/``chance_high``/``q`` (FDR q-value; * marks q < 0.05). ``oracle``: the
    best reachable r (simulated data), one value or one per ROI.
    """
    plt = _plt()
    rois = [r["roi"] for r in rows]
    x = np.arange(len(rois))
    r = np.array([row["r"] for row in rows], dtype=float)
    lo = np.array([row.get("ci_low", np.nan) for row in rows], dtype=float)
    hi = np.array([row.get("ci_high", np.nan) for row in rows], dtype=float)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.6 * len(rois) + 2), 3.4))
    yerr = np.vstack([np.clip(r - lo, 0, None), np.clip(hi - r, 0, None)])
    ax.bar(x, r, color="#4c72b0", yerr=np.nan_to_num(yerr), capsize=3, label="test r (95% CI)")
    for i, row in enumerate(rows):
        if row.get("chance_low") is not None and row.get("chance_high") is not None:
            ax.fill_between(
                [i - 0.45, i + 0.45],
                row["chance_low"],
                row["chance_high"],
                color="#999999",
                alpha=0.45,
                label="chance (95%)" if i == 0 else None,
                zorder=3,
            )
        q = row.get("q")
        if q is not None and np.isfinite(q) and q < 0.05:
            ax.text(i, max(r[i], hi[i] if np.isfinite(hi[i]) else r[i]) + 0.02, "*", ha="center")
    if isinstance(oracle, int | float):
        ax.axhline(oracle, color="#dd8452", ls="--", lw=1, label=f"oracle r {oracle:.2f}")
    elif oracle is not None:
        marks = np.array([np.nan if v is None else v for v in oracle], dtype=float)
        ax.scatter(x, marks, marker="_", s=300, color="#dd8452", label="oracle r", zorder=4)
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xticks(x, rois, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("Pearson r")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper right")
    return png(fig)


def loso_vs_within(points: Mapping[str, Sequence[tuple[str, float, float]]]) -> bytes:
    """Per-subject test r: within-subject (x) vs leave-one-subject-out (y), one colour per
    model; points below the diagonal lost accuracy on unseen subjects."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    values = [v for pts in points.values() for _, a, b in pts for v in (a, b)]
    lo, hi = (min([*values, 0.0]) - 0.05, max([*values, 0.5]) + 0.05) if values else (0, 1)
    ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8, ls="--")
    for model, pts in points.items():
        if pts:
            ax.scatter([p[1] for p in pts], [p[2] for p in pts], label=model, s=28)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("within-subject test r")
    ax.set_ylabel("LOSO test r")
    ax.set_title("Generalization to unseen subjects", fontsize=10)
    ax.legend(fontsize=7)
    return png(fig)


def history(trials: Sequence[Mapping[str, Any]], *, title: str) -> bytes:
    """Optimisation history: each trial's validation r and the best so far."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 3.0))
    numbers = [t["trial"] for t in trials]
    values = [t["val_r"] if t["val_r"] is not None else np.nan for t in trials]
    ax.scatter(numbers, values, s=18, color="#4c72b0", label="trial")
    best = np.fmax.accumulate(np.nan_to_num(np.asarray(values, float), nan=-np.inf))
    ax.step(
        numbers,
        np.where(np.isfinite(best), best, np.nan),
        where="post",
        color="#c44e52",
        label="best so far",
    )
    failed = [t["trial"] for t in trials if t["state"] == "FAIL"]
    if failed:
        ax.scatter(
            failed,
            [np.nanmin(values) if np.isfinite(np.nanmin(values)) else 0] * len(failed),
            marker="x",
            color="black",
            label="failed",
        )
    ax.xaxis.set_major_locator(_plt().MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel("mean validation r")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    return png(fig)


def importances(values: Mapping[str, float], *, title: str) -> bytes:
    """Hyperparameter importances (Optuna's evaluator), largest first."""
    plt = _plt()
    items = sorted(values.items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(4.6, 0.3 * len(items) + 1.2))
    ax.barh([k for k, _ in items], [v for _, v in items], color="#55a868")
    ax.set_xlabel("importance")
    ax.set_title(title, fontsize=10)
    ax.tick_params(axis="y", labelsize=7)
    return png(fig)


def traces(
    times: np.ndarray,
    truth: np.ndarray,
    pred: np.ndarray,
    outputs: Sequence[str],
    *,
    title: str,
    max_rois: int = 4,
) -> bytes:
    """Predicted vs true BOLD over time for a few ROIs (z-scored for display)."""
    plt = _plt()
    k = min(max_rois, len(outputs))
    fig, axes = plt.subplots(k, 1, figsize=(8, 1.6 * k + 0.6), sharex=True, squeeze=False)

    def z(v: np.ndarray) -> np.ndarray:
        s = v.std()
        return (v - v.mean()) / (s if s > 0 else 1.0)

    for i in range(k):
        ax = axes[i, 0]
        r = np.corrcoef(truth[i], pred[i])[0, 1] if truth.shape[1] > 2 else np.nan
        ax.plot(times, z(truth[i]), color="black", lw=1, label="true")
        ax.plot(times, z(pred[i]), color="#c44e52", lw=1, label="predicted")
        ax.set_ylabel(outputs[i], fontsize=8)
        ax.text(0.01, 0.85, f"r = {r:.2f}", transform=ax.transAxes, fontsize=8)
    axes[0, 0].legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("time (s)")
    fig.suptitle(title, fontsize=10)
    return png(fig)

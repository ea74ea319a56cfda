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


def png(fig: Any, *, palette: bool = False) -> bytes:
    """Render and close a figure; with ``palette``, as a 256-colour PNG (a quarter of the
    bytes for busy figures such as the glass brain, no visible loss)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    if not palette:
        return buffer.getvalue()
    from PIL import Image

    with Image.open(buffer) as image:
        quantized = image.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE)
    out = io.BytesIO()
    quantized.save(out, format="png", optimize=True)
    return out.getvalue()


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
    _legend_outside(ax)
    return png(fig)


def roi_ranked(
    rows: Sequence[Mapping[str, Any]],
    *,
    title: str,
    oracle: float | Sequence[float | None] | None = None,
    alpha: float = 0.05,
) -> bytes:
    """Test r of many ROIs (parcels) ranked from best to worst, with the 95% bootstrap CI as
    a band, the surrogate chance band, and the ROIs with q < ``alpha`` marked: the
    :func:`roi_bars` of an atlas with hundreds of parcels, at a fixed size (no names on
    the axis: the tables and the CSV name them). ``rows`` as for :func:`roi_bars`."""
    plt = _plt()
    r = np.array([row["r"] for row in rows], dtype=float)
    order = np.argsort(-np.nan_to_num(r, nan=-np.inf), kind="stable")

    def column(key: str) -> np.ndarray:
        values = [rows[i].get(key) for i in order]
        return np.array([np.nan if v is None else v for v in values], dtype=float)

    x = np.arange(1, len(rows) + 1)
    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    ax.fill_between(
        x,
        column("ci_low"),
        column("ci_high"),
        color="#4c72b0",
        alpha=0.25,
        lw=0,
        label="95% CI",
    )
    low, high = column("chance_low"), column("chance_high")
    if np.isfinite(low).any():
        ax.fill_between(x, low, high, color="#999999", alpha=0.45, lw=0, label="chance (95%)")
    ax.plot(x, r[order], color="#4c72b0", lw=1.2, label="test r")
    q = column("q")
    significant = np.isfinite(q) & (q < alpha)
    if significant.any():
        ax.scatter(
            x[significant],
            r[order][significant],
            s=9,
            color="#c44e52",
            zorder=4,
            label=f"q < {alpha:g}",
        )
    if isinstance(oracle, int | float):
        ax.axhline(oracle, color="#dd8452", ls="--", lw=1, label=f"oracle r {oracle:.2f}")
    elif oracle is not None:
        marks = np.array([np.nan if oracle[i] is None else oracle[i] for i in order], dtype=float)
        ax.plot(x, marks, color="#dd8452", lw=0.8, ls="--", label="oracle r")
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xlim(0.5, len(rows) + 0.5)
    ax.set_xlabel(f"ROI rank by test r (of {len(rows)})")
    ax.set_ylabel("Pearson r")
    ax.set_title(title, fontsize=10)
    _legend_outside(ax)
    return png(fig)


def brain_markers(
    values: Sequence[float],
    coords: Sequence[Sequence[float]],
    significant: Sequence[bool],
    *,
    vmax: float,
    title: str,
    alpha: float = 0.05,
) -> bytes:
    """Each parcel's test r as a marker at its MNI position on nilearn's glass brain (left,
    top, right, front), coloured on the symmetric scale [-vmax, vmax] (the report passes one
    ``vmax`` to every figure, so colours compare across them); parcels with q < ``alpha``
    large with a black outline, the others small and faded. Offline: the glass brain
    outlines ship with nilearn."""
    plt = _plt()
    from matplotlib.lines import Line2D
    from nilearn import plotting

    r = np.asarray(values, dtype=float)
    xyz = np.asarray(coords, dtype=float).reshape(-1, 3)
    sig = np.asarray(significant, dtype=bool)
    cmap = plt.get_cmap("RdBu_r")
    fig = plt.figure(figsize=(11.0, 3.2))
    display = plotting.plot_markers(
        r,
        xyz,
        node_size=np.where(sig, 0.0, 12.0),  # the significant ones are drawn on top below
        node_cmap=cmap,
        node_vmin=-vmax,
        node_vmax=vmax,
        alpha=0.55,
        display_mode="lzry",
        figure=fig,
        title=title,
        node_kwargs={"edgecolors": "#777777", "linewidths": 0.3},  # r ≈ 0 is white
    )
    if sig.any():
        colors = cmap((np.clip(r[sig], -vmax, vmax) + vmax) / (2 * vmax))
        display.add_markers(
            xyz[sig], marker_color=colors, marker_size=42, edgecolors="black", linewidths=0.8
        )
    handles = [
        Line2D([], [], ls="", marker="o", ms=7, mfc="#bbbbbb", mec="black", mew=0.8),
        Line2D([], [], ls="", marker="o", ms=3.5, mfc="#bbbbbb", mec="#777777", mew=0.3),
    ]
    labels = [f"q < {alpha:g} (FDR across parcels)", "not significant"]
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    return png(fig, palette=True)


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


_COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3")


def _legend_outside(ax: Any) -> None:
    """The legend right of the axes: never over data."""
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def overview(arms: Sequence[Mapping[str, Any]], *, oracle: float | None = None) -> bytes:
    """Mean test r over ROIs (95% CI across subjects) for every model × protocol, side by
    side per model, each with the chance band of that mean; the oracle r as a line."""
    plt = _plt()
    models = sorted({a["model"] for a in arms})
    protocols = sorted({a["protocol"] for a in arms}, key=lambda p: (p != "within", p))
    width = 0.8 / max(1, len(protocols))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(models) + 2.5), 3.4))
    for j, protocol in enumerate(protocols):
        for i, model in enumerate(models):
            arm = next((a for a in arms if (a["protocol"], a["model"]) == (protocol, model)), None)
            if arm is None or arm["r"] is None:
                continue
            x = i - 0.4 + width * (j + 0.5)
            lo = arm["ci_low"] if arm["ci_low"] is not None else arm["r"]
            hi = arm["ci_high"] if arm["ci_high"] is not None else arm["r"]
            ax.bar(
                x,
                arm["r"],
                width * 0.9,
                color=_COLORS[j % len(_COLORS)],
                yerr=[[max(arm["r"] - lo, 0)], [max(hi - arm["r"], 0)]],
                capsize=3,
                label=protocol if i == 0 else None,
            )
            if arm.get("chance_low") is not None and arm.get("chance_high") is not None:
                ax.fill_between(
                    [x - width * 0.45, x + width * 0.45],
                    arm["chance_low"],
                    arm["chance_high"],
                    color="#999999",
                    alpha=0.5,
                    zorder=3,
                    label="chance (95%)" if (i, j) == (0, 0) else None,
                )
    if oracle is not None:
        ax.axhline(oracle, color="#333333", ls="--", lw=1, label=f"oracle r {oracle:.2f}")
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xticks(np.arange(len(models)), models)
    ax.set_ylabel("mean test r over ROIs")
    ax.set_title("Every model × protocol at a glance (95% CI across subjects)", fontsize=10)
    _legend_outside(ax)
    return png(fig)


def calibration_curve(
    points: Sequence[Mapping[str, Any]], references: Sequence[Mapping[str, Any]]
) -> bytes:
    """Test r on a new subject against minutes of its own data in training (95% CI across
    subjects), per model; within-subject (dashed) and plain LOSO (dotted) as reference lines."""
    plt = _plt()
    models = sorted({p["model"] for p in points})
    fig, ax = plt.subplots(figsize=(6.0, 3.4))
    for i, model in enumerate(models):
        color = _COLORS[i % len(_COLORS)]
        mine = sorted((p for p in points if p["model"] == model), key=lambda p: p["minutes"])
        x = np.array([p["minutes"] for p in mine], dtype=float)
        y = np.array([p["r"] for p in mine], dtype=float)
        lo = np.array([p["ci_low"] if p["ci_low"] is not None else p["r"] for p in mine], float)
        hi = np.array([p["ci_high"] if p["ci_high"] is not None else p["r"] for p in mine], float)
        ax.errorbar(
            x,
            y,
            yerr=[np.clip(y - lo, 0, None), np.clip(hi - y, 0, None)],
            color=color,
            marker="o",
            capsize=3,
            label=model,
        )
        for ref in references:
            if ref["model"] == model and ref["r"] is not None:
                style = "--" if ref["protocol"] == "within" else ":"
                ax.axhline(
                    ref["r"], color=color, ls=style, lw=1, label=f"{model} {ref['protocol']}"
                )
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xlabel("minutes of the new subject's data in training")
    ax.set_ylabel("test r on the new subject")
    ax.set_title("Calibration curve", fontsize=10)
    _legend_outside(ax)
    return png(fig)


def history_grid(arms: Sequence[Mapping[str, Any]]) -> bytes:
    """Optimisation histories of every arm as small multiples (validation r per trial)."""
    plt = _plt()
    n = max(1, len(arms))
    cols = min(3, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.3 * rows), squeeze=False)
    for k, arm in enumerate(arms):
        ax = axes[k // cols, k % cols]
        trials = arm["history"]
        numbers = [t["number"] for t in trials]
        values = np.array([t["val_r"] if t["val_r"] is not None else np.nan for t in trials], float)
        ax.scatter(numbers, values, s=12, color="#4c72b0")
        best = np.fmax.accumulate(np.nan_to_num(values, nan=-np.inf)) if values.size else values
        ax.step(numbers, np.where(np.isfinite(best), best, np.nan), where="post", color="#c44e52")
        ax.set_title(f"{arm['protocol']} × {arm['model']}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_locator(_plt().MaxNLocator(integer=True))
    for k in range(n, rows * cols):
        axes[k // cols, k % cols].axis("off")
    fig.supxlabel("trial", fontsize=8)
    fig.supylabel("mean validation r (red: best so far)", fontsize=8)
    fig.tight_layout()
    return png(fig)

"""Rows of the results table for one fold (plain dicts: no pandas needed to make them)."""

from __future__ import annotations

from typing import Any

from eeg2bold.protocols import Fold
from eeg2bold.training.config import ExperimentConfig
from eeg2bold.training.fit import SplitScore


def result_rows(
    *,
    config: ExperimentConfig,
    config_hash: str,
    fold: Fold,
    outputs: tuple[str, ...],
    history: list[dict[str, Any]],
    final: dict[str, SplitScore],
    best_epoch: int,
    sweep: str = "",
    trial: str = "",
) -> list[dict[str, Any]]:
    """Results-table rows of one fold: the val curve per epoch and the final val/test scores."""
    base = {
        "sweep": sweep,
        "trial": trial,
        "config_hash": config_hash,
        "model": config.model,
        "protocol": config.protocol,
        "fold": fold.index,
        "subject": fold.subject,
        "seed": config.train.seed,
    }
    rows = []
    n_val = int(final["val"].n)
    for h in history:
        for roi, r in zip(outputs, h["val_r"], strict=True):
            rows.append(
                {**base, "roi": roi, "split": "val", "epoch": h["epoch"], "final": False}
                | {"r": float(r), "n": n_val}
            )
    for split, score in final.items():
        for roi, r in zip(outputs, score.r.tolist(), strict=True):
            rows.append(
                {**base, "roi": roi, "split": split, "epoch": best_epoch, "final": True}
                | {"r": float(r), "n": int(score.n)}
            )
    return rows

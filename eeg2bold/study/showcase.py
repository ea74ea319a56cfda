"""The one fold the report shows in detail: the median subject's fold of the best arm, its test
traces and, for an interpretable model, what it learned (Haufe patterns on the input the model
saw, through :class:`~eeg2bold.training.trained.TrainedFold`, and its band-pass responses).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from eeg2bold.errors import Eeg2BoldError
from eeg2bold.run_folder import PredictionFiles, fold_stem
from eeg2bold.study import figures
from eeg2bold.study.aggregate import Summary
from eeg2bold.study.queries import SweepRecord
from eeg2bold.training.metrics import fisher_mean


def best_arm(rois: pd.DataFrame, *, models: Sequence[str] | None = None) -> tuple[str, str] | None:
    """The protocol × model with the highest Fisher-mean r over ROIs; LOSO arms first (the
    claim that matters), within only when nothing else was run."""
    frame = rois.dropna(subset=["r"])
    if models is not None:
        frame = frame[frame["model"].isin(models)]
    if frame.empty:
        return None
    scores = (
        frame.groupby(["protocol", "model"])["r"]
        .agg(lambda r: float(fisher_mean(r.to_numpy())))
        .reset_index()
    )
    cross = scores[scores["protocol"] != "within"]
    pool = cross if len(cross) else scores
    best = pool.sort_values(["r", "protocol", "model"], ascending=[False, True, True]).iloc[0]
    return str(best["protocol"]), str(best["model"])


def _median_fold(selection: pd.DataFrame, protocol: str, model: str) -> pd.Series | None:
    """The selected fold whose mean test r is the median one: a typical subject, not the best."""
    rows = selection[(selection["protocol"] == protocol) & (selection["model"] == model)]
    rows = rows.dropna(subset=["test_r"])
    if rows.empty:
        return None
    scores = rows.groupby("fold")["test_r"].agg(lambda r: float(fisher_mean(r.to_numpy())))
    ordered = scores.sort_values(kind="mergesort")
    fold = ordered.index[(len(ordered) - 1) // 2]
    return rows[rows["fold"] == fold].iloc[0]


def _stem(row: pd.Series) -> str:
    """The file stem of a selected fold (its trial id and fold index)."""
    return fold_stem(str(row["trial"]), int(row["fold"]))


def trace_section(
    summary: Summary, predictions: PredictionFiles, figs: dict[str, bytes]
) -> dict[str, Any]:
    best = best_arm(summary.rois)
    if best is None:
        return {"skipped": "no finished fold with a test score"}
    protocol, model = best
    row = _median_fold(summary.selection, protocol, model)
    if row is None:
        return {"skipped": "no finished fold with a test score"}
    stem = _stem(row)
    if stem not in predictions:
        return {
            "skipped": f"no predictions file for {stem}",
            "protocol": protocol,
            "model": model,
        }
    arrays = predictions[stem]
    times, truth, pred = arrays["test_times"], arrays["test_truth"], arrays["test_pred"]
    outputs = [str(o) for o in arrays["outputs"]]
    segment = arrays.get("test_segment", np.zeros(times.size))
    first = segment == segment[0]  # one contiguous stretch, so the line does not jump
    r = [
        float(np.corrcoef(t, p)[0, 1]) if t.size > 2 else None
        for t, p in zip(truth, pred, strict=True)
    ]
    scores = [{"roi": o, "r": v} for o, v in zip(outputs, r, strict=True)]
    figs["traces"] = figures.traces(
        times[first],
        truth[:, first],
        pred[:, first],
        outputs,
        title=f"{model} ({protocol}), fold of {row['subject']}: test segment",
    )
    return {
        "protocol": protocol,
        "model": model,
        "subject": str(row["subject"]),
        "fold": int(row["fold"]),
        "trial": str(row["trial"]),
        "file": f"predictions/{stem}.npz",
        "rois": scores,
        "figure": "traces",
    }


def interpretation_section(
    sweep: SweepRecord, summary: Summary, figs: dict[str, bytes]
) -> dict[str, Any]:
    from eeg2bold.models.base import get_model_class, model_names

    interpretable = [m for m in model_names() if get_model_class(m).interpretable]
    best = best_arm(summary.rois, models=interpretable)
    if best is None:
        return {"skipped": "no interpretable model (beira, twin) has a finished fold"}
    protocol, model = best
    row = _median_fold(summary.selection, protocol, model)
    if row is None:
        return {"skipped": "no interpretable model has a test score"}
    folder = sweep.folder
    file = folder.model_path(str(row["trial"]), int(row["fold"]))
    if not folder.exists("models", file.rsplit("/", 1)[-1]):
        return {"skipped": f"model file missing: {file}", "protocol": protocol, "model": model}
    try:
        interp, sfreq = _interpret_file(file, sweep, subject=str(row["subject"]))
    except Eeg2BoldError as exc:
        return {"skipped": str(exc), "protocol": protocol, "model": model}
    figs["spectra"] = figures.png(_spectra_figure(interp))
    entry: dict[str, Any] = {
        "protocol": protocol,
        "model": model,
        "subject": str(row["subject"]),
        "file": os.path.relpath(file, sweep.root) if "://" not in file else file,
        "channels": list(interp.channels),
        "peak_hz": [float(v) for v in interp.peak_hz],
        # the table's rows as shown (branches numbered from 1)
        "branches": [{"branch": k + 1, "peak_hz": float(v)} for k, v in enumerate(interp.peak_hz)],
        "patterns": [[float(v) for v in p] for p in interp.patterns],
        "figures": ["spectra"],
    }
    try:
        from eeg2bold.models.interpret import plot_spatial_patterns

        figs["topomaps"] = figures.png(plot_spatial_patterns(interp, sfreq=sfreq))
        entry["figures"].insert(0, "topomaps")
    except Eeg2BoldError as exc:  # channels without standard positions: spectra only
        entry["topomaps_skipped"] = str(exc)
    return entry


def _spectra_figure(interp: Any) -> Any:
    from eeg2bold.models.interpret import plot_spectra

    return plot_spectra(interp, max_hz=min(60.0, float(interp.freqs[-1])))


def _interpret_file(file: str, sweep: SweepRecord, *, subject: str) -> tuple[Any, float]:
    """Haufe patterns of a fold model, with the covariance of its held-out subject's EEG as the
    model sees it (:meth:`TrainedFold.model_input`: aligned where the model aligns, normalised
    with the training statistics)."""
    from eeg2bold.models.interpret import eeg_covariance, interpret
    from eeg2bold.storage import open_dataset
    from eeg2bold.storage.location import expand_env
    from eeg2bold.training.trained import TrainedFold

    fold = TrainedFold.load(file)
    dataset = open_dataset(expand_env(str(sweep.config.get("dataset", ""))))
    channels = list(fold.card["channels"])
    keys = [k for k in dataset.runs() if k.subject == subject] or list(dataset.runs())[:1]
    run = dataset.read_run(keys[0])
    have = list(dataset.info.eeg.channels)
    eeg = np.asarray(run.eeg, dtype=np.float32)[[have.index(c) for c in channels]]
    cov = eeg_covariance([fold.model_input(eeg)])
    return interpret(fold.module, covariance=cov, channels=channels), float(
        fold.card["spec"]["sfreq"]
    )

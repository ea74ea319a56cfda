"""The generalisation report of a sweep: one self-contained HTML file and the JSON behind it.

Every number the HTML shows is taken from the JSON document (:attr:`Report.data`), which is
built first; figures are PNGs embedded as data URIs, so the file opens anywhere, offline.
At atlas scale (hundreds of parcels) per-ROI figures keep a fixed size and per-ROI tables
show their best :data:`TABLE_ROWS` rows, with every row in an embedded CSV and the JSON.
Statistics come from :func:`eeg2bold.study.aggregate.summarize` (nested selection on val,
bootstrap CIs across subjects, surrogate chance, FDR, paired LOSO-vs-within tests).
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from eeg2bold.errors import DatasetError, Eeg2BoldError
from eeg2bold.run_folder import PredictionFiles, fold_stem
from eeg2bold.run_folder.files import write_bytes
from eeg2bold.study import figures
from eeg2bold.study.aggregate import Summary, plain_json, search_gain, summarize
from eeg2bold.study.queries import (
    TRIAL_COLUMNS,
    SweepRecord,
    defaults_trials,
    load_sweep,
    trials_table,
)
from eeg2bold.training.metrics import fisher_mean

REPORT_FORMAT = "eeg2bold.report/1"
SECTIONS = (
    ("summary", "Summary"),
    ("calibration", "Calibration curve"),
    ("dataset", "Dataset"),
    ("sweep", "Sweep"),
    ("results", "Per-ROI results"),
    ("generalization", "Generalisation to unseen subjects"),
    ("traces", "Predicted vs true BOLD"),
    ("interpretation", "What the model learned"),
    ("reproducibility", "Reproducibility"),
)
# shown after the per-ROI results when the dataset records ROI positions (bold.roi_mni)
BRAIN_SECTION = ("brain", "On the brain")
Echo = Callable[[str], None]
# fANOVA importances from fewer completed trials are noise: shown only from this many on
MIN_IMPORTANCE_TRIALS = 10
# per-ROI tables longer than this show their best rows; every row is in the CSV and JSON
TABLE_ROWS = 25
# more ROIs than this (an atlas of parcels): a ranked profile instead of one bar per ROI
MAX_BARS = 40
# ROI names listed in the dataset facts before "…"
LISTED_NAMES = 12


def sections(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The sections a report shows, in order: :data:`SECTIONS`, and "On the brain" after the
    per-ROI results when it has figures."""
    out = list(SECTIONS)
    if (data.get("brain") or {}).get("figures"):
        out.insert([k for k, _ in out].index("results") + 1, BRAIN_SECTION)
    return out


def _top(
    rows: Sequence[Mapping[str, Any]], *, key: str, k: int = TABLE_ROWS
) -> list[Mapping[str, Any]]:
    """All rows, in their order, when there are at most ``k``; else the ``k`` with the highest
    ``key`` (undefined last), highest first."""
    if len(rows) <= k:
        return list(rows)

    def rank(row: Mapping[str, Any]) -> float:
        v = row.get(key)
        return -float(v) if v is not None and math.isfinite(v) else math.inf

    return sorted(rows, key=rank)[:k]


@dataclass
class Report:
    """The report's numbers (``data``, plain JSON) and figures (PNG bytes by id)."""

    data: dict[str, Any]
    figures: dict[str, bytes] = field(default_factory=dict)

    def html(self) -> str:
        return render_html(self)


# -- numbers -------------------------------------------------------------------------------
def _dataset_section(sweep: SweepRecord) -> dict[str, Any]:
    from eeg2bold.storage import open_dataset
    from eeg2bold.storage.location import expand_env
    from eeg2bold.storage.summary import summarize as summarize_dataset

    url = str(sweep.config.get("dataset", ""))
    try:
        dataset = open_dataset(expand_env(url))
        summary = summarize_dataset(dataset)
    except Eeg2BoldError as exc:  # moved or unreachable: the rest of the report still stands
        return {"url": url, "error": str(exc)}
    rois = list(summary["bold"].get("rois", []))
    summary["n_rois"] = len(rois)
    oracle: dict[str, list[float]] = {}
    targets = sweep.targets
    if targets["common_mode"] or targets["rois"]:
        oracle = _target_oracle(dataset, rois, targets)
    else:
        for run in summary["runs"]:
            values = run.get("oracle_r")
            if isinstance(values, Mapping):
                values = [values.get(r) for r in rois]
            for roi, v in zip(rois, values or [], strict=False):
                if v is not None:
                    oracle.setdefault(roi, []).append(float(v))
    summary["oracle_r"] = {roi: float(fisher_mean(np.asarray(v))) for roi, v in oracle.items()}
    return summary


def _target_oracle(
    dataset: Any, rois: Sequence[str], targets: Mapping[str, Any]
) -> dict[str, list[float]]:
    """Per-run oracle r of the outputs the models predicted (an ROI subset, common-mode
    residuals and the common mode), from the simulator's noise-free BOLD."""
    from eeg2bold.geometry import COMMON_MODE
    from eeg2bold.simulate.statistics import target_oracle_r

    chosen = [r for r in (targets["rois"] or rois) if r in rois]
    index = [rois.index(r) for r in chosen]
    names = chosen + ([COMMON_MODE] if targets["common_mode"] else [])
    out: dict[str, list[float]] = {}
    for key in dataset.runs():
        run = dataset.read_run(key, truth=True)  # BOLD and its noise-free twin in one read
        if run.truth is None or "bold_clean" not in run.truth.arrays:
            continue
        values = target_oracle_r(
            run.truth.arrays["bold_clean"][index],
            np.asarray(run.bold)[index],
            common_mode=targets["common_mode"],
        )
        for name, v in zip(names, values, strict=True):
            out.setdefault(name, []).append(float(v))
    return out


def _importances(sweep: SweepRecord, arm: Mapping[str, Any]) -> dict[str, Any]:
    """Optuna's fANOVA importances of one arm (needs completed trials with varied params)."""
    import optuna

    from eeg2bold.storage.optuna_db import optuna_storage

    try:
        study = optuna.load_study(
            study_name=arm["study_name"], storage=optuna_storage(sweep.optuna_url)
        )
        done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
        if len(done) < MIN_IMPORTANCE_TRIALS:
            return {
                "skipped": f"{len(done)} completed trial(s); importances need at least "
                f"{MIN_IMPORTANCE_TRIALS}"
            }
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        values = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (RuntimeError, ValueError, KeyError) as exc:
        return {"skipped": f"not computable: {exc}"}
    if not values:
        return {"skipped": "no parameter varied across completed trials"}
    return {"values": {k: float(v) for k, v in values.items()}}


def _sweep_section(sweep: SweepRecord, trials: pd.DataFrame, echo: Echo) -> dict[str, Any]:
    arms = []
    for arm in sweep.arms():
        mine = trials[(trials["protocol"] == arm["protocol"]) & (trials["model"] == arm["model"])]
        mine = mine.sort_values("number") if not mine.empty else mine
        states = mine["state"].value_counts().to_dict() if not mine.empty else {}
        entry: dict[str, Any] = {
            "protocol": arm["protocol"],
            "model": arm["model"],
            "study_name": arm["study_name"],
            "n_trials": int(len(mine)),
            "states": {str(k): int(v) for k, v in states.items()},
            # ASHA-stopped trials are COMPLETE in Optuna; "finished" tells them apart
            "n_retries": int(mine["retries"].sum()) if "retries" in mine else 0,
            "n_lost_nodes": int(mine["lost_nodes"].sum()) if "lost_nodes" in mine else 0,
            "n_ran_to_end": int(
                ((mine["state"] == "COMPLETE") & mine["finished"].astype(bool)).sum()
                if len(mine)
                else 0
            ),
            "history": [
                {"trial": str(t.trial), "number": int(t.number), "val_r": t.val_r}
                | {"state": t.state}
                for t in mine.itertuples()
            ],
            "best": None,
        }
        done = mine[(mine["state"] == "COMPLETE") & mine["val_r"].notna()] if len(mine) else mine
        if len(done):
            finished = done[done["finished"].astype(bool)]
            pool = finished if len(finished) else done
            best = pool.sort_values("val_r", ascending=False).iloc[0]
            entry["best"] = {
                "trial": str(best["trial"]),
                "number": int(best["number"]),
                "val_r": best["val_r"],
                "test_r": best.get("test_r"),
                "epochs": best.get("epochs"),
                "config_hash": best.get("config_hash"),
                "params": {
                    k.removeprefix("param."): best[k]
                    for k in mine.columns
                    if k.startswith("param.") and pd.notna(best[k])
                },
            }
        echo(f"report: importances of {arm['protocol']} × {arm['model']}")
        entry["importances"] = _importances(sweep, arm)
        arms.append(entry)
    failures = trials[trials["state"] == "FAIL"] if len(trials) else trials
    return {
        "sweep_id": sweep.plan.get("sweep_id"),
        "name": sweep.config.get("name"),
        "n_trials": int(len(trials)),
        "arms": arms,
        "failures": [
            {
                "protocol": f.protocol,
                "model": f.model,
                "trial": str(f.trial),
                "reason": f.failure_reason,
            }
            for f in failures.itertuples()
        ],
    }


def _headline(summary: Summary, oracle: Mapping[str, float]) -> list[dict[str, Any]]:
    """One row per protocol × model: the numbers a reader wants before any figure."""
    alpha = float(summary.settings["alpha"])
    rows = []
    for (protocol, model), frame in summary.rois.groupby(["protocol", "model"], sort=True):
        r = frame["r"].dropna().to_numpy(dtype=np.float64)
        gaps = summary.comparisons[
            (summary.comparisons["model"] == model) & (summary.comparisons["protocol"] == protocol)
        ]["gap"].dropna()
        rows.append(
            {
                "protocol": protocol,
                "model": model,
                "n_subjects": int(frame["n_subjects"].max()),
                "n_rois": int(len(frame)),
                "mean_r": float(fisher_mean(r)) if r.size else None,
                "min_r": float(r.min()) if r.size else None,
                "max_r": float(r.max()) if r.size else None,
                "n_above_chance": int((frame["sign_flip_q"] < alpha).sum()),
                # exact sign flips over S subjects cannot give p below 2^-S (one-sided)
                "min_possible_p": 2.0 ** -int(frame["n_subjects"].max()),
                "mean_gap": float(gaps.mean()) if len(gaps) else None,
                "oracle_r": (
                    float(fisher_mean(np.array([oracle[roi] for roi in frame["roi"]])))
                    if oracle and all(roi in oracle for roi in frame["roi"])
                    else None
                ),
            }
        )
    return rows


def _overview(
    arms: Sequence[Mapping[str, Any]], oracle: Mapping[str, float], figs: dict[str, bytes]
) -> dict[str, Any]:
    """Every model × protocol at a glance (calibration-curve points have their own figure)."""
    shown = [a for a in arms if a["calibration_min"] is None]
    if not shown:
        return {"skipped": "no finished fold with a test score"}
    mean_oracle = float(fisher_mean(np.array(list(oracle.values())))) if oracle else None
    figs["overview"] = figures.overview(shown, oracle=mean_oracle)
    return {"arms": shown, "oracle_r": mean_oracle, "figure": "overview"}


def _calibration(arms: Sequence[Mapping[str, Any]], figs: dict[str, bytes]) -> dict[str, Any]:
    """The calibration curve: test r on a new subject against minutes of its data."""
    points = [
        {**a, "minutes": a["calibration_min"]} for a in arms if a["calibration_min"] is not None
    ]
    if not points:
        return {
            "skipped": "no calibration curve in this study (calibration_minutes in the study "
            "config, or `eeg2bold train --calibration-minutes`)"
        }
    models = {p["model"] for p in points}
    references = [
        a
        for a in arms
        if a["model"] in models and a["protocol"] in ("within", "loso") and a["r"] is not None
    ]
    figs["calibration"] = figures.calibration_curve(points, references)
    return {"points": points, "references": references, "figure": "calibration"}


def _subject_points(selection: pd.DataFrame, reference: str) -> dict[str, list[dict[str, Any]]]:
    """Per model: each subject's Fisher-mean test r over ROIs, within vs every other protocol."""
    out: dict[str, list[dict[str, Any]]] = {}
    if selection.empty:
        return out
    per = (
        selection.dropna(subset=["test_r"])
        .groupby(["model", "protocol", "subject"])["test_r"]
        .agg(lambda r: float(fisher_mean(r.to_numpy())))
        .reset_index()
    )
    for model, frame in per.groupby("model"):
        ref = frame[frame["protocol"] == reference].set_index("subject")["test_r"]
        for protocol in sorted(set(frame["protocol"]) - {reference}):
            other = frame[frame["protocol"] == protocol].set_index("subject")["test_r"]
            for subject in sorted(set(ref.index) & set(other.index)):
                out.setdefault(str(model), []).append(
                    {
                        "protocol": protocol,
                        "subject": subject,
                        reference: float(ref[subject]),
                        "other": float(other[subject]),
                    }
                )
    return out


def _best_arm(rois: pd.DataFrame, *, models: Sequence[str] | None = None) -> tuple[str, str] | None:
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


def _trace_section(
    summary: Summary, predictions: PredictionFiles, figs: dict[str, bytes]
) -> dict[str, Any]:
    best = _best_arm(summary.rois)
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
        "shown": [s["roi"] for s in _top(scores, key="r")],
        "figure": "traces",
    }


def _interpretation_section(
    sweep: SweepRecord, summary: Summary, figs: dict[str, bytes]
) -> dict[str, Any]:
    from eeg2bold.models.base import get_model_class, model_names

    interpretable = [m for m in model_names() if get_model_class(m).interpretable]
    best = _best_arm(summary.rois, models=interpretable)
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


def _alignment_note(sweep: SweepRecord, summary: Summary) -> str | None:
    """Where the selected configurations align subjects, say how the held-out ones were."""
    arms = set()
    chosen = summary.selection.drop_duplicates(["protocol", "model", "config_hash"])
    for row in chosen.itertuples():
        try:
            config = sweep.folder.read_config(str(row.config_hash))
        except (OSError, ValueError, KeyError, DatasetError):
            continue
        if (config.get("data") or {}).get("align") == "euclidean":
            arms.add(f"{row.protocol}/{row.model}")
    if not arms:
        return None
    return (
        f"Euclidean alignment (data.align) in {', '.join(sorted(arms))}: each subject's EEG was "
        "re-centred by its own mean spatial covariance, from its training windows; a subject "
        "without any (held out by loso, or loso_calibrated at 0 min) was aligned by its own "
        "unlabelled EEG under its test windows — transductive, label-free, never its BOLD."
    )


def build_report(
    study: str | os.PathLike[str],
    *,
    n_boot: int = 10000,
    n_surrogates: int = 1000,
    seed: int = 0,
    echo: Echo | None = None,
) -> Report:
    """Read a sweep folder (or its study config) and compute everything the report shows."""
    say = echo or (lambda _msg: None)
    started = time.perf_counter()
    sweep = load_sweep(study)  # a sweep's or a train run's folder (or a clear error)
    figs: dict[str, bytes] = {}
    say(f"report: reading {sweep.root}")
    results = sweep.folder.results()
    if results.empty or not results["final"].astype(bool).any():
        raise DatasetError(f"{sweep.root}: no finished fold in the results table yet")
    trials = trials_table(sweep) if sweep.arms() else pd.DataFrame(columns=TRIAL_COLUMNS)
    data: dict[str, Any] = {"format": REPORT_FORMAT, "study": str(study)}
    say("report: dataset summary")
    data["dataset"] = _dataset_section(sweep)
    data["sweep"] = _sweep_section(sweep, trials, say)
    if any(arm["history"] for arm in data["sweep"]["arms"]):
        figs["histories"] = figures.history_grid([a for a in data["sweep"]["arms"] if a["history"]])
        data["sweep"]["figure_histories"] = "histories"
    for arm in data["sweep"]["arms"]:
        if "values" in arm["importances"]:
            key = f"importances-{arm['protocol']}-{arm['model']}"
            figs[key] = figures.importances(
                arm["importances"]["values"], title=f"{arm['protocol']} × {arm['model']}"
            )
            arm["figure_importances"] = key
    predictions = sweep.folder.predictions()
    say(f"report: statistics ({n_boot} bootstrap resamples, {n_surrogates} surrogates per fold)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = summarize(
            results, predictions=predictions, n_boot=n_boot, n_surrogates=n_surrogates, seed=seed
        )
    data["notes"] = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    for note in data["notes"]:
        say(f"report: note: {note}")
    aligned = _alignment_note(sweep, summary)
    if aligned:
        data["notes"].append(aligned)
        say(f"report: note: {aligned}")
    data["statistics"] = summary.to_dict()
    data["search_gain"] = _search_gain(results, summary, trials)
    oracle = data["dataset"].get("oracle_r", {})
    data["summary"] = _headline(summary, oracle)
    data["overview"] = _overview(data["statistics"]["arms"], oracle, figs)
    data["calibration"] = _calibration(data["statistics"]["arms"], figs)
    say("report: per-ROI figures")
    data["results"] = _results_section(summary, oracle, figs)
    data["brain"] = _brain_section(data["dataset"], summary, figs)
    reference = summary.settings["reference"]
    points = _subject_points(summary.selection, reference)
    data["generalization"] = {
        "reference": reference,
        "points": points,
        "shown": _shown_comparisons(data["statistics"]["comparisons"]),
    }
    if points:
        series: dict[str, list[tuple[str, float, float]]] = {}
        for model, pts in points.items():
            for q in pts:
                name = model if q["protocol"] == "loso" else f"{model} ({q['protocol']})"
                series.setdefault(name, []).append((q["subject"], q[reference], q["other"]))
        figs["loso_vs_within"] = figures.loso_vs_within(series)
        data["generalization"]["figure"] = "loso_vs_within"
    say("report: traces and interpretation")
    data["traces"] = _trace_section(summary, predictions, figs)
    data["interpretation"] = _interpretation_section(sweep, summary, figs)
    data["reproducibility"] = _reproducibility(sweep, summary, trials)
    data["build_seconds"] = time.perf_counter() - started
    data["figures"] = sorted(figs)
    return Report(data=plain_json(data), figures=figs)


def _search_gain(results: pd.DataFrame, summary: Summary, trials: pd.DataFrame) -> dict[str, Any]:
    """Per arm: the selected configurations' test r beside the defaults trial's (trial 0 of
    every arm's search), over the same subjects; and the mean over arms of the difference."""
    defaults = defaults_trials(trials)
    if not defaults:
        return {"arms": [], "mean_bought_r": None}
    gain = search_gain(results, summary.arms, defaults)
    mean = float(gain["bought_r"].mean()) if len(gain) else None
    return plain_json({"arms": gain.to_dict(orient="records"), "mean_bought_r": mean})


def _results_section(
    summary: Summary, oracle: Mapping[str, float], figs: dict[str, bytes]
) -> list[dict[str, Any]]:
    """Per protocol × model: the per-ROI figure (bars, or a ranked profile for many ROIs) and
    the ROIs its table shows (all, or the :data:`TABLE_ROWS` with the highest r)."""
    alpha = float(summary.settings["alpha"])
    out = []
    for (protocol, model), frame in summary.rois.groupby(["protocol", "model"], sort=True):
        key = f"rois-{protocol}-{model}"
        records = plain_json(frame.to_dict(orient="records"))
        rows = [{**row, "q": row.get("sign_flip_q")} for row in records]
        ranked = len(rows) > MAX_BARS
        n = int(frame["n_subjects"].max())
        marks = [oracle.get(r["roi"]) for r in rows] if oracle else None
        if ranked:
            title = f"{model}, {protocol}: test r of {len(rows)} ROIs, ranked (n = {n})"
            figs[key] = figures.roi_ranked(rows, title=title, oracle=marks, alpha=alpha)
        else:
            title = f"{model}, {protocol}: test r per ROI (n = {n})"
            figs[key] = figures.roi_bars(rows, title=title, oracle=marks)
        out.append(
            {
                "protocol": protocol,
                "model": model,
                "figure": key,
                "figure_kind": "ranked" if ranked else "bars",
                "n_rois": len(rows),
                "shown": [r["roi"] for r in _top(rows, key="r")],
            }
        )
    return out


def _shown_comparisons(comparisons: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per model × compared protocol, the ROIs the gap table shows: all, or the
    :data:`TABLE_ROWS` with the largest gap (most lost on unseen subjects)."""
    pairs: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for c in comparisons:
        pairs.setdefault((c["model"], c["protocol"]), []).append(c)
    return [
        {
            "model": model,
            "protocol": protocol,
            "n_rois": len(rows),
            "rois": [c["roi"] for c in _top(rows, key="gap")],
        }
        for (model, protocol), rows in pairs.items()
    ]


def _brain_section(
    dataset: Mapping[str, Any], summary: Summary, figs: dict[str, bytes]
) -> dict[str, Any]:
    """Per protocol × model, each parcel's test r at its MNI position (``bold.roi_mni``), on
    one symmetric colour scale for all figures; parcels with sign-flip q < alpha (BH across
    the arm's outputs, the results table's q) marked. Outputs without a position (the common
    mode) are left out and listed."""
    coords = (dataset.get("bold") or {}).get("roi_mni")
    if "error" in dataset:
        return {"skipped": "the dataset could not be read"}
    if not coords:
        return {"skipped": "the dataset records no ROI positions (bold.roi_mni)"}
    where = dict(zip(dataset["bold"]["rois"], coords, strict=True))
    alpha = float(summary.settings["alpha"])
    rois = summary.rois
    placed = rois[rois["roi"].isin(list(where)) & rois["r"].notna()]
    if placed.empty:
        return {"skipped": "no ROI with a position has a test r"}
    peak = float(np.abs(placed["r"].to_numpy(dtype=np.float64)).max())
    vmax = max(0.05, math.ceil(peak * 20 - 1e-9) / 20)  # up to the next 0.05: a round scale
    entries = []
    for (protocol, model), frame in placed.groupby(["protocol", "model"], sort=True):
        q = frame["sign_flip_q"].to_numpy(dtype=np.float64)
        significant = np.isfinite(q) & (q < alpha)
        key = f"brain-{protocol}-{model}"
        figs[key] = figures.brain_markers(
            frame["r"].to_numpy(dtype=np.float64),
            [where[r] for r in frame["roi"]],
            significant,
            vmax=vmax,
            title=f"{model}, {protocol}: test r",
            alpha=alpha,
        )
        mine = rois[(rois["protocol"] == protocol) & (rois["model"] == model)]
        entries.append(
            {
                "protocol": protocol,
                "model": model,
                "figure": key,
                "n_parcels": int(len(frame)),
                "n_significant": int(significant.sum()),
                "significant": [str(r) for r in frame["roi"][significant]],
                "left_out": sorted(str(r) for r in set(mine["roi"]) - set(where)),
                "unscored": sorted(
                    str(r) for r in set(mine["roi"]) & set(where) - set(frame["roi"])
                ),
            }
        )
    return {"alpha": alpha, "vmin": -vmax, "vmax": vmax, "figures": entries}


def _reproducibility(sweep: SweepRecord, summary: Summary, trials: pd.DataFrame) -> dict[str, Any]:
    from eeg2bold.provenance import environment

    selected = summary.selection.drop_duplicates(["protocol", "model", "fold"])
    return {
        "report": environment(),
        "sweep": sweep.provenance,
        "study_config": sweep.config,
        "study_seed": sweep.config.get("seed"),
        "statistics": summary.settings,
        "selected_configs": [
            {
                "protocol": r.protocol,
                "model": r.model,
                "fold": int(r.fold),
                "subject": r.subject,
                "trial": r.trial,
                "config_hash": r.config_hash,
                "seed": int(r.seed),
            }
            for r in selected.itertuples()
        ],
        "config_hashes": sorted({str(h) for h in trials.get("config_hash", []) if pd.notna(h)}),
    }


# -- HTML ----------------------------------------------------------------------------------
def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–"
        if value != 0 and abs(value) < 10**-digits:
            return f"{value:.1e}"
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, digits: int = 3) -> str:
    body = "".join(
        "<tr>" + "".join(f"<td>{_fmt(v, digits)}</td>" for v in row) + "</tr>" for row in rows
    )
    if not any(headers):  # a key-value table
        return f"<table><tbody>{body}</tbody></table>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(report: Report, key: str, alt: str) -> str:
    data = base64.b64encode(report.figures[key]).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def _download(name: str, records: Sequence[Mapping[str, Any]], what: str) -> str:
    """A link that saves ``records`` as ``name`` (CSV inside the page: still one file)."""
    payload = pd.DataFrame(list(records)).to_csv(index=False).encode("utf-8")
    data = base64.b64encode(payload).decode("ascii")
    return (
        f'<p class="note">{html.escape(what)}: <a download="{html.escape(name)}" '
        f'href="data:text/csv;base64,{data}">{html.escape(name)}</a></p>'
    )


def _shown_note(shown: int, total: int, what: str, order: str) -> str:
    if shown >= total:
        return ""
    return _note(f"The {shown} of {total} {what} with the {order} shown; every row is in the CSV.")


def _arm_rows(arms: Sequence[Mapping[str, Any]], *, minutes: bool = False) -> str:
    headers = ["protocol", "model"] + (["minutes"] if minutes else [])
    headers += ["subjects", "mean r", "CI low", "CI high", "chance low", "chance high"]
    rows = [
        [a["protocol"], a["model"]]
        + ([a["minutes"]] if minutes else [])
        + [a["n_subjects"], a["r"], a["ci_low"], a["ci_high"], a["chance_low"], a["chance_high"]]
        for a in arms
    ]
    return _table(headers, rows)


def _html_overview(report: Report) -> str:
    o = report.data["overview"]
    if "skipped" in o:
        return _note(f"Overview skipped: {o['skipped']}.")
    out = _img(report, o["figure"], "mean test r per model and protocol")
    out += _note(
        "Per model × protocol: each subject's mean test r over ROIs (Fisher z), averaged over "
        "subjects, with its 95% bootstrap CI across subjects and the chance band of that mean "
        "(circular-shift surrogates); the dashed line is the oracle r (simulated data)."
    )
    return out + _arm_rows(o["arms"])


def _html_calibration(report: Report) -> str:
    c = report.data["calibration"]
    if "skipped" in c:
        return _note(f"Skipped: {c['skipped']}.")
    out = _img(report, c["figure"], "calibration curve")
    out += _note(
        "How much of a new subject's own data buys back: loso_calibrated at each amount of the "
        "held-out subject's data in training, scored on one fixed test block of that subject "
        "(0 min: LOSO on the same block); selection never sees the new subject. Dashed: "
        "within-subject, dotted: plain LOSO (their own test blocks), for the same model."
    )
    return out + _arm_rows(c["points"], minutes=True)


def _html_summary(report: Report) -> str:
    rows = report.data["summary"]
    alpha = report.data["statistics"]["settings"]["alpha"]
    reference = report.data["statistics"]["settings"]["reference"]
    out = _note(
        "Per protocol × model, after nested selection: mean test r over ROIs (Fisher z of the "
        f"per-ROI means across subjects), its range over ROIs, ROIs whose sign-flip q < {alpha} "
        f"(FDR across ROIs), and the mean generalisation gap ({reference} − protocol) over ROIs."
    )
    small = [r for r in rows if r["min_possible_p"] > alpha]
    if small:
        worst = min(small, key=lambda r: r["n_subjects"])
        out += _note(
            f"With {worst['n_subjects']} subjects the smallest possible sign-flip p is "
            f"{worst['min_possible_p']}, so no ROI can pass q < {alpha}: more subjects are needed "
            "before significance can be read."
        )
    with_oracle = any(r["oracle_r"] is not None for r in rows)
    headers = ["protocol", "model", "subjects", "mean r", "min ROI r", "max ROI r"]
    headers += ["ROIs above chance", "mean gap"] + (["oracle r"] if with_oracle else [])
    table = [
        [
            r["protocol"],
            r["model"],
            r["n_subjects"],
            r["mean_r"],
            r["min_r"],
            r["max_r"],
            f"{r['n_above_chance']} of {r['n_rois']}",
            r["mean_gap"],
        ]
        + ([r["oracle_r"]] if with_oracle else [])
        for r in rows
    ]
    return _html_overview(report) + out + _table(headers, table) + _html_gain(report)


def _html_gain(report: Report) -> str:
    section = report.data.get("search_gain") or {}
    gain = section.get("arms") or []
    if not gain:
        return ""
    bought = [g["bought_r"] for g in gain]
    out = _note(
        f"What the search bought: over {len(gain)} arm(s), the selected configurations' mean "
        f"test r is {section['mean_bought_r']:+.3f} from the models' defaults on average "
        f"(from {min(bought):+.3f} to {max(bought):+.3f}). The defaults are trial 0 of every "
        "arm's search (what eeg2bold train gives), trained to the end and scored on the same "
        "subjects; selection is nested and never sees test."
    )
    rows = [
        [g["protocol"], g["model"], g["n_subjects"], g["defaults_r"], g["r"], g["bought_r"]]
        for g in gain
    ]
    headers = ["protocol", "model", "subjects", "defaults r", "selected r", "bought"]
    return out + _table(headers, rows)


def _html_dataset(d: Mapping[str, Any]) -> str:
    if "error" in d:
        return _note(f"dataset {d['url']} could not be read: {d['error']}")
    eeg, bold = d["eeg"], d["bold"]
    facts = [
        ("store", d["url"]),
        ("name", d["name"]),
        ("subjects", d["n_subjects"]),
        ("runs", d["n_runs"]),
        ("total duration (min)", d["total_duration_s"] / 60.0),
        ("EEG channels", len(eeg.get("channels", []))),
        ("EEG sampling rate (Hz)", eeg.get("sfreq")),
        ("TR (s)", bold.get("tr")),
        ("ROIs", _names(list(bold.get("rois", [])))),
    ]
    out = _table(["", ""], facts, digits=2)
    runs = [
        [
            r["subject"],
            r["run"],
            r["duration_s"] / 60.0,
            r.get("n_volumes"),
            ", ".join(r.get("bad_channels") or []) or "none",
            "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in r["qc_flags"].items()) or "none",
        ]
        for r in d["runs"]
    ]
    out += _table(
        ["subject", "run", "minutes", "volumes", "bad channels", "QC flags"], runs, digits=1
    )
    if d.get("oracle_r"):
        out += (
            "<p>Simulated data: the oracle r (noise-free BOLD against the noisy one, the best "
            "any model can reach) per ROI, averaged over runs (Fisher z):</p>"
        )
        oracle = list(d["oracle_r"].items())
        out += _table(["ROI", "oracle r"], oracle[:TABLE_ROWS])
        if len(oracle) > TABLE_ROWS:
            out += _note(f"The first {TABLE_ROWS} of {len(oracle)} ROIs; all are in the JSON.")
    return out


def _names(names: Sequence[str]) -> str:
    if len(names) <= LISTED_NAMES:
        return ", ".join(names)
    return ", ".join(names[:LISTED_NAMES]) + f", … ({len(names)} in all)"


def _html_sweep(report: Report) -> str:
    s = report.data["sweep"]
    if not s["arms"]:
        return _note(
            "Trained with eeg2bold train: one configuration, no search (its settings are in "
            "the reproducibility section)."
        )
    out = f"<p>Sweep {_fmt(s['name'])} (id {_fmt(s['sweep_id'])}): {s['n_trials']} trials.</p>"
    rows = []
    for arm in s["arms"]:
        best = arm["best"] or {}
        params = ", ".join(f"{k}={_short(v)}" for k, v in (best.get("params") or {}).items())
        rows.append(
            [
                arm["protocol"],
                arm["model"],
                arm["n_trials"],
                ", ".join(f"{k} {v}" for k, v in sorted(arm["states"].items()))
                + f" ({arm['n_ran_to_end']} ran to the end)"
                + _retries_text(arm),
                best.get("trial"),
                best.get("val_r"),
                best.get("test_r"),
                params or "–",
            ]
        )
    out += "<h3>Best configuration per protocol × model (ranked by mean validation r)</h3>"
    out += _table(
        ["protocol", "model", "trials", "states", "best trial", "val r", "test r", "parameters"],
        rows,
    )
    out += _note(
        "Test r is shown beside the best trial for information only; it never selects. The "
        "per-ROI results below use nested selection: per held-out subject, the configuration "
        "with the best validation score on that fold."
    )
    out += "<h3>Optimisation history</h3>"
    if s.get("figure_histories"):
        out += _img(report, s["figure_histories"], "optimisation histories")
    shown = [a for a in s["arms"] if a.get("figure_importances")]
    skipped = [a for a in s["arms"] if "skipped" in a["importances"]]
    out += "<h3>Parameter importances</h3>"
    if shown:
        out += (
            '<div class="figs">'
            + "".join(
                _img(report, a["figure_importances"], f"importances {a['protocol']} {a['model']}")
                for a in shown
            )
            + "</div>"
        )
    if skipped:
        out += _note(
            f"Importances shown only for arms with at least {MIN_IMPORTANCE_TRIALS} completed "
            "trials (fewer give noise); skipped: "
            + "; ".join(f"{a['protocol']} × {a['model']}" for a in skipped)
            + "."
        )
    if s["failures"]:
        out += "<h3>Failed trials</h3>" + _table(
            ["protocol", "model", "trial", "reason"],
            [[f["protocol"], f["model"], f["trial"], f["reason"]] for f in s["failures"]],
        )
    return out


def _retries_text(arm: Mapping[str, Any]) -> str:
    n, lost = arm.get("n_retries", 0), arm.get("n_lost_nodes", 0)
    if not n:
        return ""
    return (
        f"; {n} retried ({lost} after losing their node, {n - lost} after losing a worker), "
        "each resumed from its last epoch checkpoint"
    )


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _html_results(report: Report) -> str:
    stats = report.data["statistics"]
    settings = stats["settings"]
    out = _note(
        "Mean test r across subjects, one per fold (Fisher z); "
        f"{settings['level']:.0%} bootstrap CI ({settings['n_boot']} resamples across "
        "subjects); chance band from "
        f"{settings['n_surrogates']} circular shifts (≥ {settings['min_shift_s']:g} s) of each "
        "selected fold's test predictions; p from sign flips of subject z (H1: r > 0) with "
        "Benjamini–Hochberg q across ROIs; * marks q < 0.05."
    )
    if report.data.get("notes"):
        out += "<details><summary>Notes on the statistics</summary><ul>"
        out += (
            "".join(f"<li>{html.escape(n)}</li>" for n in report.data["notes"]) + "</ul></details>"
        )
    out += _download("rois.csv", stats["rois"], "Every ROI of every protocol × model")
    for entry in report.data["results"]:
        out += f"<h3>{html.escape(entry['model'])}, {html.escape(entry['protocol'])}</h3>"
        out += _img(report, entry["figure"], f"ROI bars {entry['protocol']} {entry['model']}")
        if entry.get("figure_kind") == "ranked":
            out += _note(
                f"{entry['n_rois']} ROIs ranked by test r: line, its 95% CI (band) and the "
                f"chance band; dots: q < {settings['alpha']:g}."
            )
        mine = {
            r["roi"]: r
            for r in stats["rois"]
            if r["protocol"] == entry["protocol"] and r["model"] == entry["model"]
        }
        rows = [
            [
                r["roi"],
                r["n_subjects"],
                r["r"],
                r["ci_low"],
                r["ci_high"],
                r["chance_low"],
                r["chance_high"],
                r["sign_flip_p"],
                r["sign_flip_q"],
                r["surrogate_q"],
            ]
            for r in (mine[roi] for roi in entry["shown"])
        ]
        out += _shown_note(len(rows), len(mine), "ROIs", "highest r")
        out += _table(
            [
                "ROI",
                "subjects",
                "r",
                "CI low",
                "CI high",
                "chance low",
                "chance high",
                "sign-flip p",
                "q (FDR)",
                "surrogate q",
            ],
            rows,
        )
    return out


def _html_generalization(report: Report) -> str:
    g = report.data["generalization"]
    stats = report.data["statistics"]
    if not g["points"]:
        return _note(
            f"Needs the {g['reference']} protocol and another one for the same model; this "
            "sweep has no such pair."
        )
    out = _img(report, g["figure"], "LOSO vs within scatter")
    out += _note(
        "One point per subject and model: its mean test r over ROIs within-subject (x) and "
        "with that subject left out (y). Below the diagonal: lost on an unseen subject."
    )
    by_key = {(c["model"], c["protocol"], c["roi"]): c for c in stats["comparisons"]}
    shown = g["shown"]
    chosen = [by_key[s["model"], s["protocol"], roi] for s in shown for roi in s["rois"]]
    rows = [
        [
            c["model"],
            c["protocol"],
            c["roi"],
            c["n_pairs"],
            c["reference_r"],
            c["protocol_r"],
            c["gap"],
            c["gap_low"],
            c["gap_high"],
            c["wilcoxon_two_sided_p"],
            c["wilcoxon_two_sided_q"],
            c["sign_flip_two_sided_p"],
            c["sign_flip_two_sided_q"],
        ]
        for c in chosen
    ]
    out += "<h3>Generalisation gap per ROI (within − other protocol)</h3>"
    out += _download("comparisons.csv", stats["comparisons"], "Every ROI's comparison")
    out += "".join(
        _shown_note(
            len(s["rois"]), s["n_rois"], f"ROIs of {s['model']} × {s['protocol']}", "largest gap"
        )
        for s in shown
    )
    out += _table(
        [
            "model",
            "protocol",
            "ROI",
            "pairs",
            f"{g['reference']} r",
            "other r",
            "gap",
            "gap CI low",
            "gap CI high",
            "Wilcoxon p",
            "Wilcoxon q",
            "sign-flip p",
            "sign-flip q",
        ],
        rows,
    )
    return out


def _html_traces(report: Report) -> str:
    t = report.data["traces"]
    if "skipped" in t:
        return _note(f"Skipped: {t['skipped']}.")
    which = "Best arm" if t["protocol"] == "within" else "Best cross-subject arm"
    out = _note(
        f"{which} {t['model']} ({t['protocol']}); the fold with the median test score "
        f"(subject {t['subject']}, trial {t['trial']}), not the best one; first contiguous "
        "test segment, z-scored for display."
    )
    out += _img(report, t["figure"], "predicted vs true BOLD")
    by_roi = {r["roi"]: r["r"] for r in t["rois"]}
    shown = t["shown"]
    if len(shown) < len(by_roi):
        out += _note(
            f"The {len(shown)} of {len(by_roi)} outputs with the highest test r in this fold "
            "are listed; all are in the JSON."
        )
    out += _table(["ROI", "test r (whole test split)"], [[roi, by_roi[roi]] for roi in shown])
    return out


def _html_brain(report: Report) -> str:
    b = report.data["brain"]
    alpha = b["alpha"]
    out = _note(
        "Each parcel's test r (Fisher mean across subjects, as in the per-ROI results) at its "
        f"MNI position, on one colour scale for every figure ({b['vmin']:g} to {b['vmax']:g}). "
        f"Large outlined markers: sign-flip q < {alpha:g} (Benjamini–Hochberg FDR across "
        "parcels); small faded ones: not significant."
    )
    left_out = sorted({roi for e in b["figures"] for roi in e["left_out"]})
    if left_out:
        out += _note("Without a position, not drawn: " + ", ".join(left_out) + ".")
    unscored = sorted({roi for e in b["figures"] for roi in e.get("unscored", [])})
    if unscored:
        out += _note("Without a test r, not drawn: " + _names(unscored) + ".")
    for e in b["figures"]:
        out += f"<h3>{html.escape(e['model'])}, {html.escape(e['protocol'])}</h3>"
        out += _img(report, e["figure"], f"parcels on the brain {e['protocol']} {e['model']}")
        out += _note(
            f"{e['n_significant']} of {e['n_parcels']} parcels with q < {alpha:g}"
            + (": " + _names(e["significant"]) if e["significant"] else "")
            + "."
        )
    return out


def _html_interpretation(report: Report) -> str:
    i = report.data["interpretation"]
    if "skipped" in i:
        return _note(f"Skipped: {i['skipped']}.")
    out = _note(
        f"{i['model']} ({i['protocol']}), fold model of {i['subject']} "
        f"({i['file']}): Haufe forward patterns of the front-end's spatial filters (covariance "
        "of that subject's EEG) and the magnitude responses of its band-pass filters."
    )
    if i.get("topomaps_skipped"):
        out += _note(f"Topomaps skipped: {i['topomaps_skipped']}.")
    out += '<div class="figs">' + "".join(_img(report, k, k) for k in i["figures"]) + "</div>"
    out += _table(
        ["branch", "peak frequency (Hz)"],
        [[b["branch"], b["peak_hz"]] for b in i["branches"]],
        digits=1,
    )
    return out


def _html_reproducibility(report: Report) -> str:
    r = report.data["reproducibility"]
    env = r["report"]
    git = env.get("git") or {}
    sweep_git = (r.get("sweep") or {}).get("git") or {}
    facts = [
        ("report built", env.get("time_utc")),
        ("report code commit", _commit(git)),
        ("sweep code commit", _commit(sweep_git) if r.get("sweep") else "not recorded"),
        ("study seed", r.get("study_seed")),
        ("statistics seed", r["statistics"].get("seed")),
        ("platform", env.get("platform")),
    ]
    facts += [(name, v or "not installed") for name, v in env["versions"].items()]
    out = _table(["", ""], facts)
    out += "<h3>Selected configuration per fold</h3>"
    out += _table(
        ["protocol", "model", "fold", "subject", "trial", "config hash", "seed"],
        [
            [
                c["protocol"],
                c["model"],
                c["fold"],
                c["subject"],
                c["trial"],
                c["config_hash"],
                c["seed"],
            ]
            for c in r["selected_configs"]
        ],
    )
    out += (
        "<h3>Study config</h3><pre>"
        + html.escape(json.dumps(r["study_config"], indent=2))
        + "</pre>"
    )
    return out


def _commit(git: Mapping[str, Any]) -> str:
    if not git:
        return "not a git checkout"
    return f"{git['commit']}{' (uncommitted changes)' if git.get('dirty') else ''}"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem auto;
max-width:1100px;padding:0 1rem;color:#222;line-height:1.4}
h1{font-size:1.6rem}h2{border-bottom:1px solid #ccc;padding-bottom:.2rem;margin-top:2.2rem}
h3{font-size:1.05rem;margin-top:1.4rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.85rem}
th,td{border:1px solid #ddd;padding:.2rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f4f4}img{max-width:100%;margin:.4rem .4rem .4rem 0}
.figs{display:flex;flex-wrap:wrap;align-items:flex-start}.note{color:#555;font-size:.9rem}
nav a{margin-right:1rem}pre{background:#f7f7f7;padding:.6rem;font-size:.75rem;overflow:auto}
"""


def render_html(report: Report) -> str:
    """The report as one HTML document: no script, no external resource."""
    d = report.data
    title = f"eeg2bold report: {d['sweep'].get('name') or d['study']}"
    parts = {
        "summary": _html_summary(report),
        "calibration": _html_calibration(report),
        "dataset": _html_dataset(d["dataset"]),
        "sweep": _html_sweep(report),
        "results": _html_results(report),
        "brain": _html_brain(report) if (d.get("brain") or {}).get("figures") else "",
        "generalization": _html_generalization(report),
        "traces": _html_traces(report),
        "interpretation": _html_interpretation(report),
        "reproducibility": _html_reproducibility(report),
    }
    shown = sections(d)
    nav = "".join(f'<a href="#{k}">{html.escape(v)}</a>' for k, v in shown)
    body = "".join(
        f'<section id="{k}"><h2>{html.escape(v)}</h2>{parts[k]}</section>' for k, v in shown
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><nav>{nav}</nav>{body}</body></html>"
    )


def _publish(path: Path, payload: bytes) -> None:
    write_bytes(path, payload, what="the report")


def write_report(
    report: Report, html_path: str | os.PathLike[str], json_path: str | os.PathLike[str] | None
) -> dict[str, Path]:
    """Write the HTML (and the JSON with every number it shows)."""
    written = {}
    target = Path(html_path)
    _publish(target, report.html().encode("utf-8"))
    written["html"] = target
    if json_path is not None:
        path = Path(json_path)
        _publish(path, json.dumps(report.data, indent=2, allow_nan=False).encode("utf-8"))
        written["json"] = path
    return written

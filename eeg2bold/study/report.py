"""The generalisation report of a sweep: one self-contained HTML file and the JSON behind it.

Every number the HTML shows is taken from the JSON document (:attr:`Report.data`), which is
built first; figures are PNGs embedded as data URIs, so the file opens anywhere, offline.
At atlas scale (hundreds of parcels) per-ROI figures keep a fixed size and per-ROI tables
show their best :data:`TABLE_ROWS` rows, with every row in an embedded CSV and the JSON.
Statistics come from :func:`eeg2bold.study.aggregate.summarize` (nested selection on val,
bootstrap CIs across subjects, surrogate chance, FDR, paired LOSO-vs-within tests).
"""

from __future__ import annotations

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
from pydantic import Field

from eeg2bold.errors import DatasetError, Eeg2BoldError
from eeg2bold.jsonsafe import json_safe
from eeg2bold.run_folder.files import write_bytes
from eeg2bold.strict_config import StrictConfig
from eeg2bold.study import figures
from eeg2bold.study.aggregate import Summary, search_gain, summarize
from eeg2bold.study.queries import (
    TRIAL_COLUMNS,
    SweepRecord,
    defaults_trials,
    load_sweep,
    trials_table,
)
from eeg2bold.study.selection import DEFAULT_RULE, DEFAULT_SMOOTH_EPOCHS, SelectionRule
from eeg2bold.study.showcase import interpretation_section, trace_section
from eeg2bold.study.stats import N_BOOT, N_SURROGATES
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


class ReportOptions(StrictConfig):
    """How much resampling the report's statistics do (the ``eeg2bold report`` options)."""

    n_boot: int = Field(N_BOOT, ge=1, description="Bootstrap resamples and sign flips.")
    n_surrogates: int = Field(
        N_SURROGATES, ge=1, description="Circular-shift surrogates per fold (the chance level)."
    )
    seed: int = Field(0, description="Seed of the resampling.")
    selection: SelectionRule = Field(
        DEFAULT_RULE,
        description="Nested selection per fold: the best val score (best), or the arm's "
        "defaults unless a configuration beats them on val by more than one standard error "
        "(one_se).",
    )
    smooth_epochs: int = Field(
        DEFAULT_SMOOTH_EPOCHS,
        ge=1,
        description="Rank each configuration on its val curve averaged over this many "
        "neighbouring epochs (1: its val r at its best epoch); damps the optimism of a noisy "
        "curve's maximum.",
    )


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
        from eeg2bold.study.report_html import render_html

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
    if not shown and arms:
        return {"skipped": "only calibration-curve arms: see the calibration curve"}
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
    options: ReportOptions | None = None,
    echo: Echo | None = None,
) -> Report:
    """Read a sweep folder (or its study config) and compute everything the report shows."""
    options = options or ReportOptions()
    n_boot, n_surrogates, seed = options.n_boot, options.n_surrogates, options.seed
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
            results,
            predictions=predictions,
            n_boot=n_boot,
            n_surrogates=n_surrogates,
            seed=seed,
            rule=options.selection,
            defaults=defaults_trials(trials),
            smooth_epochs=options.smooth_epochs,
        )
    data["notes"] = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    for note in data["notes"]:
        say(f"report: note: {note}")
    aligned = _alignment_note(sweep, summary)
    if aligned:
        data["notes"].append(aligned)
        say(f"report: note: {aligned}")
    data["statistics"] = summary.to_dict()
    data["search_gain"] = _search_gain(results, summary, trials, options)
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
    data["traces"] = trace_section(summary, predictions, figs)
    if "rois" in data["traces"]:
        data["traces"]["shown"] = [s["roi"] for s in _top(data["traces"]["rois"], key="r")]
    data["interpretation"] = interpretation_section(sweep, summary, figs)
    data["reproducibility"] = _reproducibility(sweep, summary, trials)
    data["build_seconds"] = time.perf_counter() - started
    data["figures"] = sorted(figs)
    return Report(data=json_safe(data), figures=figs)


def _search_gain(
    results: pd.DataFrame, summary: Summary, trials: pd.DataFrame, options: ReportOptions
) -> dict[str, Any]:
    """Per arm: the selected configurations' test r beside the defaults trial's (trial 0 of
    every arm's search), over the same subjects, with the difference's bootstrap CI (the
    statistics' resamples, level and seed); the mean over arms; the selection rule."""
    defaults = defaults_trials(trials)
    rule = options.selection
    if not defaults:
        return {"arms": [], "mean_bought_r": None, "rule": rule}
    settings = summary.settings
    gain = search_gain(
        results,
        summary.arms,
        defaults,
        rule,
        smooth_epochs=options.smooth_epochs,
        n_boot=settings["n_boot"],
        level=settings["level"],
        seed=settings["seed"],
    )
    mean = float(gain["bought_r"].mean()) if len(gain) else None
    arms = gain.to_dict(orient="records")
    return json_safe({"arms": arms, "mean_bought_r": mean, "rule": rule})


def _results_section(
    summary: Summary, oracle: Mapping[str, float], figs: dict[str, bytes]
) -> list[dict[str, Any]]:
    """Per protocol × model: the per-ROI figure (bars, or a ranked profile for many ROIs) and
    the ROIs its table shows (all, or the :data:`TABLE_ROWS` with the highest r)."""
    alpha = float(summary.settings["alpha"])
    out = []
    for (protocol, model), frame in summary.rois.groupby(["protocol", "model"], sort=True):
        key = f"rois-{protocol}-{model}"
        records = json_safe(frame.to_dict(orient="records"))
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

"""Aggregation per protocol × model × ROI: the numbers a generalisation report shows.

After nested selection (:mod:`eeg2bold.study.selection`), subjects are the unit: the mean
test r across subjects (Fisher z), its bootstrap CI, a sign-flip test of mean z = 0, a
surrogate chance level and p from the selected folds' own test predictions (circular shifts
≥ ``min_shift_s``), BH-FDR across ROIs per protocol × model, and for every model that has the
reference protocol (``within``) the paired comparison and generalisation gap per ROI of each
other protocol against it. Everything comes back both as tidy DataFrames and as plain JSON.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from eeg2bold.errors import DatasetError
from eeg2bold.jsonsafe import json_safe
from eeg2bold.run_folder import fold_stem
from eeg2bold.study.selection import (
    DEFAULT_RULE,
    DEFAULT_SMOOTH_EPOCHS,
    FOLD_KEYS,
    SelectionRule,
    fixed_choice,
    nested_selection,
)
from eeg2bold.study.stats import (
    MIN_SHIFT_S,
    N_BOOT,
    N_SURROGATES,
    Alternative,
    SurrogateError,
    benjamini_hochberg,
    bootstrap_ci,
    chance_summary,
    circular_shift_null,
    generalization_gap,
    paired_difference,
    paired_sign_flip,
    segment_r,
    sign_flip_test,
    surrogate_p,
    wilcoxon_signed_rank,
)
from eeg2bold.training.metrics import fisher_mean, fisher_z

Predictions = Mapping[Any, Mapping[str, Any]]

ROI_COLUMNS = [
    "protocol",
    "model",
    "roi",
    "n_subjects",
    "r",
    "ci_low",
    "ci_high",
    "mean_z",
    "sign_flip_p",
    "sign_flip_q",
    "sign_flip_reject",
    "n_chance",
    "chance_observed_r",
    "chance_r",
    "chance_low",
    "chance_high",
    "surrogate_p",
    "surrogate_q",
    "surrogate_reject",
]
COMPARISON_COLUMNS = [
    "model",
    "reference",
    "protocol",
    "roi",
    "n_pairs",
    "reference_r",
    "protocol_r",
    "gap",
    "gap_low",
    "gap_high",
    "wilcoxon_greater_stat",
    "wilcoxon_greater_p",
    "wilcoxon_greater_q",
    "wilcoxon_two_sided_stat",
    "wilcoxon_two_sided_p",
    "wilcoxon_two_sided_q",
    "sign_flip_mean_dz",
    "sign_flip_greater_p",
    "sign_flip_greater_q",
    "sign_flip_two_sided_p",
    "sign_flip_two_sided_q",
]
ARM_COLUMNS = [
    "protocol",
    "model",
    "calibration_min",
    "n_subjects",
    "r",
    "ci_low",
    "ci_high",
    "n_chance",
    "chance_r",
    "chance_low",
    "chance_high",
]
FOLD_CHANCE_COLUMNS = [
    "predictions_r",
    "chance_r",
    "chance_low",
    "chance_high",
    "surrogate_p",
]


@dataclass(frozen=True)
class Summary:
    """A study's statistics: tidy tables plus the settings that produced them.

    ``selection``: one row per protocol × model × fold × ROI (nested selection, with that
    fold's surrogate chance where predictions were given); ``rois``: one row per protocol ×
    model × ROI; ``comparisons``: one row per model × compared protocol × ROI against the
    reference protocol. :meth:`to_dict` is the same content as plain JSON.
    """

    selection: pd.DataFrame
    rois: pd.DataFrame
    comparisons: pd.DataFrame
    settings: dict[str, Any] = field(default_factory=dict)
    arms: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=ARM_COLUMNS))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (``json.dumps(..., allow_nan=False)`` works): NaN becomes None."""
        return {
            "settings": json_safe(self.settings),
            "arms": _records(self.arms),
            "rois": _records(self.rois),
            "comparisons": _records(self.comparisons),
            "selection": _records(self.selection),
        }


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [json_safe(row) for row in frame.to_dict(orient="records")]


def _stream_seed(seed: int, *parts: Any) -> int:
    """A reproducible seed per (protocol, model, fold, …): independent surrogates per subject."""
    tag = zlib.crc32("/".join(map(str, parts)).encode())
    return int(np.random.SeedSequence([seed, tag]).generate_state(1)[0])


def _lookup(predictions: Predictions, row: pd.Series) -> Mapping[str, Any] | None:
    fold = int(row["fold"])
    keys = ((row["trial"], fold), fold_stem(str(row["trial"]), fold))
    for key in keys:
        try:
            if key in predictions:
                return predictions[key]
        except TypeError:  # unhashable or incomparable key type for this mapping
            continue
    return None


def _fold_chance(
    arrays: Mapping[str, Any],
    rows: pd.DataFrame,
    *,
    n_surrogates: int,
    min_shift_s: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, list[str]] | None:
    """Observed r [R] and surrogate null [n_surrogates, R] of one fold's test predictions."""
    first = rows.iloc[0]
    subject = arrays.get("subject")
    if subject is not None and str(np.asarray(subject)) != str(first["subject"]):
        raise DatasetError(
            f"predictions for trial {first['trial']!r} fold {first['fold']} are of subject "
            f"{np.asarray(subject)!s}, not {first['subject']}"
        )
    outputs = [str(o) for o in np.asarray(arrays["outputs"]).tolist()]
    truth, pred = np.asarray(arrays["test_truth"]), np.asarray(arrays["test_pred"])
    times = np.asarray(arrays["test_times"])
    segment = arrays.get("test_segment")
    observed = segment_r(truth, pred, times=times, segment=segment)
    try:
        null = circular_shift_null(
            truth,
            pred,
            times=times,
            segment=segment,
            min_shift_s=min_shift_s,
            n_surrogates=n_surrogates,
            seed=seed,
        )
    except SurrogateError as exc:
        warnings.warn(
            f"{first['protocol']}/{first['model']} fold {first['fold']} ({first['subject']}): "
            f"no surrogate chance level: {exc}",
            stacklevel=4,
        )
        return None
    return observed, null, outputs


def _add_fold_chance(
    selection: pd.DataFrame,
    predictions: Predictions | None,
    *,
    n_surrogates: int,
    min_shift_s: float,
    level: float,
    alternative: Alternative,
    seed: int,
) -> tuple[pd.DataFrame, dict[tuple[str, str], dict[str, dict[str, Any]]]]:
    """Per-fold chance columns, and per (protocol, model) the nulls keyed by ROI and subject."""
    out = selection.reset_index(drop=True)
    values = np.full((len(out), len(FOLD_CHANCE_COLUMNS)), np.nan)
    per_fold: dict[tuple[str, str], dict[str, dict[str, list[Any]]]] = {}
    groups = [] if predictions is None or out.empty else out.groupby(FOLD_KEYS, sort=False)
    for keys, rows in groups:
        protocol, model, fold, subject = keys
        arrays = _lookup(predictions, rows.iloc[0])  # type: ignore[arg-type]
        if arrays is None:
            continue
        found = _fold_chance(
            arrays,
            rows,
            n_surrogates=n_surrogates,
            min_shift_s=min_shift_s,
            seed=_stream_seed(seed, protocol, model, fold, subject),
        )
        if found is None:
            continue
        observed, null, outputs = found
        band = chance_summary(null, level=level)
        p = surrogate_p(observed, null, alternative=alternative)
        for idx, roi, test_r in zip(rows.index, rows["roi"], rows["test_r"], strict=True):
            if roi not in outputs:
                continue
            j = outputs.index(roi)
            values[idx] = [observed[j], band["mean"][j], band["low"][j], band["high"][j], p[j]]
            if np.isfinite(test_r) and abs(observed[j] - test_r) > 1e-3:
                warnings.warn(
                    f"{protocol}/{model} fold {fold} ({subject}) {roi}: r from the predictions "
                    f"file ({observed[j]:.4f}) differs from the results table ({test_r:.4f}); "
                    "is the file from another run?",
                    stacklevel=3,
                )
            per_fold.setdefault((protocol, model), {}).setdefault(roi, {}).setdefault(
                subject, []
            ).append((observed[j], null[:, j]))
    # subjects are the unit: a subject with several folds (leave_one_run_out) gets the Fisher
    # mean of its folds' r and, surrogate by surrogate, of their nulls
    nulls = {
        arm: {
            roi: {
                subject: (
                    float(fisher_mean(np.array([o for o, _ in folds]))),
                    np.asarray(fisher_mean(np.stack([n for _, n in folds]), axis=0)),
                )
                for subject, folds in by_subject.items()
            }
            for roi, by_subject in by_roi.items()
        }
        for arm, by_roi in per_fold.items()
    }
    return out.assign(**dict(zip(FOLD_CHANCE_COLUMNS, values.T, strict=True))), nulls


def _per_subject(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One test r per subject and ``keys``: the Fisher mean over that subject's folds (one
    fold each under most protocols; one per held-out run under leave_one_run_out)."""
    finite = frame[np.isfinite(frame["test_r"].to_numpy(dtype=np.float64))]
    if finite.empty:
        return finite[[*keys, "subject", "test_r"]]
    return (
        finite.groupby([*keys, "subject"], sort=False)["test_r"]
        .agg(lambda r: float(fisher_mean(r.to_numpy(dtype=np.float64))))
        .reset_index()
    )


def _roi_table(
    selection: pd.DataFrame,
    nulls: dict[tuple[str, str], dict[str, dict[str, Any]]],
    *,
    n_boot: int,
    level: float,
    alpha: float,
    alternative: Alternative,
    seed: int,
) -> pd.DataFrame:
    rows = []
    for (protocol, model), frame in selection.groupby(["protocol", "model"], sort=True):
        group = []
        subjects = _per_subject(frame, ["roi"])
        for roi in pd.unique(frame["roi"]):
            r = subjects.loc[subjects["roi"] == roi, "test_r"].to_numpy(dtype=np.float64)
            row: dict[str, Any] = dict.fromkeys(ROI_COLUMNS, np.nan)
            row.update(protocol=protocol, model=model, roi=roi, n_subjects=int(r.size))
            if r.size:
                row["r"] = float(fisher_mean(r))
                row["ci_low"], row["ci_high"] = (
                    float(v) for v in bootstrap_ci(r, n_boot=n_boot, level=level, seed=seed)
                )
                row["mean_z"], row["sign_flip_p"] = sign_flip_test(
                    fisher_z(r), n_perm=n_boot, alternative=alternative, seed=seed
                )
            per_subject = nulls.get((protocol, model), {}).get(roi, {})
            row["n_chance"] = len(per_subject)
            if per_subject:
                observed = np.array([o for o, _ in per_subject.values()])
                stacked = np.stack([n for _, n in per_subject.values()], axis=1)  # [N, S]
                group_null = np.asarray(fisher_mean(stacked, axis=1))  # chance of the mean
                band = chance_summary(group_null, level=level)
                row["chance_observed_r"] = float(fisher_mean(observed))
                row["chance_r"] = float(band["mean"])
                row["chance_low"], row["chance_high"] = float(band["low"]), float(band["high"])
                row["surrogate_p"] = float(
                    surrogate_p(row["chance_observed_r"], group_null, alternative=alternative)
                )
            group.append(row)
        for p_col in ("sign_flip", "surrogate"):
            q, reject = benjamini_hochberg([g[f"{p_col}_p"] for g in group], alpha=alpha)
            for g, qi, ri in zip(group, q, reject, strict=True):
                g[f"{p_col}_q"], g[f"{p_col}_reject"] = float(qi), bool(ri)
        rows.extend(group)
    return pd.DataFrame(rows, columns=ROI_COLUMNS)


def _comparison_table(
    selection: pd.DataFrame,
    *,
    reference: str,
    n_boot: int,
    level: float,
    alpha: float,
    seed: int,
) -> pd.DataFrame:
    rows = []
    for model in sorted(selection["model"].unique()):
        ref = _per_subject(
            selection.loc[(selection["model"] == model) & (selection["protocol"] == reference)],
            ["model", "roi"],
        )
        if ref.empty:
            continue
        others = sorted(
            p
            for p in selection.loc[selection["model"] == model, "protocol"].unique()
            if p != reference
        )
        for protocol in others:
            other = _per_subject(
                selection.loc[(selection["model"] == model) & (selection["protocol"] == protocol)],
                ["model", "roi"],
            )
            paired = ref.merge(other, on=["model", "subject", "roi"], suffixes=("_ref", "_other"))
            group = []
            for roi in pd.unique(ref["roi"]):
                pair = paired[paired["roi"] == roi]
                a = pair["test_r_ref"].to_numpy(dtype=np.float64)
                b = pair["test_r_other"].to_numpy(dtype=np.float64)
                ok = np.isfinite(a) & np.isfinite(b)
                a, b = a[ok], b[ok]
                row: dict[str, Any] = dict.fromkeys(COMPARISON_COLUMNS, np.nan)
                row.update(
                    model=model, reference=reference, protocol=protocol, roi=roi, n_pairs=a.size
                )
                if a.size:
                    gap = generalization_gap(a, b, n_boot=n_boot, level=level, seed=seed)
                    row.update(
                        reference_r=float(gap.within),
                        protocol_r=float(gap.loso),
                        gap=float(gap.gap),
                        gap_low=float(gap.low),
                        gap_high=float(gap.high),
                    )
                    za, zb = fisher_z(a), fisher_z(b)
                    sides: tuple[tuple[Alternative, str], ...] = (
                        ("greater", "greater"),
                        ("two-sided", "two_sided"),
                    )
                    for alt, name in sides:
                        stat, p = wilcoxon_signed_rank(za, zb, alternative=alt)
                        row[f"wilcoxon_{name}_stat"], row[f"wilcoxon_{name}_p"] = stat, p
                        mean_dz, p = paired_sign_flip(
                            za, zb, n_perm=n_boot, alternative=alt, seed=seed
                        )
                        row["sign_flip_mean_dz"], row[f"sign_flip_{name}_p"] = mean_dz, p
                group.append(row)
            for test in ("wilcoxon", "sign_flip"):
                for name in ("greater", "two_sided"):
                    q, _ = benjamini_hochberg([g[f"{test}_{name}_p"] for g in group], alpha=alpha)
                    for g, qi in zip(group, q, strict=True):
                        g[f"{test}_{name}_q"] = float(qi)
            rows.extend(group)
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def summarize(
    results: pd.DataFrame,
    *,
    predictions: Predictions | None = None,
    n_boot: int = N_BOOT,
    n_surrogates: int = N_SURROGATES,
    min_shift_s: float = MIN_SHIFT_S,
    level: float = 0.95,
    alpha: float = 0.05,
    alternative: Alternative = "greater",
    reference: str = "within",
    seed: int = 0,
    rule: SelectionRule = DEFAULT_RULE,
    defaults: Mapping[tuple[str, str], str] | None = None,
    smooth_epochs: int = DEFAULT_SMOOTH_EPOCHS,
) -> Summary:
    """The study's statistics from its results table (and, optionally, its predictions).

    Per protocol × model × ROI, over the subjects of the nested selection: ``r`` (Fisher-z
    mean of test r), ``ci_low``/``ci_high`` (percentile bootstrap across subjects, ``n_boot``
    resamples), ``sign_flip_p`` (H0: mean z = 0, ``alternative`` default "greater": skill
    means r above 0; ``n_boot`` sign flips, or all 2**S when that is no more — up to 13
    subjects at the default) and its BH ``sign_flip_q`` across ROIs.

    With ``predictions`` — a mapping from ``(trial, fold)`` or a file stem (``<trial>-fold<k>``)
    to the arrays of a predictions file, e.g. :class:`~eeg2bold.run_folder.PredictionFiles` —
    each selected fold's test prediction is
    circularly shifted ≥ ``min_shift_s`` (``n_surrogates`` times, independently per subject);
    the chance level of the *mean* over subjects (``chance_r`` and its ``level`` band) is the
    Fisher mean of the subjects' surrogates, and ``surrogate_p``/``surrogate_q`` compare the
    observed mean over those ``n_chance`` subjects (``chance_observed_r``) with it. A fold
    whose test segment is too short for the shift gets no chance level (a warning says so).

    For each model with the ``reference`` protocol, every other protocol is paired with it by
    subject: ``gap`` = reference r − protocol r (Fisher means) with a paired bootstrap CI, the
    Wilcoxon signed-rank test and the paired sign-flip test on z differences, one-sided
    (reference > protocol, "greater") and two-sided, each with BH q across ROIs.

    ``rule`` and ``defaults`` ((protocol, model) -> the arm's defaults trial) are nested
    selection's (:func:`~eeg2bold.study.selection.nested_selection`): under "one_se" a fold
    keeps the defaults unless a configuration beats them by more than one standard error;
    ``smooth_epochs`` > 1 ranks on each candidate's val curve after a moving average.
    """
    selection = nested_selection(results, rule=rule, defaults=defaults, smooth_epochs=smooth_epochs)
    selection, nulls = _add_fold_chance(
        selection,
        predictions,
        n_surrogates=n_surrogates,
        min_shift_s=min_shift_s,
        level=level,
        alternative=alternative,
        seed=seed,
    )
    rois = _roi_table(
        selection,
        nulls,
        n_boot=n_boot,
        level=level,
        alpha=alpha,
        alternative=alternative,
        seed=seed,
    )
    comparisons = _comparison_table(
        selection, reference=reference, n_boot=n_boot, level=level, alpha=alpha, seed=seed
    )
    arms = _arm_table(selection, nulls, n_boot=n_boot, level=level, seed=seed)
    settings = {
        "metric": "Pearson r per ROI at volume times; summaries through Fisher z",
        "selection": "nested: per fold, best Fisher-mean val r over ROIs"
        + (
            f"; val curves averaged over {smooth_epochs} epochs before their best point"
            if smooth_epochs > 1
            else ""
        )
        + ("; the defaults unless beaten by more than one SE" if rule == "one_se" else "")
        + "; test never selects",
        "n_boot": n_boot,
        "n_surrogates": n_surrogates,
        "min_shift_s": min_shift_s,
        "level": level,
        "alpha": alpha,
        "alternative": alternative,
        "reference": reference,
        "seed": seed,
        "fdr": "Benjamini-Hochberg across ROIs per protocol x model",
    }
    return Summary(
        selection=selection, rois=rois, comparisons=comparisons, settings=settings, arms=arms
    )


GAIN_COLUMNS = [
    "protocol",
    "model",
    "defaults_trial",
    "n_subjects",
    "n_folds",
    "defaults_kept",
    "defaults_r",
    "r",
    "bought_r",
    "bought_low",
    "bought_high",
]


def search_gain(
    results: pd.DataFrame,
    arms: pd.DataFrame,
    defaults: Mapping[tuple[str, str], str],
    rule: SelectionRule = DEFAULT_RULE,
    *,
    smooth_epochs: int = DEFAULT_SMOOTH_EPOCHS,
    n_boot: int = N_BOOT,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """What a sweep's search bought, per protocol × model: the arm's mean test r after nested
    selection (``r``, selected as :func:`summarize` selects under ``rule`` and
    ``smooth_epochs``; ``arms`` names the
    arms reported) beside the same mean of its defaults
    trial on every fold (``defaults_r``: trial 0, what ``eeg2bold train`` would have given),
    over the subjects both have, and ``bought_r`` = r − defaults_r with its paired percentile
    bootstrap CI across subjects (``bought_low``/``bought_high``: a few subjects' val blocks
    make a search's gain as noisy as its models' r, and a reader should see whether a loss is
    more than that); ``defaults_kept``: of the arm's ``n_folds``, those whose selection is the
    defaults trial."""
    chosen = nested_selection(
        results, rule=rule, defaults=defaults, smooth_epochs=smooth_epochs
    ).dropna(subset=["test_r"])
    fixed = fixed_choice(results, defaults).dropna(subset=["test_r"])
    rows = []
    for (protocol, model), frame in fixed.groupby(["protocol", "model"], sort=True):
        if not ((arms["protocol"] == protocol) & (arms["model"] == model)).any():
            continue
        base = _subject_means(frame)
        selected = _subject_means(
            chosen[(chosen["protocol"] == protocol) & (chosen["model"] == model)]
        )
        both = base.index.intersection(selected.index)
        if both.empty:
            continue
        pair = np.stack([selected[both].to_numpy(), base[both].to_numpy()], axis=1)
        r = float(fisher_mean(pair[:, 0]))
        defaults_r = float(fisher_mean(pair[:, 1]))
        low, high = bootstrap_ci(
            pair,
            n_boot=n_boot,
            level=level,
            seed=_stream_seed(seed, protocol, model, "gain"),
            statistic=paired_difference,
        )
        folds = chosen[(chosen["protocol"] == protocol) & (chosen["model"] == model)]
        folds = folds.drop_duplicates("fold")
        rows.append(
            {
                "protocol": protocol,
                "model": model,
                "defaults_trial": defaults[(protocol, model)],
                "n_subjects": int(both.size),
                "n_folds": len(folds),
                "defaults_kept": int((folds["trial"] == defaults[(protocol, model)]).sum()),
                "defaults_r": defaults_r,
                "r": r,
                "bought_r": r - defaults_r,
                "bought_low": float(low),
                "bought_high": float(high),
            }
        )
    return pd.DataFrame(rows, columns=GAIN_COLUMNS)


def _subject_means(frame: pd.DataFrame) -> pd.Series:
    """Each subject's Fisher mean over ROIs of its test r (subjects are the unit)."""
    return frame.groupby("subject")["test_r"].agg(lambda r: float(fisher_mean(r.to_numpy())))


def _arm_table(
    selection: pd.DataFrame,
    nulls: dict[tuple[str, str], dict[str, dict[str, Any]]],
    *,
    n_boot: int,
    level: float,
    seed: int,
) -> pd.DataFrame:
    """Per protocol × model, one number over all ROIs: each subject's Fisher mean over ROIs of
    its selected test r, their Fisher mean across subjects with a bootstrap CI (subjects the
    unit); and the chance band of that same mean from the folds' surrogates (subjects with a
    null for every ROI). ``calibration_min``: the amount of a calibration-curve point."""
    from eeg2bold.protocols import label_amount_s

    rows = []
    chosen = selection.dropna(subset=["test_r"])
    for (protocol, model), frame in chosen.groupby(["protocol", "model"], sort=True):
        per_subject = _subject_means(frame)
        values = per_subject.to_numpy(dtype=np.float64)
        low, high = bootstrap_ci(
            values, n_boot=n_boot, level=level, seed=_stream_seed(seed, protocol, model, "arm")
        )
        amount = label_amount_s(str(protocol))
        row: dict[str, Any] = {
            "protocol": protocol,
            "model": model,
            "calibration_min": None if amount is None else amount / 60.0,
            "n_subjects": int(values.size),
            "r": float(fisher_mean(values)),
            "ci_low": float(low),
            "ci_high": float(high),
            "n_chance": 0,
            "chance_r": np.nan,
            "chance_low": np.nan,
            "chance_high": np.nan,
        }
        by_roi = nulls.get((protocol, model), {})
        rois = sorted(set(frame["roi"]))
        subjects = [s for s in per_subject.index if all(s in by_roi.get(roi, {}) for roi in rois)]
        if subjects and rois:
            # per subject: the null of its mean over ROIs; then the mean over subjects
            per = [np.mean([fisher_z(by_roi[roi][s][1]) for roi in rois], axis=0) for s in subjects]
            null = np.tanh(np.mean(np.array(per), axis=0))
            band = chance_summary(null[:, None], level=level)
            row |= {
                "n_chance": len(subjects),
                "chance_r": float(band["mean"][0]),
                "chance_low": float(band["low"][0]),
                "chance_high": float(band["high"][0]),
            }
        rows.append(row)
    return pd.DataFrame(rows, columns=ARM_COLUMNS)

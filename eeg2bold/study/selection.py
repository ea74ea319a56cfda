"""Nested selection: per held-out subject, the configuration that fold's val score prefers.

DESIGN.md: "for each held-out subject, configurations are ranked by that fold's val score only"
and "nothing selects on test". Ranking on test — one fold's or all folds' — would inflate the
reported r by the best of many noisy draws; so the choice below is made by a function that is
handed the val rows alone, and test rows are joined to the chosen configurations afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np
import pandas as pd

from eeg2bold.errors import DatasetError
from eeg2bold.training.metrics import fisher_mean

SelectionRule = Literal["best", "one_se"]
# "best": the best val score. "one_se": the defaults unless beaten by more than one standard
# error (see _keep_defaults). Measured in bench_search.py: neither wins on every arm
# (docs/benchmarks.md), so the plain best stays the default.
DEFAULT_RULE: SelectionRule = "best"
# Epochs in the centred moving average of a candidate's val curve before its best point is
# taken (1: the val r at its best epoch, as recorded). See _smoothed_scores.
DEFAULT_SMOOTH_EPOCHS = 1
FOLD_KEYS = ["protocol", "model", "fold", "subject"]
CANDIDATE_KEYS = ["sweep", "trial", "config_hash", "seed"]
SELECTION_COLUMNS = [
    *FOLD_KEYS,
    "roi",
    *CANDIDATE_KEYS,
    "epoch",
    "n_candidates",
    "chosen_by",
    "val_score",
    "val_r",
    "test_r",
    "n_test",
]


def _final_rows(results: pd.DataFrame, protocol: str | None, model: str | None) -> pd.DataFrame:
    frame = results[results["final"].astype(bool)]
    if protocol is not None:
        frame = frame[frame["protocol"] == protocol]
    if model is not None:
        frame = frame[frame["model"] == model]
    keys = [*FOLD_KEYS, *CANDIDATE_KEYS, "roi", "split"]
    frame = frame.drop_duplicates([*keys, "r", "n"])  # a resumed run may publish a fold twice
    clash = frame[frame.duplicated(keys, keep=False)]
    if not clash.empty:
        first = clash.iloc[0]
        raise DatasetError(
            f"results table: {len(clash)} final rows disagree for the same fold, configuration, "
            f"ROI and split (e.g. trial {first['trial']!r}, {first['protocol']} fold "
            f"{first['fold']} ({first['subject']}), {first['roi']}, {first['split']}); "
            "remove the stale part files"
        )
    return frame


def _choose(
    val: pd.DataFrame,
    defaults: Mapping[tuple[str, str], str],
    smoothed: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One configuration per fold from val rows only: best Fisher mean over ROIs of val r,
    pooled over folds where the protocol allows (:func:`_pooled`), unless that arm's defaults
    trial is within one standard error of it (:func:`_keep_defaults`).

    Ties go to the smallest candidate key (sweep, trial, config_hash, seed), so the choice is
    deterministic and still independent of test. Candidates whose own fold score is
    undefined (a NaN val r) cannot be chosen for that fold; a fold with no defined score has
    no selection.
    """
    if (val["split"] != "val").any():  # the guarantee this module exists for
        raise AssertionError("_choose was handed rows other than val")
    scores = (
        val.groupby([*FOLD_KEYS, *CANDIDATE_KEYS], sort=False, dropna=False)["r"]
        .agg(lambda r: float(fisher_mean(r.to_numpy())))  # NaN if any ROI's r is NaN
        .rename("fold_score")
        .reset_index()
    )
    counts = (
        scores.groupby(FOLD_KEYS, sort=False)["fold_score"]
        .size()
        .rename("n_candidates")
        .reset_index()
    )
    scores = scores[scores["fold_score"].notna()]
    if smoothed is not None and not smoothed.empty:
        keys = [*FOLD_KEYS, *CANDIDATE_KEYS]
        scores = scores.merge(smoothed, on=keys, how="left")
        scores["fold_score"] = scores["smoothed"].fillna(scores["fold_score"])
        scores = scores.drop(columns="smoothed")
    scores = _pooled(scores)
    ranked = scores.sort_values(
        [*FOLD_KEYS, "val_score", *CANDIDATE_KEYS],
        ascending=[True] * len(FOLD_KEYS) + [False] + [True] * len(CANDIDATE_KEYS),
        kind="mergesort",
    )
    ranked = ranked.assign(chosen_by="val")
    if defaults:
        chosen = _keep_defaults(ranked, val, defaults)
    else:
        chosen = ranked.groupby(FOLD_KEYS, sort=False).head(1)
    return chosen.drop(columns="fold_score").merge(counts, on=FOLD_KEYS, how="left")


def _keep_defaults(
    ranked: pd.DataFrame, val: pd.DataFrame, defaults: Mapping[tuple[str, str], str]
) -> pd.DataFrame:
    """The one-standard-error rule, anchored at the defaults: per fold, the best-ranked
    configuration whose val advantage over the arm's defaults trial is more than one standard
    error of their paired differences; the defaults where none is.

    Why: the best of many configurations on a few minutes of val is partly the luckiest (the
    winner's curse); ``bench_search.py`` measured selected configurations whose higher val r
    did not carry to test. The defaults are chosen before any data are seen, so the rule
    prefers them unless the evidence is clear (measured there: equal to the plain best on
    average; it gave up one real gain and did not save the two losing arms). The paired
    units are the folds of the fold's pool where the protocol pools (their fold scores, as
    :func:`_pooled` combines them) and otherwise the ROIs of the fold's own val (LOSO). One
    unit gives no error: the plain comparison stands.
    """
    from eeg2bold.protocols import pools_selection

    rows = []
    for (protocol, model, _, _), candidates in ranked.groupby(FOLD_KEYS, sort=False):
        anchor = defaults.get((str(protocol), str(model)))
        mine = candidates[candidates["trial"] == anchor]
        if anchor is None or mine.empty:  # no defaults trial, or no defined score here
            rows.append(candidates.iloc[0])
            continue
        arm = ranked[(ranked["protocol"] == protocol) & (ranked["model"] == model)]
        pooled = pools_selection(str(protocol))
        pick = _as_defaults(mine.iloc[0])
        for _, best in candidates.iterrows():
            if best["trial"] == anchor:
                break  # nothing ranked above the defaults passed: keep them
            diff = _paired_folds(arm, best, anchor) if pooled else _paired_rois(val, best, anchor)
            error = float(np.std(diff, ddof=1) / np.sqrt(diff.size)) if diff.size > 1 else 0.0
            if diff.size and float(np.mean(diff)) > error:
                pick = best
                break
        rows.append(pick)
    return pd.DataFrame(rows).reset_index(drop=True)


def _as_defaults(row: pd.Series) -> pd.Series:
    out = row.copy()
    out["chosen_by"] = "defaults"
    return out


def _paired_folds(arm: pd.DataFrame, best: pd.Series, anchor: str) -> np.ndarray:
    """Fisher-z differences best − defaults over the folds of ``best``'s fold's pool."""
    subject = arm.loc[arm["fold"] == best["fold"], "subject"].iloc[0]
    pool = arm[(arm["subject"] != subject) | (arm["fold"] == best["fold"])]
    a = pool[_same_candidate(pool, best)].set_index("fold")["fold_score"]
    b = pool[pool["trial"] == anchor].set_index("fold")["fold_score"]
    both = a.index.intersection(b.index)
    return _z(a[both].to_numpy()) - _z(b[both].to_numpy())


def _paired_rois(val: pd.DataFrame, best: pd.Series, anchor: str) -> np.ndarray:
    """Fisher-z differences best − defaults over the ROIs of ``best``'s fold's own val."""
    fold = val[
        (val["protocol"] == best["protocol"])
        & (val["model"] == best["model"])
        & (val["fold"] == best["fold"])
    ]
    a = fold[_same_candidate(fold, best)].set_index("roi")["r"]
    b = fold[fold["trial"] == anchor].set_index("roi")["r"]
    both = a.index.intersection(b.index)
    diff = _z(a[both].to_numpy(dtype=float)) - _z(b[both].to_numpy(dtype=float))
    return diff[~np.isnan(diff)]


def _same_candidate(frame: pd.DataFrame, row: pd.Series) -> pd.Series:
    mask = pd.Series(True, index=frame.index)
    for key in CANDIDATE_KEYS:
        mask &= frame[key] == row[key]
    return mask


def _z(r: np.ndarray) -> np.ndarray:
    return np.arctanh(np.clip(r, -0.999999, 0.999999))


def _pooled(scores: pd.DataFrame) -> pd.DataFrame:
    """``val_score``: a candidate's score for a fold, the Fisher mean of its val scores on
    that fold and, where the protocol's val data never hold another subject's data
    (:func:`~eeg2bold.protocols.pools_selection`: within, within_run, leave_one_run_out,
    loso_calibrated by fraction), on every other subject's fold. A fold's val block alone is
    a few minutes of one subject: ranking many configurations on it picks noise (a higher val
    r that does not carry to test); the other subjects' val blocks are more of the same
    question and hold nothing of this fold's test data. LOSO folds select alone (their val
    data hold the other folds' held-out subjects)."""
    from eeg2bold.protocols import pools_selection

    out = []
    for (protocol, _model), frame in scores.groupby(["protocol", "model"], sort=False):
        frame = frame.copy()
        if not pools_selection(str(protocol)):
            out.append(frame.assign(val_score=frame["fold_score"]))
            continue
        # candidates × folds of Fisher z; fold k pools the folds j of other subjects and itself
        z = frame.pivot_table(
            index=CANDIDATE_KEYS, columns="fold", values="fold_score", aggfunc="first"
        ).apply(_z)
        folds = frame.drop_duplicates("fold").set_index("fold")["subject"].reindex(z.columns)
        subjects = folds.to_numpy()
        pools = (subjects[:, None] != subjects[None, :]) | np.eye(len(subjects), dtype=bool)
        values = z.to_numpy()
        defined = ~np.isnan(values)
        total = np.nan_to_num(values) @ pools.T.astype(float)
        count = defined.astype(float) @ pools.T.astype(float)
        pooled = pd.DataFrame(np.tanh(total / count), index=z.index, columns=z.columns)
        long = pooled.stack().rename("val_score").reset_index()
        out.append(frame.merge(long, on=[*CANDIDATE_KEYS, "fold"], how="left"))
    if not out:
        return scores.assign(val_score=scores["fold_score"])
    return pd.concat(out, ignore_index=True)


def _smoothed_scores(results: pd.DataFrame, final: pd.DataFrame, epochs: int) -> pd.DataFrame:
    """Per fold and candidate: the best point of its val curve (per epoch, the Fisher mean over
    ROIs) after a centred moving average over ``epochs`` epochs, as ``smoothed`` r.

    Why: the recorded val r is the curve's maximum, and the maximum of a noisy curve is
    optimistic by more the noisier the curve; ranking configurations on it favours the noisy
    ones (a winner's curse within each fold, on top of the one across configurations).
    Averaging neighbouring epochs first shrinks that bias. Candidates without a curve
    (closed-form models, one epoch) keep their recorded score. Only val rows are read."""
    if epochs <= 1:
        return pd.DataFrame(columns=[*FOLD_KEYS, *CANDIDATE_KEYS, "smoothed"])
    curve = results[(results["split"] == "val") & ~results["final"].astype(bool)]
    keys = [*FOLD_KEYS, *CANDIDATE_KEYS]
    curve = curve.merge(final[keys].drop_duplicates(), on=keys, how="inner")
    curve = curve.drop_duplicates([*keys, "roi", "epoch"])
    per_epoch = (
        curve.groupby([*keys, "epoch"], sort=False, dropna=False)["r"]
        .agg(lambda r: float(np.mean(_z(r.to_numpy(dtype=float)))))
        .rename("z")
        .reset_index()
        .sort_values([*keys, "epoch"], kind="mergesort")
    )
    smooth = per_epoch.groupby(keys, sort=False, dropna=False)["z"].transform(
        lambda z: z.rolling(epochs, min_periods=1, center=True).mean()
    )
    best = per_epoch.assign(z=smooth).groupby(keys, sort=False, dropna=False)["z"].max()
    return np.tanh(best).rename("smoothed").reset_index()


def nested_selection(
    results: pd.DataFrame,
    *,
    protocol: str | None = None,
    model: str | None = None,
    rule: SelectionRule = DEFAULT_RULE,
    defaults: Mapping[tuple[str, str], str] | None = None,
    smooth_epochs: int = DEFAULT_SMOOTH_EPOCHS,
) -> pd.DataFrame:
    """Per (protocol, model, fold): the configuration best on that fold's val, with its test r.

    From the ``final=True`` rows of the results table, each candidate configuration (sweep,
    trial, config_hash, seed) is scored on each fold by the Fisher-z mean over ROIs of its val
    r at its best epoch; the highest score wins (see :func:`_choose`, which sees val rows
    only), except that under ``rule="one_se"``, with ``defaults`` ((protocol, model) -> the
    arm's defaults trial id), a fold keeps the defaults unless a configuration beats them by
    more than one standard error (:func:`_keep_defaults`; arms without a defaults trial
    select the plain best). With ``smooth_epochs`` > 1 a candidate's score is the best point
    of its val curve after a moving average over that many epochs (:func:`_smoothed_scores`).
    Test rows are joined to the winners afterwards. Returns one row
    per (protocol, model, fold, subject, ROI) with the winner, its best ``epoch``,
    ``n_candidates`` ranked, ``chosen_by`` ("val", or "defaults" where the rule kept them),
    ``val_score``, ``val_r``, ``test_r`` and ``n_test`` (NaN where the winner has no test row).
    """
    final = _final_rows(results, protocol, model)
    if final.empty:
        return pd.DataFrame(columns=SELECTION_COLUMNS)
    val = final[final["split"] == "val"]
    smoothed = _smoothed_scores(results, val, smooth_epochs)
    chosen = _choose(val, (defaults or {}) if rule == "one_se" else {}, smoothed)
    keys = [*FOLD_KEYS, *CANDIDATE_KEYS]
    per_roi = chosen.merge(val[[*keys, "roi", "epoch", "r"]], on=keys, how="left").rename(
        columns={"r": "val_r"}
    )
    # only now, with the choice fixed, are test rows read
    test = final.loc[final["split"] == "test", [*keys, "roi", "r", "n"]].rename(
        columns={"r": "test_r", "n": "n_test"}
    )
    out = per_roi.merge(test, on=[*keys, "roi"], how="left")
    out = out.sort_values(["protocol", "model", "fold"], kind="mergesort")
    return out[SELECTION_COLUMNS].reset_index(drop=True)


def fixed_choice(results: pd.DataFrame, trials: Mapping[tuple[str, str], str]) -> pd.DataFrame:
    """Per (protocol, model, fold): one given trial's rows instead of a choice (e.g. the arm's
    defaults trial, what a search is measured against), shaped as :func:`nested_selection`'s
    output with ``n_candidates`` 1. ``trials`` maps (protocol, model) to a trial id."""
    final = _final_rows(results, None, None)
    wanted = pd.DataFrame(
        [{"protocol": p, "model": m, "trial": t} for (p, m), t in trials.items()],
        columns=["protocol", "model", "trial"],
    )
    final = final.merge(wanted, on=["protocol", "model", "trial"], how="inner")
    if final.empty:
        return pd.DataFrame(columns=SELECTION_COLUMNS)
    keys = [*FOLD_KEYS, *CANDIDATE_KEYS, "roi"]
    val = final.loc[final["split"] == "val", [*keys, "epoch", "r"]].rename(columns={"r": "val_r"})
    test = final.loc[final["split"] == "test", [*keys, "r", "n"]].rename(
        columns={"r": "test_r", "n": "n_test"}
    )
    out = val.merge(test, on=keys, how="left").assign(
        n_candidates=1, chosen_by="fixed", val_score=float("nan")
    )
    return out[SELECTION_COLUMNS].reset_index(drop=True)

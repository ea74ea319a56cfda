"""Aggregation on a small synthetic study: results table + predictions files → report numbers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from eeg2bold.errors import DatasetError
from eeg2bold.run_folder import COLUMNS, RunFolder
from eeg2bold.study.aggregate import COMPARISON_COLUMNS, ROI_COLUMNS, summarize
from eeg2bold.study.stats import (
    benjamini_hochberg,
    paired_sign_flip,
    segment_r,
    wilcoxon_signed_rank,
)
from eeg2bold.training.metrics import fisher_mean, fisher_z

ROIS = ("thalamus", "putamen", "noise")
SUBJECTS = tuple(f"sub-{i:02d}" for i in range(1, 7))
TR = 2.0
# coupling of the prediction to the truth per ROI: strong, weak, none; less for unseen subjects
COUPLING = {
    "within": (1.0, 0.4, 0.0),
    "loso": (0.4, 0.15, 0.0),
    "leave_one_run_out": (0.7, 0.25, 0.0),
}


def _ar1(rng: np.random.Generator, rows: int, n: int, phi: float = 0.8) -> np.ndarray:
    x = np.zeros((rows, n))
    e = rng.normal(size=(rows, n))
    for i in range(1, n):
        x[:, i] = phi * x[:, i - 1] + e[:, i]
    return x


def _fold_predictions(rng, protocol: str, subject: str, perfect: bool) -> dict[str, np.ndarray]:
    n_runs = 1 if protocol == "within" else 2  # LOSO tests the whole subject: both runs
    times = np.concatenate([k * 1000 + np.arange(90) * TR for k in range(n_runs)])
    truth = _ar1(rng, len(ROIS), times.size)
    coupling = np.asarray(COUPLING[protocol])[:, None]
    pred = truth.copy() if perfect else coupling * truth + _ar1(rng, len(ROIS), times.size)
    arrays = {
        "outputs": np.asarray(ROIS),
        "subject": np.asarray(subject),
        "test_times": times,
        "test_truth": truth,
        "test_pred": pred,
        "test_segment": np.repeat(np.arange(n_runs), 90),
    }
    for key in ("times", "truth", "pred", "segment"):
        arrays[f"val_{key}"] = arrays[f"test_{key}"][..., :40]
    return arrays


def _study(
    folds_per_subject: dict[str, int],
) -> tuple[pd.DataFrame, dict[tuple[str, int], dict[str, np.ndarray]]]:
    """Protocols (with this many folds per subject) × two trials of one model; the trial
    "cheat" predicts test perfectly but scores worst on val, so nested selection must never
    bring its predictions in."""
    rng = np.random.default_rng(0)
    rows, predictions = [], {}
    for protocol, repeat in folds_per_subject.items():
        held = [s for s in SUBJECTS for _ in range(repeat)]
        for trial, val_level in ((f"{protocol}-good", 0.4), (f"{protocol}-cheat", 0.1)):
            for fold, subject in enumerate(held):
                arrays = _fold_predictions(rng, protocol, subject, perfect="cheat" in trial)
                predictions[(trial, fold)] = arrays
                test_r = segment_r(
                    arrays["test_truth"],
                    arrays["test_pred"],
                    times=arrays["test_times"],
                    segment=arrays["test_segment"],
                )
                base = {
                    "sweep": "s",
                    "trial": trial,
                    "config_hash": f"h{trial}",
                    "model": "ridge",
                    "protocol": protocol,
                    "fold": fold,
                    "subject": subject,
                    "epoch": 2,
                    "seed": 0,
                    "final": True,
                    "n": 180,
                }
                for j, roi in enumerate(ROIS):
                    val_r = val_level + 0.05 * rng.normal()
                    rows.append({**base, "roi": roi, "split": "val", "r": val_r})
                    rows.append({**base, "roi": roi, "split": "test", "r": float(test_r[j])})
    return pd.DataFrame(rows, columns=COLUMNS), predictions


@pytest.fixture(scope="module")
def study() -> tuple[pd.DataFrame, dict[tuple[str, int], dict[str, np.ndarray]]]:
    return _study({"within": 1, "loso": 1})


def test_subjects_stay_the_unit_when_a_subject_has_several_folds():
    """leave_one_run_out: two folds (held-out runs) per subject. Each subject's r is the
    Fisher mean of its folds', its null the mean of theirs; n counts subjects, pairs too."""
    results, predictions = _study({"within": 1, "leave_one_run_out": 2})
    summary = summarize(results, predictions=predictions, n_boot=200, n_surrogates=100)
    rois = summary.rois.set_index(["protocol", "roi"])
    chosen = summary.selection[summary.selection["protocol"] == "leave_one_run_out"]
    assert len(chosen) == 2 * len(SUBJECTS) * len(ROIS)  # every fold is selected
    for roi in ROIS:
        row = rois.loc[("leave_one_run_out", roi)]
        mine = chosen[chosen["roi"] == roi]
        per_subject = mine.groupby("subject")["test_r"].agg(lambda r: fisher_mean(r.to_numpy()))
        assert row["n_subjects"] == len(SUBJECTS) == row["n_chance"]
        assert row["r"] == pytest.approx(fisher_mean(per_subject.to_numpy()))
        assert row["chance_observed_r"] == pytest.approx(row["r"], abs=1e-9)
        assert row["mean_z"] == pytest.approx(fisher_z(per_subject.to_numpy()).mean())
    assert rois.loc[("leave_one_run_out", "noise"), "chance_low"] < 0
    assert (summary.comparisons["n_pairs"] == len(SUBJECTS)).all()
    arm = summary.arms.set_index("protocol").loc["leave_one_run_out"]
    assert arm["n_subjects"] == len(SUBJECTS) == arm["n_chance"]


def test_summary_numbers_per_protocol_model_roi(study):
    results, predictions = study
    summary = summarize(results, predictions=predictions, n_boot=500, n_surrogates=200)
    rois = summary.rois
    assert list(rois.columns) == ROI_COLUMNS
    assert len(rois) == 2 * len(ROIS)
    assert not summary.selection["trial"].str.contains("cheat").any()
    for (protocol, roi), row in rois.set_index(["protocol", "roi"]).iterrows():
        chosen = summary.selection[
            (summary.selection["protocol"] == protocol) & (summary.selection["roi"] == roi)
        ]
        r = chosen["test_r"].to_numpy()
        assert row["n_subjects"] == len(SUBJECTS) == row["n_chance"]
        assert row["r"] == pytest.approx(fisher_mean(r))
        assert row["ci_low"] <= row["r"] <= row["ci_high"]
        assert row["mean_z"] == pytest.approx(fisher_z(r).mean())
        # chance of the subject mean straddles zero (slightly below it where the prediction is
        # good: the excluded shifts near zero hold the positive lags), observed r is the table's
        assert -0.15 < row["chance_r"] < 0.05 and row["chance_low"] < 0 < row["chance_high"]
        if roi == "noise":
            assert abs(row["chance_r"]) < 0.03
        assert row["chance_observed_r"] == pytest.approx(row["r"], abs=1e-9)
        # (1 + #{null ≥ r}) / (1 + 200): a count, which the chance band must agree with
        count = row["surrogate_p"] * 201
        assert count == pytest.approx(round(count)) and 1 <= round(count) <= 201
        if row["chance_observed_r"] > row["chance_high"]:  # above the band's 97.5 % point
            assert round(count) <= 1 + 0.025 * 200 + 1
        if row["chance_observed_r"] < row["chance_high"]:
            assert round(count) >= 1 + 0.025 * 200 - 1
    strong = rois.set_index(["protocol", "roi"]).loc[("within", "thalamus")]
    assert strong["r"] > strong["chance_high"]
    assert strong["sign_flip_p"] == pytest.approx(1 / 64)  # 6 subjects all positive: exact
    assert strong["surrogate_p"] == pytest.approx(1 / 201)
    assert strong["sign_flip_reject"] and strong["surrogate_reject"]
    noise = rois.set_index(["protocol", "roi"]).loc[("within", "noise")]
    assert noise["chance_low"] < noise["r"] < noise["chance_high"]
    assert noise["surrogate_p"] > 0.05 and not noise["surrogate_reject"]
    for _, group in rois.groupby("protocol"):  # FDR across the ROIs of one protocol × model
        q, _ = benjamini_hochberg(group["sign_flip_p"].to_numpy())
        np.testing.assert_allclose(group["sign_flip_q"], q)
        q, _ = benjamini_hochberg(group["surrogate_p"].to_numpy())
        np.testing.assert_allclose(group["surrogate_q"], q)
    # per-fold chance in the selection table
    folds = summary.selection
    assert folds["chance_r"].notna().all()
    np.testing.assert_allclose(folds["predictions_r"], folds["test_r"], atol=1e-9)


def test_arm_numbers_average_rois_per_subject_then_subjects(study):
    """One number per protocol × model: per subject the Fisher mean over ROIs, then over
    subjects; CI over subjects; the chance band of that same mean from the surrogates."""
    from eeg2bold.study.aggregate import ARM_COLUMNS

    results, predictions = study
    summary = summarize(results, predictions=predictions, n_boot=500, n_surrogates=200)
    arms = summary.arms.set_index("protocol")
    assert list(summary.arms.columns) == ARM_COLUMNS and len(arms) == 2
    for protocol, arm in arms.iterrows():
        chosen = summary.selection[summary.selection["protocol"] == protocol]
        per_subject = chosen.groupby("subject")["test_r"].agg(lambda r: fisher_mean(r.to_numpy()))
        assert arm["n_subjects"] == len(SUBJECTS) == arm["n_chance"]
        assert arm["r"] == pytest.approx(fisher_mean(per_subject.to_numpy()))
        assert arm["ci_low"] <= arm["r"] <= arm["ci_high"]
        assert arm["chance_low"] < arm["chance_r"] < arm["chance_high"]
        assert abs(arm["chance_r"]) < 0.1 and pd.isna(arm["calibration_min"])
    assert arms.loc["within", "r"] > arms.loc["within", "chance_high"]  # coupled ROIs: skill
    assert summary.to_dict()["arms"][0]["protocol"] == summary.arms.iloc[0]["protocol"]


def test_loso_versus_within_paired_per_roi(study):
    results, predictions = study
    summary = summarize(results, predictions=predictions, n_boot=500, n_surrogates=50)
    comparisons = summary.comparisons
    assert list(comparisons.columns) == COMPARISON_COLUMNS
    assert set(comparisons["protocol"]) == {"loso"} and set(comparisons["reference"]) == {"within"}
    sel = summary.selection.set_index(["protocol", "subject", "roi"])["test_r"]
    for _, row in comparisons.iterrows():
        w = sel.loc["within"].xs(row["roi"], level="roi").loc[list(SUBJECTS)].to_numpy()
        lo = sel.loc["loso"].xs(row["roi"], level="roi").loc[list(SUBJECTS)].to_numpy()
        assert row["n_pairs"] == len(SUBJECTS)
        assert row["gap"] == pytest.approx(fisher_mean(w) - fisher_mean(lo))
        assert row["reference_r"] == pytest.approx(fisher_mean(w))
        assert row["gap_low"] <= row["gap"] <= row["gap_high"]
        zw, zl = fisher_z(w), fisher_z(lo)
        stat, p = wilcoxon_signed_rank(zw, zl, alternative="greater")
        assert (row["wilcoxon_greater_stat"], row["wilcoxon_greater_p"]) == (stat, p)
        assert row["wilcoxon_two_sided_p"] == wilcoxon_signed_rank(zw, zl)[1]
        assert row["sign_flip_greater_p"] == paired_sign_flip(zw, zl, alternative="greater")[1]
        assert row["sign_flip_two_sided_p"] == paired_sign_flip(zw, zl)[1]
    thal = comparisons.set_index("roi").loc["thalamus"]
    assert thal["gap"] > 0 and thal["gap_low"] > 0  # an unseen subject loses r
    assert thal["wilcoxon_greater_p"] == pytest.approx(1 / 64)  # all six pairs agree
    q, _ = benjamini_hochberg(comparisons["wilcoxon_greater_p"].to_numpy())
    np.testing.assert_allclose(comparisons["wilcoxon_greater_q"], q)


def test_json_is_plain_and_predictions_files_match_the_mapping(study, tmp_path):
    results, predictions = study
    folder = RunFolder(tmp_path)
    for (trial, fold), arrays in predictions.items():
        folder.write_predictions(trial, fold, arrays)
    files = folder.predictions()
    assert len(files) == len(predictions) and "within-good-fold0" in files
    kw = {"n_boot": 200, "n_surrogates": 50, "seed": 3}
    from_files = summarize(results, predictions=files, **kw)
    from_mapping = summarize(results, predictions=predictions, **kw)
    pd.testing.assert_frame_equal(from_files.rois, from_mapping.rois)
    text = json.dumps(from_files.to_dict(), allow_nan=False)
    data = json.loads(text)
    assert {"settings", "rois", "comparisons", "selection"} <= set(data)
    assert data["settings"]["n_boot"] == 200 and data["settings"]["min_shift_s"] == 30.0
    first = data["rois"][0]
    assert first["r"] == pytest.approx(from_files.rois.iloc[0]["r"])
    assert isinstance(first["sign_flip_reject"], bool)
    # same seed → same numbers; another seed → other resamples
    again = summarize(results, predictions=files, **kw)
    pd.testing.assert_frame_equal(again.rois, from_files.rois)
    other = summarize(results, predictions=files, **{**kw, "seed": 4})
    assert not np.allclose(other.rois["ci_low"], from_files.rois["ci_low"])


def test_without_predictions_and_bad_predictions(study):
    results, predictions = study
    plain = summarize(results, n_boot=200)
    assert plain.rois["n_chance"].eq(0).all() and plain.rois["chance_r"].isna().all()
    assert plain.rois["r"].notna().all() and plain.rois["surrogate_q"].isna().all()
    json.dumps(plain.to_dict(), allow_nan=False)
    # a predictions file of another subject is refused, not silently used
    swapped = dict(predictions)
    swapped[("within-good", 0)] = predictions[("within-good", 1)]
    with pytest.raises(DatasetError, match="sub-02, not sub-01"):
        summarize(results, predictions=swapped, n_boot=100, n_surrogates=20)
    # a test segment too short for a 30 s shift: that fold has no chance level, with a warning
    short = dict(predictions)
    arrays = dict(predictions[("within-good", 0)])
    for key in ("times", "truth", "pred", "segment"):
        arrays[f"test_{key}"] = arrays[f"test_{key}"][..., :20]
    short[("within-good", 0)] = arrays
    with pytest.warns(UserWarning, match="no surrogate chance level"):
        partial = summarize(results, predictions=short, n_boot=100, n_surrogates=20)
    within = partial.rois[partial.rois["protocol"] == "within"]
    assert within["n_chance"].eq(len(SUBJECTS) - 1).all()


def test_surrogates_are_independent_across_subjects(study):
    results, predictions = study
    same = dict(predictions)
    for fold, subject in enumerate(SUBJECTS):  # every subject gets the same signals
        same[("within-good", fold)] = {**predictions[("within-good", 0)], "subject": subject}
    with pytest.warns(UserWarning, match="differs from the results table"):
        summary = summarize(results, predictions=same, n_boot=100, n_surrogates=400)
    rois = summary.rois.set_index(["protocol", "roi"])
    folds = summary.selection.set_index(["protocol", "roi", "fold"])
    for roi in ROIS:
        group = rois.loc[("within", roi)]
        single = folds.loc[("within", roi, 0)]
        # independent shifts per subject: the mean of 6 subjects' surrogates is narrower
        assert (group["chance_high"] - group["chance_low"]) < 0.7 * (
            single["chance_high"] - single["chance_low"]
        )

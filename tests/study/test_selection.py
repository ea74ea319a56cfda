"""Nested selection ranks each fold's configurations by that fold's val only, never test."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from eeg2bold.errors import DatasetError
from eeg2bold.run_folder.table import COLUMNS, ResultsWriter, read_results
from eeg2bold.study.selection import SELECTION_COLUMNS, nested_selection
from eeg2bold.training.metrics import fisher_mean

ROIS = ("thalamus", "putamen", "hippocampus")
SUBJECTS = ("sub-01", "sub-02", "sub-03", "sub-04")


def _table(
    val: dict[str, np.ndarray],
    test: dict[str, np.ndarray],
    *,
    protocol: str = "loso",
    model: str = "ridge",
) -> pd.DataFrame:
    """Final rows for each trial: ``val[trial]``/``test[trial]`` are [fold, ROI] r; plus a
    val curve whose last epoch is (falsely) excellent, which selection must ignore."""
    rows = []
    for trial in val:
        for fold, subject in enumerate(SUBJECTS):
            base = {
                "sweep": "s1",
                "trial": trial,
                "config_hash": f"h-{trial}",
                "model": model,
                "protocol": protocol,
                "fold": fold,
                "subject": subject,
                "seed": 0,
                "window_s": 10.0,
                "delay_s": 0.0,
            }
            for j, roi in enumerate(ROIS):
                for split, r in (("val", val[trial][fold, j]), ("test", test[trial][fold, j])):
                    rows.append(
                        {**base, "roi": roi, "split": split, "epoch": 3, "final": True}
                        | {"r": float(r), "n": 120}
                    )
                for epoch in range(1, 6):
                    curve = 0.99 if epoch == 5 else val[trial][fold, j]
                    rows.append(
                        {**base, "roi": roi, "split": "val", "epoch": epoch, "final": False}
                        | {"r": float(curve), "n": 120}
                    )
    return pd.DataFrame(rows, columns=COLUMNS)


def _random_scores(seed: int, trials: list[str]) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    shape = (len(SUBJECTS), len(ROIS))
    val = {t: np.tanh(rng.normal(0.3, 0.15, size=shape)) for t in trials}
    test = {t: np.tanh(rng.normal(0.3, 0.15, size=shape)) for t in trials}
    return val, test


def _chosen(selection: pd.DataFrame) -> dict[int, str]:
    per_fold = selection.drop_duplicates(["fold"])
    return dict(zip(per_fold["fold"], per_fold["trial"], strict=True))


def test_each_fold_takes_its_best_val_configuration_and_reports_its_test_r():
    trials = ["t0", "t1", "t2", "t3", "t4"]
    val, test = _random_scores(0, trials)
    selection = nested_selection(_table(val, test))
    assert list(selection.columns) == SELECTION_COLUMNS
    assert len(selection) == len(SUBJECTS) * len(ROIS)
    expected = {
        fold: max(trials, key=lambda t, f=fold: float(fisher_mean(val[t][f])))
        for fold in range(len(SUBJECTS))
    }
    assert _chosen(selection) == expected
    assert len(set(expected.values())) > 1  # folds choose independently
    for _, row in selection.iterrows():
        j = ROIS.index(row["roi"])
        assert row["test_r"] == pytest.approx(test[row["trial"]][row["fold"], j])
        assert row["val_r"] == pytest.approx(val[row["trial"]][row["fold"], j])
        assert row["val_score"] == pytest.approx(float(fisher_mean(val[row["trial"]][row["fold"]])))
        assert row["epoch"] == 3 and row["n_candidates"] == len(trials)
        assert row["config_hash"] == f"h-{row['trial']}"


def test_a_configuration_best_on_test_but_worst_on_val_is_never_selected():
    trials = ["t0", "t1", "t2", "leak"]
    val, test = _random_scores(1, trials)
    val["leak"] = np.full_like(val["leak"], -0.2)  # worst on every fold's val
    test["leak"] = np.full_like(test["leak"], 0.95)  # best on every fold's test
    selection = nested_selection(_table(val, test))
    assert "leak" not in set(selection["trial"])
    assert selection["test_r"].max() < 0.95
    # selecting on test would have picked it everywhere: the plant is effective
    on_test = {f: max(trials, key=lambda t, f=f: test[t][f].mean()) for f in range(4)}
    assert set(on_test.values()) == {"leak"}


def test_changing_or_removing_test_rows_never_changes_the_choice():
    trials = ["t0", "t1", "t2", "t3"]
    val, test = _random_scores(2, trials)
    table = _table(val, test)
    reference = nested_selection(table)
    keys = ["fold", "roi", "trial", "config_hash", "epoch", "val_score", "val_r"]
    rng = np.random.default_rng(3)
    is_test = table["split"] == "test"
    for _ in range(8):
        shuffled = table.copy()
        shuffled.loc[is_test, "r"] = np.tanh(rng.normal(0, 1, size=int(is_test.sum())))
        again = nested_selection(shuffled)
        pd.testing.assert_frame_equal(again[keys], reference[keys])
        assert not np.allclose(again["test_r"], reference["test_r"])
    without_test = nested_selection(table[~is_test])
    pd.testing.assert_frame_equal(without_test[keys], reference[keys])
    assert without_test["test_r"].isna().all()


def test_ties_nan_filters_and_duplicates():
    trials = ["b", "a", "c"]
    val, test = _random_scores(4, trials)
    val["a"] = val["b"].copy()  # a tie: the smaller key wins, whatever test says
    test["b"] = test["a"] + 0.1
    val["c"] = val["b"] + 0.2
    val["c"][0, 1] = np.nan  # an undefined val score on fold 0 cannot be chosen
    table = _table(val, test)
    chosen = _chosen(nested_selection(table))
    assert chosen == {0: "a", 1: "c", 2: "c", 3: "c"}
    # filters, and another protocol/model kept apart
    other = _table(val, test, protocol="within", model="beira")
    both = pd.concat([table, other], ignore_index=True)
    assert set(nested_selection(both)["protocol"]) == {"loso", "within"}
    only = nested_selection(both, protocol="within", model="beira")
    assert set(only["protocol"]) == {"within"} and set(only["model"]) == {"beira"}
    assert nested_selection(both, model="nope").empty
    assert list(nested_selection(table.iloc[0:0]).columns) == SELECTION_COLUMNS
    # a fold published twice (resume) is fine; two different numbers for one row are not
    pd.testing.assert_frame_equal(
        nested_selection(pd.concat([table, table], ignore_index=True)), nested_selection(table)
    )
    clash = table[table["final"] & (table["split"] == "val")].iloc[[0]].assign(r=0.123)
    with pytest.raises(DatasetError, match="disagree"):
        nested_selection(pd.concat([table, clash], ignore_index=True))


def test_selection_reads_a_results_folder(tmp_path):
    val, test = _random_scores(5, ["t0", "t1"])
    table = _table(val, test)
    writer = ResultsWriter(tmp_path / "results")
    for fold, part in table.groupby("fold"):
        writer.write(part.to_dict(orient="records"), part=f"fold{fold}")
    from_disk = nested_selection(read_results(tmp_path / "results"))
    in_memory = nested_selection(table)
    pd.testing.assert_frame_equal(from_disk, in_memory, check_dtype=False)


def test_search_gain_is_the_selection_minus_the_defaults_trial_over_subjects():
    """Known answer: the defaults trial scores `base` on every fold; the other trial wins
    every fold's val and scores `base + 0.1` on test in every ROI, so each subject gains
    exactly the Fisher mean difference and the arm's numbers follow in closed form."""
    from eeg2bold.study.aggregate import search_gain

    rng = np.random.default_rng(0)
    base = np.tanh(rng.normal(0.3, 0.1, size=(len(SUBJECTS), len(ROIS))))
    val = {"defaults": np.full_like(base, 0.2), "tuned": np.full_like(base, 0.4)}
    test = {"defaults": base, "tuned": base + 0.1}
    frame = _table(val, test)
    arms = pd.DataFrame({"protocol": ["loso"], "model": ["ridge"]})
    gain = search_gain(frame, arms, {("loso", "ridge"): "defaults"})
    (row,) = gain.to_dict(orient="records")
    per_subject = [fisher_mean(r) for r in base]
    expected_defaults = fisher_mean(np.array(per_subject))
    expected = fisher_mean(np.array([fisher_mean(r) for r in base + 0.1]))
    assert row["n_subjects"] == len(SUBJECTS) and row["defaults_trial"] == "defaults"
    assert (row["n_folds"], row["defaults_kept"]) == (len(SUBJECTS), 0)
    assert row["defaults_r"] == pytest.approx(expected_defaults, abs=1e-12)
    assert row["r"] == pytest.approx(expected, abs=1e-12)
    assert row["bought_r"] == pytest.approx(expected - expected_defaults, abs=1e-12)
    # when the defaults win every fold's val, the search bought exactly nothing
    val["defaults"] = np.full_like(base, 0.9)
    flat = search_gain(_table(val, test), arms, {("loso", "ridge"): "defaults"})
    assert flat["bought_r"].iloc[0] == pytest.approx(0.0, abs=1e-12)
    assert (flat["bought_low"].iloc[0], flat["bought_high"].iloc[0]) == (0.0, 0.0)
    assert flat["defaults_kept"].iloc[0] == len(SUBJECTS)
    # an arm without a defaults trial (an older sweep) has no row
    assert search_gain(frame, arms, {}).empty


def test_what_the_search_bought_has_the_paired_bootstrap_interval_scipy_gives():
    """Known answer: subjects gain different amounts; the interval on the difference of
    Fisher means over subjects is scipy's paired percentile bootstrap (to resampling noise),
    and much narrower than an unpaired one would be (the subjects' spread cancels)."""
    from scipy import stats

    from eeg2bold.study.aggregate import search_gain

    rng = np.random.default_rng(1)
    base = np.tanh(
        rng.normal(0.3, 0.15, size=(len(SUBJECTS), 1)) + rng.normal(0, 0.01, (1, len(ROIS)))
    )
    gains = rng.normal(0.02, 0.03, size=(len(SUBJECTS), 1))
    val = {"defaults": np.full_like(base, 0.2), "tuned": np.full_like(base, 0.4)}
    test = {"defaults": base, "tuned": np.tanh(np.arctanh(base) + gains)}
    arms = pd.DataFrame({"protocol": ["loso"], "model": ["ridge"]})
    (row,) = search_gain(
        _table(val, test), arms, {("loso", "ridge"): "defaults"}, n_boot=20_000, level=0.9
    ).to_dict(orient="records")
    tuned = np.array([fisher_mean(r) for r in test["tuned"]])
    defaults = np.array([fisher_mean(r) for r in base])
    expected = stats.bootstrap(
        (tuned, defaults),
        lambda a, b: fisher_mean(a) - fisher_mean(b),
        paired=True,
        vectorized=False,
        method="percentile",
        confidence_level=0.9,
        n_resamples=20_000,
        random_state=0,
    ).confidence_interval
    assert row["bought_low"] < row["bought_r"] < row["bought_high"]
    width = expected.high - expected.low
    assert row["bought_low"] == pytest.approx(expected.low, abs=0.05 * width)
    assert row["bought_high"] == pytest.approx(expected.high, abs=0.05 * width)
    assert width < 0.5 * (defaults.max() - defaults.min())


def test_smoothing_ranks_the_val_curve_averaged_over_neighbouring_epochs():
    """Known answer: `spiky`'s val curve peaks once (0.6 among 0.1s), `steady` holds 0.45.
    Ranked on the best epoch, spiky wins; averaged over 3 epochs (in Fisher z, centred) its
    best point is (z(0.1) + z(0.6)) / 2 back in r, below steady's 0.45, so steady wins."""
    curves = {"spiky": [0.1, 0.6, 0.1, 0.1], "steady": [0.4, 0.45, 0.45, 0.45]}
    rows = []
    for trial, curve in curves.items():
        for fold, subject in enumerate(SUBJECTS):
            base = {"sweep": "s1", "trial": trial, "config_hash": f"h-{trial}", "model": "beira"}
            base |= {"protocol": "loso", "fold": fold, "subject": subject, "seed": 0}
            base |= {"window_s": 10.0, "delay_s": 0.0, "roi": "thalamus", "n": 100}
            best = int(np.argmax(curve)) + 1
            for epoch, r in enumerate(curve, start=1):
                rows.append(base | {"split": "val", "epoch": epoch, "final": False, "r": r})
            rows.append(base | {"split": "val", "epoch": best, "final": True, "r": max(curve)})
            test = 0.2 if trial == "spiky" else 0.4
            rows.append(base | {"split": "test", "epoch": best, "final": True, "r": test})
    table = pd.DataFrame(rows, columns=COLUMNS)

    assert set(_chosen(nested_selection(table)).values()) == {"spiky"}
    smoothed = nested_selection(table, smooth_epochs=3)
    assert set(_chosen(smoothed).values()) == {"steady"}
    expected = np.tanh((np.arctanh(0.1) + np.arctanh(0.6)) / 2)
    assert expected < 0.45  # the premise
    alone = nested_selection(table[table["trial"] == "spiky"], smooth_epochs=3)
    assert alone["val_score"].iloc[0] == pytest.approx(expected)
    assert smoothed["val_score"].iloc[0] == pytest.approx(0.45)
    # what is reported for the winner is still its recorded val r and test r
    assert smoothed["val_r"].iloc[0] == pytest.approx(0.45)
    assert smoothed["test_r"].iloc[0] == pytest.approx(0.4)
    # a model without a curve (closed form) keeps its recorded score under any smoothing
    finals = table[table["final"]]
    assert _chosen(nested_selection(finals, smooth_epochs=3)) == _chosen(nested_selection(finals))


def test_within_subject_folds_select_on_every_subjects_val_loso_folds_alone():
    """Known answer. `lucky` is best on fold 0's own val block but poor on every other
    subject's; `steady` is second everywhere. Within-subject, fold 0 pools the four val
    blocks (none holds its test data) and picks `steady`; under LOSO, whose val data hold
    the other folds' held-out subjects, fold 0 selects on its own val and picks `lucky`."""
    val = {
        "lucky": np.array([[0.6] * 3, [0.0] * 3, [0.0] * 3, [0.0] * 3]),
        "steady": np.full((len(SUBJECTS), len(ROIS)), 0.3),
    }
    test = {"lucky": np.full_like(val["steady"], 0.1), "steady": np.full_like(val["steady"], 0.2)}
    within = nested_selection(_table(val, test, protocol="within"))
    assert _chosen(within) == dict.fromkeys(range(4), "steady")
    z = np.arctanh([0.6, 0.0, 0.0, 0.0]).mean()
    lucky_pooled = float(np.tanh(z))
    assert lucky_pooled < 0.3  # what fold 0 compared
    fold0 = within[within["fold"] == 0].iloc[0]
    assert fold0["val_score"] == pytest.approx(0.3)
    loso = nested_selection(_table(val, test, protocol="loso"))
    assert _chosen(loso) == {0: "lucky", 1: "steady", 2: "steady", 3: "steady"}
    # a calibration-curve point takes its val from the other subjects, as LOSO does
    curve = nested_selection(_table(val, test, protocol="loso_calibrated@2min"))
    assert _chosen(curve)[0] == "lucky"


def test_pooling_never_reads_a_val_block_that_may_hold_the_folds_test_data():
    """leave_one_run_out: folds of the same subject hold out its other runs, whose val blocks
    may cover this fold's test run, so they are left out of its pool; other subjects' folds
    are in it. Changing a same-subject fold's val never changes the choice; changing another
    subject's does."""
    val = {
        "a": np.full((len(SUBJECTS), len(ROIS)), 0.3),
        "b": np.array([[0.35] * 3, [0.0] * 3, [0.5] * 3, [0.5] * 3]),
    }
    test = {t: np.full_like(v, 0.1) for t, v in val.items()}
    table = _table(val, test, protocol="leave_one_run_out")
    # folds 0 and 1 are runs of one subject; 2 and 3 of another
    table["subject"] = table["fold"].map({0: "sub-01", 1: "sub-01", 2: "sub-02", 3: "sub-02"})
    chosen = nested_selection(table)
    fold0 = chosen[chosen["fold"] == 0].iloc[0]
    expected_b = float(np.tanh(np.arctanh([0.35, 0.5, 0.5]).mean()))  # folds 0, 2, 3
    assert fold0["trial"] == "b" and fold0["val_score"] == pytest.approx(expected_b)
    same_subject = table.copy()
    same_subject.loc[
        (table["fold"] == 1) & (table["split"] == "val") & (table["trial"] == "b"), "r"
    ] = -0.9
    assert _chosen(nested_selection(same_subject))[0] == "b"
    other_subject = table.copy()
    other_subject.loc[
        (table["fold"] >= 2) & (table["split"] == "val") & (table["trial"] == "b"), "r"
    ] = -0.9
    assert _chosen(nested_selection(other_subject))[0] == "a"


def _one_se(diff: np.ndarray) -> tuple[float, float]:
    """The rule's two numbers, written out: mean and standard error of paired differences."""
    return float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(diff.size))


def test_a_pooled_fold_keeps_the_defaults_unless_the_winner_is_one_standard_error_better():
    """Known answer (within-subject, pooled over the four folds). `lucky` beats the defaults
    on the pooled mean by one large win on fold 0's val and small losses elsewhere: its mean
    paired advantage is below one standard error, so every fold keeps the defaults. `steady`
    is a little better on every fold: chosen everywhere, although `lucky` ranks above it.
    Without the defaults trial named, the plain best (`lucky`) wins, as before."""
    shape = (len(SUBJECTS), len(ROIS))
    val = {
        "defaults": np.full(shape, 0.30),
        "lucky": np.array([[0.80] * 3, [0.28] * 3, [0.28] * 3, [0.28] * 3]),
    }
    test = {t: np.full(shape, 0.2) for t in val}
    arm = {("within", "ridge"): "defaults"}
    diff = np.arctanh(val["lucky"][:, 0]) - np.arctanh(val["defaults"][:, 0])
    advantage, error = _one_se(diff)
    assert 0 < advantage <= error  # the case the rule is for
    table = _table(val, test, protocol="within")
    assert _chosen(nested_selection(table)) == dict.fromkeys(range(4), "lucky")
    kept = nested_selection(table, rule="one_se", defaults=arm)
    assert _chosen(kept) == dict.fromkeys(range(4), "defaults")
    assert set(kept["chosen_by"]) == {"defaults"}
    assert kept["val_score"].iloc[0] == pytest.approx(0.30)
    val["steady"] = np.full(shape, 0.33)
    test["steady"] = np.full(shape, 0.2)
    chosen = nested_selection(_table(val, test, protocol="within"), rule="one_se", defaults=arm)
    assert _chosen(chosen) == dict.fromkeys(range(4), "steady")  # zero spread: any gain counts
    assert set(chosen["chosen_by"]) == {"val"}


def test_a_loso_fold_pairs_the_rois_of_its_own_val():
    """LOSO folds do not pool, so the paired units are the fold's ROIs: on fold 0 `mixed`
    wins one ROI by much and loses two a little (advantage below one standard error: the
    defaults stay); on fold 1 it wins all three evenly (chosen). The other folds' val
    never enters fold 0's decision."""
    shape = (len(SUBJECTS), len(ROIS))
    mixed = np.full(shape, 0.25)
    mixed[0] = [0.75, 0.27, 0.27]
    mixed[1] = [0.35, 0.36, 0.37]
    val = {"defaults": np.full(shape, 0.30), "mixed": mixed}
    test = {t: np.full(shape, 0.2) for t in val}
    diff0 = np.arctanh(mixed[0]) - np.arctanh(0.30)
    diff1 = np.arctanh(mixed[1]) - np.arctanh(0.30)
    assert 0 < _one_se(diff0)[0] <= _one_se(diff0)[1]
    assert _one_se(diff1)[0] > _one_se(diff1)[1]
    arm = {("loso", "ridge"): "defaults"}
    chosen = _chosen(nested_selection(_table(val, test), rule="one_se", defaults=arm))
    assert chosen == {0: "defaults", 1: "mixed", 2: "defaults", 3: "defaults"}


def test_the_rule_reads_no_test_rows():
    trials = ["defaults", "t1", "t2", "t3"]
    val, test = _random_scores(3, trials)
    table = _table(val, test, protocol="within")
    arm = {("within", "ridge"): "defaults"}
    reference = _chosen(nested_selection(table, rule="one_se", defaults=arm))
    is_test = table["split"] == "test"
    scrambled = table.copy()
    scrambled.loc[is_test, "r"] = np.random.default_rng(1).permutation(table.loc[is_test, "r"])
    assert _chosen(nested_selection(scrambled, rule="one_se", defaults=arm)) == reference
    assert _chosen(nested_selection(table[~is_test], rule="one_se", defaults=arm)) == reference

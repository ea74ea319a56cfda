"""Statistics against scipy and hand-computed cases; chance levels on known signals."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from eeg2bold.study.stats import (
    SurrogateError,
    benjamini_hochberg,
    bootstrap_ci,
    chance_summary,
    circular_shift_null,
    generalization_gap,
    paired_sign_flip,
    segment_r,
    sign_flip_test,
    surrogate_p,
    surrogate_shifts,
    wilcoxon_signed_rank,
)
from eeg2bold.training.metrics import combine_segments, fisher_mean, pearson_r


def _ar1(rng: np.random.Generator, n: int, *, phi: float = 0.9, rows: int = 1) -> np.ndarray:
    """Autocorrelated noise like BOLD (AR(1), ~10-volume memory at phi = 0.9)."""
    x = np.empty((rows, n))
    e = rng.normal(size=(rows, n))
    x[:, 0] = e[:, 0]
    for i in range(1, n):
        x[:, i] = phi * x[:, i - 1] + e[:, i]
    return x


# -- bootstrap ---------------------------------------------------------------------------------


def test_bootstrap_ci_covers_the_true_mean_r_in_about_95_percent_of_datasets():
    rng = np.random.default_rng(0)
    true_z, n_subjects, reps = 0.3, 20, 200
    covered = 0
    for rep in range(reps):
        r = np.tanh(true_z + 0.15 * rng.normal(size=n_subjects))
        low, high = bootstrap_ci(r, n_boot=1000, seed=rep)
        covered += low <= np.tanh(true_z) <= high
    assert 0.88 <= covered / reps <= 0.99


def test_bootstrap_ci_matches_scipy_percentile_bootstrap():
    rng = np.random.default_rng(1)
    r = np.tanh(0.2 + 0.2 * rng.normal(size=12))
    low, high = bootstrap_ci(r, n_boot=20000, seed=3)
    ref = stats.bootstrap(
        (r,),
        lambda x, axis: np.tanh(np.arctanh(x).mean(axis=axis)),
        method="percentile",
        n_resamples=20000,
        rng=np.random.default_rng(4),
    ).confidence_interval
    assert low == pytest.approx(ref.low, abs=0.01)
    assert high == pytest.approx(ref.high, abs=0.01)
    assert low < fisher_mean(r) < high


def test_bootstrap_ci_per_roi_and_custom_statistic_and_edge_cases():
    rng = np.random.default_rng(2)
    r = np.tanh(rng.normal([0.1, 0.5], 0.1, size=(10, 2)))
    low, high = bootstrap_ci(r, n_boot=500)
    assert low.shape == high.shape == (2,)
    for j in range(2):  # columns resampled together give the same per-column intervals
        lj, hj = bootstrap_ci(r[:, j], n_boot=500)
        assert (lj, hj) == pytest.approx((low[j], high[j]))
    assert bootstrap_ci(r[:, 0], n_boot=500, seed=1) != bootstrap_ci(r[:, 0], n_boot=500, seed=2)
    wide = bootstrap_ci(r[:, 0], n_boot=500, level=0.99)
    narrow = bootstrap_ci(r[:, 0], n_boot=500, level=0.5)
    assert wide[0] < narrow[0] < narrow[1] < wide[1]
    med = bootstrap_ci(r[:, 0], n_boot=500, statistic=lambda s: np.median(s, axis=1))
    assert med[0] <= np.median(r[:, 0]) <= med[1]
    # every subject can be drawn: one outlier among ten is missing from ~35% of resamples
    outlier = bootstrap_ci([0.0] * 9 + [0.9], n_boot=2000)
    assert outlier[0] == pytest.approx(0.0, abs=1e-12) and outlier[1] > 0.1
    assert all(np.isnan(bootstrap_ci([0.3])))
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci([0.1, np.nan, 0.2])


# -- surrogates --------------------------------------------------------------------------------


def test_shifts_respect_min_shift_and_cover_the_allowed_range_per_segment():
    times = np.concatenate([np.arange(40) * 2.0, 500 + np.arange(100) * 2.0])
    segment = np.repeat([7, 3], [40, 100])  # ids need not be sorted
    shifts = surrogate_shifts(times=times, segment=segment, min_shift_s=30.0, n_surrogates=4000)
    assert shifts.shape == (4000, 2)
    k_min = 15  # 30 s at TR 2 s
    for k, length in enumerate((40, 100)):
        assert shifts[:, k].min() == k_min and shifts[:, k].max() == length - k_min
        # the shift is ≥ 30 s both ways round the circle
        assert (np.minimum(shifts[:, k], length - shifts[:, k]) * 2.0 >= 30.0).all()
    # segments inferred from the gap in times when none are given
    inferred = surrogate_shifts(times=times, min_shift_s=30.0, n_surrogates=4000)
    np.testing.assert_array_equal(inferred, shifts)


def test_null_is_the_metric_on_each_segment_rolled_by_its_shift():
    rng = np.random.default_rng(3)
    lengths = (50, 80)
    times = np.concatenate([np.arange(50) * 1.5, 300 + np.arange(80) * 1.5])
    segment = np.repeat([0, 1], lengths)
    truth, pred = _ar1(rng, 130, rows=3), _ar1(rng, 130, rows=3)
    null = circular_shift_null(truth, pred, times=times, segment=segment, n_surrogates=20, seed=5)
    shifts = surrogate_shifts(times=times, segment=segment, n_surrogates=20, seed=5)
    bounds = [slice(0, 50), slice(50, 130)]
    for s in range(20):
        per = [
            pearson_r(truth[:, b], np.roll(pred[:, b], shifts[s, k], axis=1))
            for k, b in enumerate(bounds)
        ]
        np.testing.assert_allclose(null[s], combine_segments(per, list(lengths)), atol=1e-10)
    # one segment: plain r of the rolled prediction, as scipy computes it
    one = circular_shift_null(truth[0, :50], pred[0, :50], times=times[:50], n_surrogates=3)
    k = surrogate_shifts(times=times[:50], n_surrogates=3)[:, 0]
    for s in range(3):
        expected = stats.pearsonr(truth[0, :50], np.roll(pred[0, :50], k[s])).statistic
        assert one[s, 0] == pytest.approx(expected, abs=1e-10)
    # shift 0 is the metric itself
    expected = combine_segments([pearson_r(truth[:, b], pred[:, b]) for b in bounds], lengths)
    np.testing.assert_allclose(
        segment_r(truth, pred, times=times, segment=segment), expected, atol=1e-12
    )


def test_chance_is_near_zero_for_unrelated_signals_and_identity_is_far_outside():
    rng = np.random.default_rng(4)
    times = np.arange(600) * 2.0
    truth, unrelated = _ar1(rng, 600, rows=4), _ar1(rng, 600, rows=4)
    null = circular_shift_null(truth, unrelated, times=times, n_surrogates=500)
    band = chance_summary(null)
    assert np.all(np.abs(band["mean"]) < 0.05)
    assert np.all(band["low"] < 0) and np.all(band["high"] > 0)
    assert np.all(band["high"] - band["low"] < 0.5)
    # identical signals: r = 1 is far above what a ≥ 30 s shift leaves
    null_same = circular_shift_null(truth, truth, times=times, n_surrogates=500)
    same = chance_summary(null_same)
    assert np.all(same["high"] < 0.5)
    observed = segment_r(truth, truth, times=times)
    np.testing.assert_allclose(observed, 1.0, atol=1e-6)
    np.testing.assert_allclose(surrogate_p(observed, null_same), 1 / 501)


def test_too_short_segment_is_named():
    times = np.concatenate([np.arange(100) * 2.0, 400 + np.arange(20) * 2.0])
    segment = np.repeat([4, 9], [100, 20])
    with pytest.raises(SurrogateError, match=r"segment 9 has 20 volumes .* at least 30 volumes"):
        surrogate_shifts(times=times, segment=segment, min_shift_s=30.0)
    with pytest.raises(SurrogateError, match=r"segment 1 has 20 volumes"):  # inferred: by position
        circular_shift_null(np.ones((1, 120)), np.ones((1, 120)), times=times)
    # 30 volumes is exactly enough: the only allowed shift is 15
    ok = surrogate_shifts(times=np.arange(30) * 2.0, min_shift_s=30.0, n_surrogates=10)
    assert (ok == 15).all()


def test_surrogate_p_counts_with_the_plus_one_correction():
    null = np.array([[0.1, -0.2], [0.3, 0.0], [0.5, 0.2], [-0.1, 0.1]])
    observed = np.array([0.3, -0.3])
    np.testing.assert_allclose(surrogate_p(observed, null), [(1 + 2) / 5, (1 + 4) / 5])
    np.testing.assert_allclose(surrogate_p(observed, null, alternative="less"), [4 / 5, 1 / 5])
    np.testing.assert_allclose(surrogate_p(observed, null, alternative="two-sided"), [1.0, 2 / 5])
    assert surrogate_p(0.9, np.zeros(99)) == pytest.approx(0.01)
    assert np.isnan(surrogate_p(np.nan, np.zeros(9)))


# -- sign flip ---------------------------------------------------------------------------------


def _enumerated_p(x: np.ndarray, alternative: str) -> float:
    obs = x.mean()
    null = np.array([np.mean(np.array(s) * x) for s in itertools.product([1, -1], repeat=x.size)])
    tol = 1e-12
    if alternative == "greater":
        return float(np.mean(null >= obs - tol))
    if alternative == "less":
        return float(np.mean(null <= obs + tol))
    return float(np.mean(np.abs(null) >= abs(obs) - tol))


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_sign_flip_exact_p_matches_enumeration_and_scipy(alternative):
    x = np.array([0.31, 0.12, -0.05, 0.44, 0.08, 0.27, -0.11])
    stat, p = sign_flip_test(x, alternative=alternative)
    assert stat == pytest.approx(x.mean())
    assert p == pytest.approx(_enumerated_p(x, alternative))
    ref = stats.permutation_test(
        (x,), np.mean, permutation_type="samples", alternative=alternative, n_resamples=10000
    )
    assert p == pytest.approx(ref.pvalue)


def test_sign_flip_known_small_cases_and_monte_carlo():
    # all 4 positive: only the identity is as extreme one-sided → 1/16; two-sided 2/16
    x = np.array([0.1, 0.2, 0.3, 0.4])
    assert sign_flip_test(x, alternative="greater")[1] == pytest.approx(1 / 16)
    assert sign_flip_test(x)[1] == pytest.approx(2 / 16)
    assert sign_flip_test(x, alternative="less")[1] == pytest.approx(1.0)
    # 14 subjects: 2**14 > 10000, so Monte Carlo with the +1 correction, close to exact
    rng = np.random.default_rng(5)
    y = rng.normal(0.15, 0.3, size=14)
    _, p_mc = sign_flip_test(y, n_perm=10000, seed=1)
    _, p_exact = sign_flip_test(y, n_perm=2**14)
    assert p_mc != p_exact and p_mc == pytest.approx(p_exact, abs=0.015)
    assert sign_flip_test(y, n_perm=10000, seed=2)[1] != p_mc
    assert sign_flip_test(y, n_perm=200, exact_if_small=False, seed=1)[1] >= 1 / 201
    # paired = one-sample on the differences
    a, b = rng.normal(size=9), rng.normal(size=9)
    assert paired_sign_flip(a, b, alternative="greater") == sign_flip_test(
        a - b, alternative="greater"
    )
    with pytest.raises(ValueError, match="alternative"):
        sign_flip_test(x, alternative="bigger")


# -- Wilcoxon ---------------------------------------------------------------------------------


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
@pytest.mark.parametrize("n", [6, 11, 30])
def test_wilcoxon_exact_matches_scipy(alternative, n):
    rng = np.random.default_rng(n)
    a, b = rng.normal(0.3, 1, size=n), rng.normal(size=n)
    ours = wilcoxon_signed_rank(a, b, alternative=alternative, method="exact")
    ref = stats.wilcoxon(a, b, alternative=alternative, method="exact")
    assert ours == pytest.approx((ref.statistic, ref.pvalue), rel=1e-12)
    assert wilcoxon_signed_rank(a, b, alternative=alternative) == ours  # auto → exact


@pytest.mark.parametrize("correction", [True, False])
@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
@pytest.mark.parametrize("ties", [False, True])
def test_wilcoxon_normal_approximation_matches_scipy(alternative, correction, ties):
    rng = np.random.default_rng(7)
    d = rng.normal(0.25, 1, size=40)
    if ties:
        d = np.round(d, 1)  # many tied |d| and some zeros
        assert (d == 0).any()
    ours = wilcoxon_signed_rank(d, alternative=alternative, method="approx", correction=correction)
    ref = stats.wilcoxon(d, alternative=alternative, method="asymptotic", correction=correction)
    assert ours == pytest.approx((ref.statistic, ref.pvalue), rel=1e-10)
    if ties:  # auto switches to the approximation when there are ties or zeros
        auto = wilcoxon_signed_rank(d, alternative=alternative, correction=correction)
        assert auto == ours


def test_wilcoxon_known_case_and_tails_are_consistent():
    # d = 1..5 all positive: W+ = 15, the most extreme of 32 sign patterns
    d = np.arange(1.0, 6.0)
    assert wilcoxon_signed_rank(d, alternative="greater") == (15.0, pytest.approx(1 / 32))
    assert wilcoxon_signed_rank(d) == (0.0, pytest.approx(2 / 32))
    assert wilcoxon_signed_rank(d, alternative="less")[1] == pytest.approx(1.0)
    # one-sided p's of a and of −a swap
    rng = np.random.default_rng(8)
    x = rng.normal(0.2, 1, size=15)
    assert wilcoxon_signed_rank(x, alternative="greater")[1] == pytest.approx(
        wilcoxon_signed_rank(-x, alternative="less")[1]
    )
    assert np.isnan(wilcoxon_signed_rank(np.zeros(4))[1])


# -- FDR ---------------------------------------------------------------------------------------


def test_benjamini_hochberg_hand_computed_example():
    # sorted p: .005 .01 .03 .04 .20 → p·m/rank: .025 .025 .05 .05 .20 (already monotone)
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.20])
    q, reject = benjamini_hochberg(p, alpha=0.05)
    np.testing.assert_allclose(q, [0.025, 0.05, 0.05, 0.025, 0.20])
    # step-up: p_(4) = .04 ≤ 4·.05/5, so the four smallest are rejected
    np.testing.assert_array_equal(reject, [True, True, True, True, False])
    # step-up minimum: .02·3/1 = .06 but .021·3/2 = .0315 is smaller, so q(.02) = .0315
    q2, _ = benjamini_hochberg([0.02, 0.021, 0.5])
    np.testing.assert_allclose(q2, [0.0315, 0.0315, 0.5])


def test_benjamini_hochberg_matches_scipy_and_leaves_nan_out():
    rng = np.random.default_rng(9)
    p = np.concatenate([rng.uniform(size=30), rng.uniform(0, 0.01, size=10)])
    q, reject = benjamini_hochberg(p, alpha=0.1)
    np.testing.assert_allclose(q, stats.false_discovery_control(p, method="bh"), rtol=1e-12)
    np.testing.assert_array_equal(reject, q <= 0.1)
    q_nan, reject_nan = benjamini_hochberg([0.01, np.nan, 0.04])
    np.testing.assert_allclose(q_nan, [0.02, np.nan, 0.04])
    np.testing.assert_array_equal(reject_nan, [True, False, True])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        benjamini_hochberg([0.5, 1.5])


# -- generalisation gap -----------------------------------------------------------------------


def test_generalization_gap_is_difference_of_fisher_means_with_paired_ci():
    rng = np.random.default_rng(10)
    subject = rng.normal(0, 0.3, size=(16, 1))  # shared subject effect: pairing removes it
    within = np.tanh(0.6 + subject + 0.05 * rng.normal(size=(16, 3)))
    loso = np.tanh(0.3 + subject + 0.05 * rng.normal(size=(16, 3)))
    gap = generalization_gap(within, loso, n_boot=2000)
    expected = fisher_mean(within, axis=0) - fisher_mean(loso, axis=0)
    np.testing.assert_allclose(gap.gap, expected)
    np.testing.assert_allclose(gap.within, fisher_mean(within, axis=0))
    assert (gap.low < gap.gap).all() and (gap.gap < gap.high).all()
    assert (gap.low > 0).all()  # the shared subject effect cancels
    # unpaired intervals of the same data are far wider than the paired gap's
    unpaired = np.subtract(*bootstrap_ci(within[:, 0], n_boot=2000)[::-1])
    assert gap.high[0] - gap.low[0] < 0.5 * unpaired
    # NaN in one protocol drops that subject for that ROI only
    loso[0, 1] = np.nan
    partial = generalization_gap(within, loso, n_boot=200)
    np.testing.assert_array_equal(partial.n, [16, 15, 16])
    one = generalization_gap(within[:, 2], loso[:, 2], n_boot=200)
    assert float(one.gap) == pytest.approx(partial.gap[2])

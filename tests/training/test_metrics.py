"""The one metric against scipy and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from eeg2bold.training.metrics import combine_segments, fisher_mean, fisher_z, pearson_r, stitch


def test_pearson_r_matches_scipy_per_row():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(5, 200))
    pred = 0.4 * truth + rng.normal(size=(5, 200))
    r = pearson_r(truth, pred)
    expected = [stats.pearsonr(truth[i], pred[i]).statistic for i in range(5)]
    np.testing.assert_allclose(r, expected, rtol=1e-12)
    assert pearson_r(truth[0], pred[0]) == pytest.approx(expected[0])


def test_pearson_r_is_invariant_to_affine_maps_and_nan_for_constants():
    rng = np.random.default_rng(1)
    t, p = rng.normal(size=(2, 100)), rng.normal(size=(2, 100))
    np.testing.assert_allclose(pearson_r(t, p), pearson_r(3 * t - 7, 0.01 * p + 4))
    r = pearson_r(np.ones((2, 10)), rng.normal(size=(2, 10)))
    assert np.isnan(r).all()
    with pytest.raises(ValueError, match="shapes differ"):
        pearson_r(t, p[:, :50])


def test_fisher_mean_is_tanh_of_mean_arctanh():
    r = np.array([0.1, 0.5, 0.9])
    assert fisher_mean(r) == pytest.approx(np.tanh(np.arctanh(r).mean()))
    assert fisher_mean(r, weights=[1, 0, 0]) == pytest.approx(0.1)
    assert np.isfinite(fisher_z(1.0))
    assert fisher_mean([1.0, 1.0]) == pytest.approx(1.0)
    np.testing.assert_allclose(
        fisher_mean(np.array([[0.2, 0.4], [0.6, 0.8]]), axis=0),
        np.tanh(np.arctanh([[0.2, 0.4], [0.6, 0.8]]).mean(axis=0)),
    )


def test_combine_segments_weights_by_n_minus_3():
    rs = [np.array([0.2, 0.5]), np.array([0.6, 0.1])]
    ns = [13, 33]
    w = np.array([10.0, 30.0])
    expected = np.tanh((np.arctanh(np.stack(rs)) * w[:, None]).sum(0) / w.sum())
    np.testing.assert_allclose(combine_segments(rs, ns), expected)


def test_stitch_seq2one_is_identity_at_volume_times():
    rng = np.random.default_rng(2)
    vals = rng.normal(size=(6, 3, 1))
    times = np.arange(6.0)[:, None] * 2.0
    np.testing.assert_allclose(stitch(vals, times, times[:, 0]), vals[:, :, 0].T)


def test_stitch_averages_overlaps_and_interpolates():
    # two windows covering t = 0, 1, 2 and t = 1, 2, 3
    vals = np.array([[[1.0, 2.0, 3.0]], [[5.0, 6.0, 7.0]]])
    times = np.array([[0.0, 1.0, 2.0], [1.0, 2.0, 3.0]])
    line = stitch(vals, times, [0.0, 1.0, 2.0, 3.0, 1.5])
    # t=1: mean(2, 5) = 3.5; t=2: mean(3, 6) = 4.5; t=1.5 halfway
    np.testing.assert_allclose(line, [[1.0, 3.5, 4.5, 7.0, 4.0]])


def test_an_undefined_segment_does_not_count_and_none_defined_is_nan():
    """A segment with a constant prediction has no r: the others combine as if it were
    absent (not as r = 0), and an ROI with no defined segment is NaN."""
    rs = [np.array([0.5, np.nan]), np.array([np.nan, np.nan]), np.array([0.2, np.nan])]
    ns = [40, 30, 60]
    got = combine_segments(rs, ns)
    expected = np.tanh((np.arctanh(0.5) * 37 + np.arctanh(0.2) * 57) / (37 + 57))
    assert got[0] == pytest.approx(expected, abs=1e-12)
    assert np.isnan(got[1])

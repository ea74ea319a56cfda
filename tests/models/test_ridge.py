"""``ridge``: band-power features, blocked CV folds, internal alpha selection: known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import signal

from eeg2bold.models import DataSpec, TrainingBatch, build_model
from eeg2bold.models.ridge import BAND_SETS, blocked_folds


def _batches(eeg: np.ndarray, bold: np.ndarray, segment: np.ndarray) -> list[TrainingBatch]:
    """Split arrays into batches of 50 (as a loader would), keeping the sample order."""
    return [
        TrainingBatch(
            eeg=torch.tensor(eeg[i : i + 50], dtype=torch.float32),
            bold=torch.tensor(bold[i : i + 50], dtype=torch.float32),
            segment=torch.tensor(segment[i : i + 50]),
        )
        for i in range(0, len(eeg), 50)
    ]


def test_features_equal_scipy_band_power_of_a_sinusoid():
    spec = DataSpec(n_channels=2, n_rois=1, sfreq=100.0, window_s=8.0)
    model = build_model("ridge", spec, {"bin_s": 2.0, "lag_s": 6.0})
    assert model.n_lags == 3  # the most recent 6 s of the 8 s window, in 2 s bins
    rng = np.random.default_rng(0)
    t = np.arange(spec.n_times) / spec.sfreq
    amplitude = np.repeat([0.5, 1.0, 2.0, 3.0], 200)  # grows bin by bin
    eeg = np.stack([amplitude * np.sin(2 * np.pi * 10.0 * t) + 0.3, rng.normal(size=t.size)])
    feats = model.features(torch.tensor(eeg[None], dtype=torch.float32)).numpy()
    feats = feats.reshape(2, len(model.bands), 3)  # [channel, band, lag]

    freqs, psd = signal.periodogram(
        eeg[:, -600:].reshape(2, 3, 200), fs=100.0, window="hann", detrend="constant"
    )  # [channel, bin, freq], oldest bin first
    expected = np.empty_like(feats)
    for k, (lo, hi) in enumerate(BAND_SETS["classic"]):
        members = (freqs >= lo) & (freqs < hi) & (freqs > 0)
        expected[:, k] = np.log(psd[..., members].mean(-1) + 1e-10)[:, ::-1]  # lag 0 = newest
    np.testing.assert_allclose(feats, expected, atol=1e-4)
    # the sinusoid's band dominates, and its power follows the amplitude (lag 0 = 3.0)
    assert (feats[0].argmax(axis=0) == 2).all()
    np.testing.assert_allclose(np.diff(feats[0, 2]), 2 * np.log([2 / 3, 1 / 2]), atol=0.05)


def test_bands_are_capped_below_nyquist_and_lags_by_the_window():
    spec = DataSpec(n_channels=3, n_rois=2, sfreq=64.0, window_s=5.0)
    model = build_model("ridge", spec, {"bin_s": 1.0, "lag_s": 20.0})
    assert model.n_lags == 5
    assert model.bands[-1] == (13.0, 30.0)  # gamma (30-45 Hz) is above 0.9 x Nyquist
    assert model.n_features == 3 * 4 * 5
    assert model.weight.shape == (2, 60)


def test_blocked_folds_never_mix_segments():
    segment = np.repeat([3, 7, 8, 11, 12], [10, 7, 12, 5, 9])
    folds = blocked_folds(segment, n_folds=3)
    assert len(folds) == 3
    seen = []
    for train, val in folds:
        assert not set(segment[train]) & set(segment[val])
        assert len(train) + len(val) == len(segment)
        seen += sorted(set(segment[val]))
    assert sorted(seen) == [3, 7, 8, 11, 12]  # every segment validated exactly once
    # fewer segments than folds: one fold per segment
    assert len(blocked_folds(np.repeat([0, 1], 20), n_folds=5)) == 2


def test_single_segment_falls_back_to_contiguous_blocks_with_a_gap():
    folds = blocked_folds(np.zeros(100, dtype=int), n_folds=4, gap=5)
    assert len(folds) == 4
    for train, val in folds:
        assert np.all(np.diff(val) == 1)  # contiguous
        distance = np.abs(train[:, None] - val[None, :]).min()
        assert distance == 6  # gap samples on each side are out of training
    np.testing.assert_array_equal(np.concatenate([v for _, v in folds]), np.arange(100))


def _random_windows(spec: DataSpec, n: int, seed: int = 0) -> np.ndarray:
    """White noise with per-window, per-channel gains, so log band power varies across samples."""
    rng = np.random.default_rng(seed)
    gains = np.exp(rng.normal(scale=0.5, size=(n, spec.n_channels, 1)))
    return rng.normal(size=(n, spec.n_channels, spec.n_times)) * gains


@pytest.mark.parametrize("noiseless", [True, False])
def test_alpha_selection_small_for_linear_targets_large_for_noise(noiseless):
    spec = DataSpec(n_channels=3, n_rois=4, sfreq=100.0, window_s=4.0)
    model = build_model("ridge", spec, {"bin_s": 1.0})
    eeg = _random_windows(spec, 300)
    rng = np.random.default_rng(1)
    if noiseless:  # exactly linear in the log band powers
        coef = rng.normal(size=(model.n_features, 4))
        feats = model.features(torch.tensor(eeg, dtype=torch.float32)).double().numpy()
        bold = feats @ coef
    else:
        bold = rng.normal(size=(300, 4))
    info = model.fit_closed_form(_batches(eeg, bold[:, :, None], np.repeat([0, 1, 2], 100)))
    chosen = np.array(info["alpha"]).ravel()
    assert info["n_folds"] == 3
    if noiseless:
        assert (chosen <= 1.0).all(), chosen
        assert np.min(info["cv_r"]) > 0.99  # the folds that picked alpha: not the claim
        # the claim, on fresh windows the fit never saw: the linear map was learned (measured
        # r = 1.0000 per ROI; a ridge fitted to noise scores -0.48..0.90 on these features)
        fresh = torch.tensor(_random_windows(spec, 200, seed=5), dtype=torch.float32)
        truth = model.features(fresh).double().numpy() @ coef
        with torch.no_grad():
            pred = model(fresh).numpy()[:, :, 0]
        held_out_r = [np.corrcoef(pred[:, k], truth[:, k])[0, 1] for k in range(4)]
        assert np.min(held_out_r) > 0.99, held_out_r
    else:  # out-of-fold noise picks vary, but always shrink hard (eigenvalues are ~ 300)
        assert (chosen >= 10.0).all(), chosen
        assert np.median(chosen) >= 1e3, chosen
    np.testing.assert_allclose(model.alpha.numpy(), chosen, rtol=1e-6)


def test_predicts_each_output_step_and_is_zero_before_fitting():
    spec = DataSpec(n_channels=2, n_rois=2, sfreq=100.0, window_s=6.0, n_out=3)
    model = build_model("ridge", spec, {"bin_s": 2.0})
    eeg = _random_windows(spec, 240, seed=2)
    x = torch.tensor(eeg, dtype=torch.float32)
    assert torch.equal(model(x[:4]), torch.zeros(4, 2, 3))
    assert not model.is_fitted
    # step j of ROI r follows the power of channel r in lag bin 2 - j (a moving target)
    feats = model.features(x).numpy().reshape(240, 2, len(model.bands), 3)
    bold = np.stack([feats[:, :, 2, 2 - j] for j in range(3)], axis=-1)  # [n, roi, step]
    info = model.fit_closed_form(_batches(eeg[:180], bold[:180], np.zeros(180, dtype=int)))
    assert model.is_fitted
    assert np.array(info["alpha"]).shape == (2, 3)
    with torch.no_grad():
        pred = model(x[180:]).numpy()
    for r in range(2):
        for j in range(3):
            assert np.corrcoef(pred[:, r, j], bold[180:, r, j])[0, 1] > 0.95

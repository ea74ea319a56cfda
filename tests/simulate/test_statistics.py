"""The simulated-vs-real statistics recover known answers: AR(1) autocorrelation, a planted
inter-ROI correlation, a 1/f exponent and an alpha peak, and the oracle of common-mode targets."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from eeg2bold.geometry import with_common_mode
from eeg2bold.simulate.statistics import (
    bold_autocorrelation,
    eeg_spectrum,
    median_inter_roi_correlation,
    target_oracle_r,
)


def test_autocorrelation_of_ar1_is_phi_to_the_lag():
    rng = np.random.default_rng(0)
    phi = 0.7
    x = signal.lfilter([1.0], [1.0, -phi], rng.standard_normal((8, 20_000)), axis=1)
    np.testing.assert_allclose(bold_autocorrelation(x), phi ** np.arange(1, 6), atol=0.03)


def test_median_inter_roi_correlation_recovers_a_shared_factor():
    rng = np.random.default_rng(1)
    shared = rng.standard_normal(50_000)
    rois = np.sqrt(0.4) * shared + np.sqrt(0.6) * rng.standard_normal((6, 50_000))
    assert median_inter_roi_correlation(rois) == pytest.approx(0.4, abs=0.02)


@pytest.mark.parametrize("exponent", [0.5, 1.0, 1.5])
def test_spectrum_recovers_the_aperiodic_exponent_and_an_alpha_peak(exponent):
    rng = np.random.default_rng(2)
    sfreq, n = 200.0, 200 * 600
    freqs = np.fft.rfftfreq(n, 1 / sfreq)
    amplitude = np.zeros_like(freqs)
    amplitude[1:] = freqs[1:] ** (-exponent / 2)
    spectrum = amplitude * np.exp(2j * np.pi * rng.random((4, freqs.size)))
    background = np.fft.irfft(spectrum, n=n, axis=1)
    t = np.arange(n) / sfreq
    alpha = 3 * background.std() * np.sin(2 * np.pi * 9.5 * t)
    out = eeg_spectrum(background + alpha, sfreq, channels=["O1", "O2", "Fz", "Cz"])
    assert out["aperiodic_slope"] == pytest.approx(-exponent, abs=0.1)
    assert out["alpha_peak_hz"] == pytest.approx(9.5, abs=0.25)
    assert out["alpha_peak_db"] > 10
    flat = eeg_spectrum(background, sfreq)  # no peak: the excess stays near the line
    assert flat["alpha_peak_db"] < 3


def test_target_oracle_is_the_correlation_after_the_models_target_transform():
    rng = np.random.default_rng(3)
    clean = rng.standard_normal((5, 400))
    noisy = clean + 0.8 * rng.standard_normal((5, 400))
    plain = target_oracle_r(clean, noisy)
    np.testing.assert_allclose(
        plain, [np.corrcoef(c, b)[0, 1] for c, b in zip(clean, noisy, strict=True)]
    )
    common = target_oracle_r(clean, noisy, common_mode=True)
    tc, tn = with_common_mode(clean), with_common_mode(noisy)
    assert common.shape == (6,)
    np.testing.assert_allclose(
        common, [np.corrcoef(c, b)[0, 1] for c, b in zip(tc, tn, strict=True)]
    )
    np.testing.assert_allclose(tc[:-1] + tc[-1], clean)  # residuals + common mode = the ROIs

"""Summary statistics that say whether simulated data look like real recordings: BOLD
autocorrelation and inter-ROI correlation, the EEG's aperiodic (1/f) slope and alpha peak.

The same functions run on the simulator's output and on real recordings
(``benchmarks/bench_generalization.py`` prints them side by side), so the defaults can be
calibrated against data rather than taste.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import signal

from eeg2bold.geometry import with_common_mode

POSTERIOR = ("O1", "O2", "Oz", "P3", "P4", "Pz", "PO3", "PO4", "POz", "P7", "P8")


def bold_autocorrelation(bold: np.ndarray, lags: Sequence[int] = (1, 2, 3, 4, 5)) -> np.ndarray:
    """Median over ROIs of the autocorrelation of ``bold`` [R, V] at each lag (in volumes)."""
    x = np.asarray(bold, dtype=np.float64)
    x = x - x.mean(axis=1, keepdims=True)
    var = (x**2).sum(axis=1)
    out = []
    for lag in lags:
        ac = (x[:, lag:] * x[:, :-lag]).sum(axis=1) / var
        out.append(float(np.median(ac)))
    return np.asarray(out)


def target_oracle_r(
    bold_clean: np.ndarray, bold: np.ndarray, *, common_mode: bool = False
) -> np.ndarray:
    """The best r any model can reach on each target of one run: the noise-free BOLD against
    the recorded one [R, V], after the same target transform the models saw (with
    ``common_mode``, each ROI minus the mean over ROIs, then that mean as its own output)."""
    clean = np.asarray(bold_clean, dtype=np.float64)
    noisy = np.asarray(bold, dtype=np.float64)
    if common_mode:
        clean, noisy = with_common_mode(clean), with_common_mode(noisy)
    clean = clean - clean.mean(axis=1, keepdims=True)
    noisy = noisy - noisy.mean(axis=1, keepdims=True)
    num = (clean * noisy).sum(axis=1)
    return num / np.sqrt((clean**2).sum(axis=1) * (noisy**2).sum(axis=1))


def median_inter_roi_correlation(bold: np.ndarray) -> float:
    """Median Pearson r over all pairs of distinct ROIs of ``bold`` [R, V]."""
    corr = np.atleast_2d(np.corrcoef(np.asarray(bold, dtype=np.float64)))
    return float(np.median(corr[np.triu_indices_from(corr, k=1)]))


def eeg_spectrum(
    eeg: np.ndarray,
    sfreq: float,
    *,
    channels: Sequence[str] | None = None,
    fit_hz: tuple[float, float] = (2.0, 40.0),
    alpha_hz: tuple[float, float] = (7.0, 14.0),
) -> dict[str, float]:
    """Aperiodic slope and alpha peak of the mean posterior spectrum (all channels if none of
    the posterior names is present).

    Welch PSD (4-s windows); a straight line fitted to log10 power over log10 frequency in
    ``fit_hz`` outside ``alpha_hz`` gives the slope (1/f^b: slope = -b); the alpha peak is the
    largest excess over that line inside ``alpha_hz`` — its frequency and height in dB.
    """
    x = np.asarray(eeg, dtype=np.float64)
    if channels is not None:
        pick = [i for i, c in enumerate(channels) if c in POSTERIOR]
        if pick:
            x = x[pick]
    freqs, psd = signal.welch(x, fs=sfreq, nperseg=int(4 * sfreq), axis=-1)
    spectrum = psd.mean(axis=0)
    band = (freqs >= fit_hz[0]) & (freqs <= fit_hz[1])
    outside = band & ~((freqs >= alpha_hz[0] - 1) & (freqs <= alpha_hz[1] + 1))
    slope, intercept = np.polyfit(np.log10(freqs[outside]), np.log10(spectrum[outside]), 1)
    alpha = (freqs >= alpha_hz[0]) & (freqs <= alpha_hz[1])
    excess = np.log10(spectrum[alpha]) - (intercept + slope * np.log10(freqs[alpha]))
    k = int(np.argmax(excess))
    return {
        "aperiodic_slope": float(slope),
        "alpha_peak_hz": float(freqs[alpha][k]),
        "alpha_peak_db": float(10.0 * excess[k]),
    }

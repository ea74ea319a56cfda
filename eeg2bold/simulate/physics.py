"""Building blocks of the simulator: spectral synthesis, lead fields, HRF, noise processes.

Everything is float64 and vectorised; random draws come only from the generator passed in,
so callers control determinism.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import scipy.fft
from scipy import signal
from scipy.stats import gamma

HRF_LENGTH_S = 32.0  # support of the canonical HRF before stretching


def stream(seed: int, *key: int) -> np.random.Generator:
    """An independent random stream per (seed, key): e.g. ``(1, subject)`` for a subject.

    Keys, not draw order, define the streams, so subject k is identical whatever the number
    of subjects, and changing one component (say the number of ROIs) leaves the others alone.
    """
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def spectral_noise(
    rng: np.random.Generator, amplitude: np.ndarray, *, rows: int, n: int, n_fft: int
) -> np.ndarray:
    """Gaussian noise [rows, n] with the given one-sided amplitude spectrum and unit variance.

    FFT synthesis: complex white coefficients shaped by ``amplitude`` (length n_fft//2 + 1),
    one inverse real FFT (coefficients are drawn only on the spectrum's support, so
    narrow-band signals are cheap). The variance is normalised analytically (not from the
    sample), so slow processes keep their natural sample-to-sample variability.
    """
    amp = np.array(amplitude, dtype=np.float64)
    amp[0] = 0.0
    if n_fft % 2 == 0:
        amp[-1] = 0.0
    power = 4.0 * float(np.sum(amp**2))
    if power <= 0:
        return np.zeros((rows, n))
    # draw coefficients only where the spectrum is not negligible (narrow-band carriers)
    support = np.flatnonzero(amp > amp.max() * 1e-9)
    lo, hi = int(support[0]), int(support[-1]) + 1
    coef = np.zeros((rows, amp.size), dtype=np.complex128)
    band = coef[:, lo:hi]
    band.real = rng.standard_normal((rows, hi - lo))
    band.imag = rng.standard_normal((rows, hi - lo))
    band *= amp[lo:hi]
    out = scipy.fft.irfft(coef, n_fft, axis=-1, norm="forward", overwrite_x=True)[:, :n]
    out *= 1.0 / np.sqrt(power)
    return out


def aperiodic_amplitude(freqs: np.ndarray, *, exponent: float, knee_hz: float) -> np.ndarray:
    """Amplitude spectrum of 1/f^exponent power, flattened below ``knee_hz``."""
    return np.maximum(freqs, knee_hz) ** (-exponent / 2.0)


def peak_amplitude(freqs: np.ndarray, *, peak_hz: float, sd_hz: float) -> np.ndarray:
    """Amplitude spectrum of a Gaussian power peak (power SD ``sd_hz``)."""
    return np.exp(-((freqs - peak_hz) ** 2) / (4.0 * sd_hz**2))


def ou_amplitude(freqs: np.ndarray, *, timescale_s: float, cutoff_hz: float) -> np.ndarray:
    """Amplitude spectrum of an Ornstein-Uhlenbeck process, smoothly cut above ``cutoff_hz``.

    The cut keeps the envelopes (and hence the rhythms' modulation sidebands) slow.
    """
    fc = 1.0 / (2.0 * np.pi * timescale_s)
    return np.exp(-((freqs / cutoff_hz) ** 2)) / np.sqrt(1.0 + (freqs / fc) ** 2)


def dipole_potentials(
    sensors: np.ndarray, positions: np.ndarray, moments: np.ndarray
) -> np.ndarray:
    """Potential [n_sensors, n_dipoles] of current dipoles in an unbounded homogeneous medium.

    V = q·(r - r0) / |r - r0|^3 (constants dropped): smooth, focal for shallow dipoles and
    broad for deep ones, which is all the simulator needs from a head model.
    """
    diff = sensors[:, None, :] - positions[None, :, :]
    dist = np.linalg.norm(diff, axis=-1)
    return np.einsum("sdk,dk->sd", diff, moments) / dist**3


@cache
def _canonical_peak_s() -> float:
    t = np.arange(0.0, 20.0, 1e-4)
    return float(t[np.argmax(_canonical_hrf(t))])


def _canonical_hrf(t: np.ndarray) -> np.ndarray:
    return gamma.pdf(t, 6.0) - gamma.pdf(t, 16.0) / 6.0


def double_gamma_hrf(*, peak_s: float, sfreq: float) -> np.ndarray:
    """SPM's canonical double-gamma HRF stretched in time to peak at ``peak_s``; unit sum.

    Stretching the whole response (rather than only the first gamma) keeps the undershoot in
    proportion, as slower haemodynamics do. Unit sum: a sustained unit drive gives unit BOLD.
    """
    stretch = peak_s / _canonical_peak_s()
    t = np.arange(0.0, HRF_LENGTH_S * stretch, 1.0 / sfreq)
    h = _canonical_hrf(t / stretch)
    return h / h.sum()


def ar1_noise(rng: np.random.Generator, *, rows: int, n: int, phi: float) -> np.ndarray:
    """Stationary unit-variance AR(1) series [rows, n] with lag-one correlation ``phi``."""
    white = rng.standard_normal((rows, n))
    if phi == 0:
        return white
    drive = white * np.sqrt(1.0 - phi**2)
    drive[:, 0] = white[:, 0]  # start in the stationary distribution
    return signal.lfilter([1.0], [1.0, -phi], drive, axis=-1)


def blink_times(rng: np.random.Generator, *, rate_per_min: float, duration_s: float) -> np.ndarray:
    """Blink peak times: a renewal process with gamma(3) intervals (more regular than Poisson)."""
    if rate_per_min <= 0:
        return np.zeros(0)
    mean_interval = 60.0 / rate_per_min
    n_max = int(duration_s / mean_interval * 2 + 10)
    intervals = rng.gamma(3.0, mean_interval / 3.0, size=n_max)
    times = rng.uniform(0, mean_interval) + np.concatenate([[0.0], np.cumsum(intervals[:-1])])
    return times[times < duration_s - 0.5]


def pulse_train(
    times_s: np.ndarray, amplitudes: np.ndarray, *, n: int, sfreq: float, width_s: float
) -> np.ndarray:
    """Sum of Gaussian pulses (SD ``width_s``) at ``times_s``, sampled on n points at sfreq."""
    out = np.zeros(n)
    half = int(np.ceil(4 * width_s * sfreq))
    offsets = np.arange(-half, half + 1)
    for t, a in zip(times_s, amplitudes, strict=True):
        centre = int(round(t * sfreq))
        idx = centre + offsets
        keep = (idx >= 0) & (idx < n)
        tt = idx[keep] / sfreq - t
        out[idx[keep]] += a * np.exp(-0.5 * (tt / width_s) ** 2)
    return out

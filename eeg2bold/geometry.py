"""The one sample geometry (DESIGN.md "Samples"): where a sample's EEG window lies, in seconds
and in samples, for every subpackage that forms or reads windows — the store's window reader,
the protocols' sample table and footprints, training data, prediction and the models' sizes.

A sample with target time ``t`` reads EEG samples ``[end - n_window, end)`` with
``end = round((t - delay_s) · sfreq)`` and ``n_window = round(window_s · sfreq)``; its
*footprint* is ``[t - delay_s - window_s, t]``, every instant whose data it touches. A seq2seq
target of ``n_out`` steps lies at ``t - (window_s / n_out) · (n_out - 1 - k)``, k = 0…n_out-1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eeg2bold.errors import ConfigError


def window_samples(window_s: float, sfreq: float) -> int:
    """EEG samples per window."""
    return int(round(window_s * sfreq))


@dataclass(frozen=True)
class WindowGeometry:
    """Window length and delay at one sampling rate."""

    window_s: float
    delay_s: float
    sfreq: float

    def __post_init__(self) -> None:
        if not self.window_s > 0:
            raise ConfigError(f"window_s must be positive, got {self.window_s}")
        if self.delay_s < 0:
            raise ConfigError(f"delay_s must be >= 0, got {self.delay_s}")

    @property
    def n_window(self) -> int:
        return window_samples(self.window_s, self.sfreq)

    def ends(self, times: np.ndarray) -> np.ndarray:
        """[n] one past the last EEG sample of each target time's window."""
        return np.round((np.asarray(times) - self.delay_s) * self.sfreq).astype(np.int64)

    def starts(self, times: np.ndarray) -> np.ndarray:
        """[n] first EEG sample of each target time's window."""
        return self.ends(times) - self.n_window

    def valid(self, times: np.ndarray, n_samples: int) -> np.ndarray:
        """[n] whether each window lies wholly inside a recording of ``n_samples``."""
        ends = self.ends(times)
        return (ends - self.n_window >= 0) & (ends <= n_samples)

    def footprint_start(self, times: np.ndarray) -> np.ndarray:
        """[n] the earliest instant (s) each sample touches: its window's start."""
        return np.asarray(times) - self.delay_s - self.window_s

    def output_times(self, times: np.ndarray, n_out: int) -> np.ndarray:
        """[n, n_out] instants each sample's outputs stand for (seq2one: the target time)."""
        times = np.asarray(times, dtype=np.float64)
        if n_out == 1:
            return times[:, None]
        step = self.window_s / n_out
        return times[:, None] - step * np.arange(n_out - 1, -1, -1)[None]


# The output a model with ``common_mode`` targets predicts after the ROIs: their mean.
COMMON_MODE = "common_mode"


def with_common_mode(bold: np.ndarray) -> np.ndarray:
    """Common-mode targets of ``bold`` [R, V]: each ROI minus the mean over ROIs, then that
    mean as its own row [R + 1, V] (what the digital-twin work predicts)."""
    common = bold.mean(axis=0, keepdims=True)
    return np.concatenate([bold - common, common])

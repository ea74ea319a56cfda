"""What an interpretable model learned: spatial patterns (Haufe) and band-pass spectra.

Filter weights are not patterns: a spatial filter also cancels noise, so its weights mislead.
Haufe et al. (2014) recover the forward pattern of each virtual source as
``A = Σx Wᵀ (W Σx Wᵀ)⁻¹`` from the data covariance ``Σx``; that is what topomaps should show.
Spectral patterns are the magnitude responses of each branch's band-pass FIR.

Works for every model whose front end is :class:`~eeg2bold.models.frontend.InterpretableFrontEnd`
(exposed as ``model.frontend``; ``beira`` and ``twin``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from eeg2bold.errors import Eeg2BoldError
from eeg2bold.models.base import BoldModel
from eeg2bold.models.frontend import InterpretableFrontEnd

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class Interpretation:
    """Arrays describing each front-end branch k of a trained model."""

    channels: tuple[str, ...]
    filters: np.ndarray  # [K, C] spatial filter weights
    patterns: np.ndarray  # [K, C] Haufe patterns (unit max-abs per branch, sign: max positive)
    freqs: np.ndarray  # [F] Hz
    responses: np.ndarray  # [K, F] |H(f)| of each branch's band-pass filter
    peak_hz: np.ndarray  # [K] frequency of maximal response

    def as_arrays(self) -> dict[str, np.ndarray]:
        return {
            "channels": np.asarray(self.channels),
            "filters": self.filters,
            "patterns": self.patterns,
            "freqs": self.freqs,
            "responses": self.responses,
            "peak_hz": self.peak_hz,
        }


def frontend_of(model: BoldModel) -> InterpretableFrontEnd:
    """The model's interpretable front end, or a clear error for models without one."""
    frontend = getattr(model, "frontend", None)
    if not model.interpretable or not isinstance(frontend, InterpretableFrontEnd):
        raise Eeg2BoldError(
            f"model {model.name!r} has no interpretable front end (interpretation needs beira "
            "or twin)"
        )
    return frontend


def haufe_patterns(filters: np.ndarray, covariance: np.ndarray) -> np.ndarray:
    """Forward patterns [K, C] of spatial filters [K, C] given the data covariance [C, C]."""
    w = np.asarray(filters, dtype=np.float64)
    cov = np.asarray(covariance, dtype=np.float64)
    source_cov = w @ cov @ w.T
    return (cov @ w.T @ np.linalg.pinv(source_cov, hermitian=True)).T


def eeg_covariance(windows: Iterable[np.ndarray]) -> np.ndarray:
    """Channel covariance [C, C] accumulated over EEG arrays [C, T] (or [B, C, T])."""
    total, count, mean_sum = None, 0, None
    for w in windows:
        x = np.asarray(w, dtype=np.float64)
        x = x.transpose(1, 0, 2).reshape(x.shape[1], -1) if x.ndim == 3 else x
        total = x @ x.T if total is None else total + x @ x.T
        mean_sum = x.sum(axis=1) if mean_sum is None else mean_sum + x.sum(axis=1)
        count += x.shape[1]
    if total is None or mean_sum is None or count < 2:
        raise Eeg2BoldError("no EEG to estimate the channel covariance from")
    mean = mean_sum / count
    return (total - count * np.outer(mean, mean)) / (count - 1)


def interpret(
    model: BoldModel, *, covariance: np.ndarray, channels: Sequence[str], n_freqs: int = 256
) -> Interpretation:
    """Spatial (Haufe) and spectral patterns of each branch of ``model``'s front end."""
    frontend = frontend_of(model)
    filters = frontend.spatial_filters()
    if covariance.shape != (filters.shape[1], filters.shape[1]):
        raise Eeg2BoldError(
            f"covariance is {covariance.shape}, the model expects {filters.shape[1]} channels"
        )
    patterns = haufe_patterns(filters, covariance)
    peak = np.abs(patterns).argmax(axis=1)
    sign = np.sign(patterns[np.arange(len(peak)), peak])
    scale = np.abs(patterns).max(axis=1)
    patterns = patterns * (sign / np.where(scale > 0, scale, 1.0))[:, None]
    freqs, responses = frontend.frequency_responses(n_freqs)
    return Interpretation(
        channels=tuple(channels),
        filters=filters,
        patterns=patterns,
        freqs=freqs,
        responses=responses,
        peak_hz=freqs[responses.argmax(axis=1)],
    )


def channel_info(channels: Sequence[str], *, sfreq: float, montage: str | None = None):
    """An MNE Info with positions for ``channels`` from a built-in montage (no download)."""
    import mne

    names = [montage] if montage else []
    names += ["spherical_1005", "colin27_1005", "easycap-M1"]
    info = mne.create_info(list(channels), sfreq, ch_types="eeg")
    for name in names:
        if name not in mne.channels.get_builtin_montages():
            continue
        built = mne.channels.make_standard_montage(name)
        lookup = {n.lower(): n for n in built.ch_names}
        if all(c.lower() in lookup for c in channels):
            info.set_montage(built, match_case=False, on_missing="raise")
            return info
    raise Eeg2BoldError(
        "no built-in montage has positions for every channel "
        f"({', '.join(channels[:5])}…): topomaps need standard 10-05 names"
    )


def plot_spatial_patterns(
    interp: Interpretation, *, sfreq: float, montage: str | None = None, max_branches: int = 16
) -> Figure:
    """Topomaps of the Haufe patterns, titled with each branch's peak frequency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mne

    info = channel_info(interp.channels, sfreq=sfreq, montage=montage)
    k = min(max_branches, interp.patterns.shape[0])
    cols = min(k, 4)
    rows = int(np.ceil(k / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.4 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= k:
            ax.axis("off")
            continue
        mne.viz.plot_topomap(interp.patterns[i], info, axes=ax, show=False, contours=4)
        ax.set_title(f"branch {i + 1}: {interp.peak_hz[i]:.1f} Hz", fontsize=9)
    fig.suptitle("Spatial patterns (Haufe) of the front-end branches")
    fig.tight_layout()
    return fig


def plot_spectra(interp: Interpretation, *, max_hz: float | None = None) -> Figure:
    """Magnitude responses of the branches' band-pass filters."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    keep = interp.freqs <= (max_hz or interp.freqs[-1])
    for i, resp in enumerate(interp.responses):
        ax.plot(interp.freqs[keep], resp[keep], lw=1, label=f"{i + 1}")
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel("|H(f)|")
    ax.set_title("Band-pass responses of the front-end branches")
    if len(interp.responses) <= 16:
        ax.legend(ncol=4, fontsize=7, title="branch", title_fontsize=7)
    fig.tight_layout()
    return fig

"""The interpretable EEG front end shared by ``beira`` and ``twin``.

Each of K branches is a chain a neuroscientist can read: a 1×1 spatial filter (a virtual
source), a band-pass FIR filter (its rhythm), rectification, and a low-pass envelope filter
that also downsamples (its band-power time course). Learned weights therefore map to spatial
patterns (Haufe: covariance × filters) and frequency responses
(:mod:`eeg2bold.models.interpret`).

Cost stays low: the only full-rate operation is one depthwise FIR per branch (through the FFT
when it is long); everything after the envelope's stride runs at ``out_hz``.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from eeg2bold.models.base import ModelParams

DEFAULT_BANDS = ((1.0, 4.0), (4.0, 8.0), (8.0, 13.0), (13.0, 20.0), (20.0, 30.0), (30.0, 45.0))


def bandpass_taps(low: float, high: float, *, sfreq: float, n_taps: int) -> np.ndarray:
    """Hamming-windowed sinc band-pass kernel (unit gain at the band centre, none at DC)."""
    t = (np.arange(n_taps) - (n_taps - 1) / 2) / sfreq
    nyq = sfreq / 2
    high = min(high, 0.95 * nyq)
    low = min(low, high * 0.5)
    window = np.hamming(n_taps)
    h = (2 * high * np.sinc(2 * high * t) - 2 * low * np.sinc(2 * low * t)) * window
    h -= window * h.sum() / window.sum()  # zero gain at DC: short low bands would pass drifts
    centre = (low + high) / 2
    gain = abs(np.sum(h * np.exp(-2j * np.pi * centre * t)))
    return h / max(gain, 1e-12)


FFT_MIN_TAPS = 32  # from this length on, FFT convolution beats CPU depthwise conv1d


def depthwise_fir(x: Tensor, weight: Tensor) -> Tensor:
    """``F.conv1d(x, weight, padding=n // 2, groups=C)`` for odd ``n``-tap filters, made fast.

    ``x`` is [B, C, T], ``weight`` [C·m, 1, n] (m filters per input channel, as grouped
    conv1d); the output is [B, C·m, T] ("same" length). Long filters go through the FFT:
    CPU depthwise convolution costs O(n) per sample and is poorly vectorised (at 1000 Hz a
    0.5 s filter is ~15× slower than the FFT). Computed in float32.
    """
    n_taps = weight.shape[-1]
    if n_taps < FFT_MIN_TAPS:
        return F.conv1d(x, weight.to(x.dtype), padding=n_taps // 2, groups=x.shape[1])
    mult = weight.shape[0] // x.shape[1]
    x = x.float()
    if mult > 1:
        x = x.repeat_interleave(mult, dim=1)
    n_times = x.shape[-1]
    n_fft = scipy.fft.next_fast_len(n_times + n_taps - 1, real=True)
    spectrum = torch.fft.rfft(x, n=n_fft) * torch.fft.rfft(weight[:, 0].float().flip(-1), n=n_fft)
    full = torch.fft.irfft(spectrum, n=n_fft)  # linear convolution with the flipped taps
    start = n_taps // 2
    return full[..., start : start + n_times]


def branch_bands(n_branches: int, sfreq: float) -> list[tuple[float, float]]:
    """Initial bands for K branches: the classical bands, cycled, capped below Nyquist."""
    usable = [(lo, hi) for lo, hi in DEFAULT_BANDS if lo < 0.45 * sfreq]
    return [usable[i % len(usable)] for i in range(n_branches)]


class FrontEndParams(ModelParams):
    """The front end's hyperparameters, declared once for every model built on it (``beira``,
    ``twin``: their parameter classes inherit these). The output rate stays a field of each
    model (beira's ``envelope_hz``, twin's ``feature_hz``): saved model files and earlier
    sweeps' Optuna studies name them, and each model bounds it for its own layers."""

    n_branches: int = Field(
        16,
        ge=1,
        le=128,
        description="Front-end branches K: virtual sources, each with its own band-pass filter "
        "(a rhythm).",
    )
    fir_s: float = Field(
        0.5,
        ge=0.05,
        le=2.0,
        description="Band-pass FIR length in seconds (frequency resolution about 2/fir_s Hz).",
    )
    envelope_s: float = Field(
        1.0,
        ge=0.1,
        le=4.0,
        description="Envelope low-pass length in seconds: smooths the rectified band signal "
        "into band power.",
    )


class InterpretableFrontEnd(nn.Module):
    """[B, C, T] EEG → [B, K, T // stride] log band-power envelopes of K virtual sources."""

    def __init__(
        self,
        params: FrontEndParams,
        *,
        n_channels: int,
        sfreq: float,
        out_hz: float,
        max_envelope_s: float | None = None,
    ):
        super().__init__()
        self.sfreq = float(sfreq)
        self.n_branches = n_branches = params.n_branches
        n_fir = max(3, int(round(params.fir_s * sfreq)) | 1)
        self.stride = max(1, int(round(sfreq / out_hz)))
        envelope_s = params.envelope_s
        if max_envelope_s is not None:
            envelope_s = min(envelope_s, max_envelope_s)
        n_env = max(self.stride, int(round(envelope_s * sfreq)))
        self.out_hz = sfreq / self.stride
        self.spatial = nn.Conv1d(n_channels, n_branches, 1, bias=False)
        self.bandpass = nn.Conv1d(
            n_branches, n_branches, n_fir, groups=n_branches, padding=n_fir // 2, bias=False
        )
        self.envelope = nn.Conv1d(
            n_branches, n_branches, n_env, groups=n_branches, stride=self.stride, bias=False
        )
        self.bias = nn.Parameter(torch.zeros(n_branches))
        with torch.no_grad():
            nn.init.orthogonal_(self.spatial.weight[:, :, 0])
            for k, (lo, hi) in enumerate(branch_bands(n_branches, sfreq)):
                taps = bandpass_taps(lo, hi, sfreq=sfreq, n_taps=n_fir)
                self.bandpass.weight[k, 0] = torch.from_numpy(taps).float()
            hann = torch.hann_window(n_env + 2, periodic=False)[1:-1]
            self.envelope.weight.copy_((hann / hann.sum()).expand(n_branches, 1, n_env))

    def out_steps(self, n_times: int) -> int:
        """Output length for an input of ``n_times`` samples."""
        return (n_times - self.envelope.kernel_size[0]) // self.stride + 1

    def forward(self, eeg: Tensor) -> Tensor:
        x = depthwise_fir(self.spatial(eeg), self.bandpass.weight)
        env = self.envelope(x.abs())
        return torch.log1p(env.clamp_min(0)) + self.bias[:, None]

    # -- interpretation -------------------------------------------------------------------
    def spatial_filters(self) -> np.ndarray:
        """[K, C] spatial filter weights (use Haufe patterns for display, not these)."""
        return self.spatial.weight.detach()[:, :, 0].cpu().numpy()

    def frequency_responses(self, n_freqs: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """Frequencies (Hz) and |H(f)| [K, n_freqs] of each branch's band-pass filter."""
        taps = self.bandpass.weight.detach()[:, 0].cpu().numpy()
        n_fft = max(2 * (n_freqs - 1), taps.shape[1])
        spectrum = np.abs(np.fft.rfft(taps, n=n_fft, axis=1))
        freqs = np.fft.rfftfreq(n_fft, d=1.0 / self.sfreq)
        return freqs, spectrum

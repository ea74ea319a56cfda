"""``linker``: spatial filters → strided temporal convs to ~2 Hz → one long HRF-like FIR.

A compact, mostly linear bridge between EEG rhythms and BOLD: the strided convolutions
learn their own band-power features (no hand-made band-pass bank), and a single long FIR per
ROI at the feature rate plays the haemodynamic response, so its learned kernel can be read
as an HRF estimate.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from eeg2bold.models.base import (
    BoldModel,
    DataSpec,
    ModelParams,
    SuggestTrial,
    register_model,
    resample_time,
)
from eeg2bold.models.frontend import depthwise_fir


class LinkerParams(ModelParams):
    """Hyperparameters of :class:`Linker`."""

    n_sources: int = Field(
        16, ge=1, le=128, description="Spatial filters (1×1 conv over channels): virtual sources."
    )
    filters_per_source: int = Field(
        2,
        ge=1,
        le=8,
        description=(
            "Temporal filters per source in the EEG-rate conv (grouped by source), each "
            "rectified: different rhythms, or a quadrature pair tracking one band's power."
        ),
    )
    first_kernel_s: float = Field(
        0.25,
        ge=0.02,
        le=1.0,
        description=(
            "Length of the EEG-rate temporal filters in seconds (odd number of taps): "
            "frequency resolution about 1/first_kernel_s Hz."
        ),
    )
    width: int = Field(16, ge=4, le=256, description="Channels of the strided convs.")
    feature_hz: float = Field(
        2.0,
        ge=0.5,
        le=10.0,
        description=(
            "Rate the strided convs reduce the EEG to (total stride round(sfreq / feature_hz),"
            " in stages of at most max_stride)."
        ),
    )
    max_stride: int = Field(5, ge=2, le=10, description="Largest stride of one conv stage.")
    hrf_s: float = Field(
        20.0,
        ge=1.0,
        le=40.0,
        description=(
            "Span of the long temporal FIR (HRF) in seconds, capped at the window length; the "
            "last output sees this much of the window's end, plus the convs' own extent."
        ),
    )
    dropout: float = Field(0.3, ge=0.0, le=0.8, description="Dropout on the ~2 Hz features.")


def stage_strides(total: int, max_stride: int) -> list[int]:
    """Factor a total stride into stages of at most ``max_stride`` (largest first).

    Exact when ``total`` factors into such stages; otherwise the last stages round, so the
    product may differ slightly from ``total`` (the achieved rate is reported).
    """
    strides: list[int] = []
    remaining = max(1, total)
    while remaining > 1:
        factor = next(
            (f for f in range(min(max_stride, remaining), 1, -1) if remaining % f == 0), None
        )
        if factor is None:  # a prime factor above max_stride: round
            factor = min(max_stride, remaining)
            strides.append(factor)
            remaining = max(1, round(remaining / factor))
        else:
            strides.append(factor)
            remaining //= factor
    return strides or [1]


def canonical_hrf(n_taps: int, rate: float, *, peak_s: float = 5.0) -> np.ndarray:
    """Double-gamma HRF (undershoot at ~3x the peak, 1/6 of its height), unit L2 norm."""
    t = np.arange(n_taps) / rate
    a1, a2 = peak_s + 1.0, 3 * peak_s + 1.0  # gamma shapes with modes at peak_s, 3 peak_s

    def gamma_pdf(a: float) -> np.ndarray:
        return np.exp((a - 1) * np.log(np.maximum(t, 1e-12)) - t - math.lgamma(a))

    h = gamma_pdf(a1) - gamma_pdf(a2) / 6
    h[0] = 0.0 if n_taps > 1 else 1.0
    return h / max(float(np.linalg.norm(h)), 1e-12)


class _EndAlignedConv(nn.Conv1d):
    """Strided conv (kernel 2·stride) padded on the left so its last step ends at the input's end.

    Output length ceil(T / stride); the last step sees the final 2·stride input samples, so
    the window's most recent samples always reach the output, whatever T is.
    """

    def __init__(self, n_in: int, n_out: int, stride: int):
        super().__init__(n_in, n_out, 2 * stride, stride=stride)

    def left_pad(self, n_times: int) -> int:
        stride = self.stride[0]
        return stride + (-n_times) % stride

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(F.pad(x, (self.left_pad(x.shape[-1]), 0)))


@register_model("linker")
class Linker(BoldModel):
    """Spatial filters, a strided temporal conv stack down to ~2 Hz, and a long HRF FIR.

    ``[B, C, T]`` → 1×1 conv to S sources → temporal filters of ``first_kernel_s`` (grouped
    by source, the only EEG-rate layer) → |·| → [conv(kernel 2s, stride s) → GELU] per stage,
    strides s with product ≈ sfreq / ``feature_hz`` → dropout → 1×1 conv to R ROIs → causal
    depthwise FIR of ``hrf_s`` per ROI (initialised to a canonical double-gamma HRF) →
    ``[B, R, T'']`` at ~``feature_hz`` → last step (seq2one) or ``n_out`` interpolated steps
    (seq2seq).

    Exists as the minimal learned alternative to hand-made band-power features: few
    parameters, one explicit haemodynamic kernel per ROI (``hrf_kernels``), and a lag span
    set by one hyperparameter.
    """

    Params = LinkerParams
    params: LinkerParams

    def __init__(self, spec: DataSpec, params: LinkerParams | None = None):
        super().__init__(spec, params)
        p = self.params
        total = max(1, int(round(spec.sfreq / p.feature_hz)))
        self.strides = stage_strides(total, p.max_stride)
        self.total_stride = int(np.prod(self.strides))
        self.feature_rate = spec.sfreq / self.total_stride
        n_hidden = p.n_sources * p.filters_per_source
        self.spatial = nn.Conv1d(spec.n_channels, p.n_sources, 1, bias=False)
        k1 = max(3, int(round(p.first_kernel_s * spec.sfreq)) | 1)
        self.first = nn.Conv1d(p.n_sources, n_hidden, k1, groups=p.n_sources, padding=k1 // 2)
        stages: list[nn.Module] = []
        n_in = n_hidden
        for s in self.strides:
            stages += [_EndAlignedConv(n_in, p.width, s), nn.GELU()]
            n_in = p.width
        self.stages = nn.Sequential(*stages)
        self.dropout = nn.Dropout(p.dropout)
        self.mix = nn.Conv1d(n_in, spec.n_rois, 1)
        self.n_steps = self._feature_steps(spec.n_times)
        self.n_hrf = max(1, min(int(round(p.hrf_s * self.feature_rate)), self.n_steps))
        self.hrf = nn.Conv1d(spec.n_rois, spec.n_rois, self.n_hrf, groups=spec.n_rois, bias=False)
        with torch.no_grad():
            nn.init.orthogonal_(self.spatial.weight[:, :, 0])
            kernel = canonical_hrf(self.n_hrf, self.feature_rate)[::-1].copy()
            self.hrf.weight.copy_(torch.from_numpy(kernel).float().expand_as(self.hrf.weight))

    def _feature_steps(self, n_times: int) -> int:
        for s in self.strides:
            n_times = -(-n_times // s)  # ceil: end-aligned strided convs
        return n_times

    @property
    def lag_span_s(self) -> float:
        """Seconds before the window's end that the last output step can see."""
        return self.receptive_field()[0] / self.spec.sfreq

    def receptive_field(self) -> tuple[int, int]:
        """Input samples seen by the last output step, as ``(n_before, n_after)``.

        The last output depends on samples ``T - n_before ... T - 1 - n_after`` of the window
        (``n_after`` is 0: the strided convs end at the window's end).
        """
        lengths = [self.spec.n_times]
        for s in self.strides:
            lengths.append(-(-lengths[-1] // s))
        lo, hi = lengths[-1] - self.n_hrf, lengths[-1] - 1  # feature steps feeding the output
        convs = [m for m in self.stages if isinstance(m, _EndAlignedConv)]
        for conv, n_in in zip(reversed(convs), reversed(lengths[:-1]), strict=True):
            s, pad = conv.stride[0], conv.left_pad(n_in)
            lo, hi = lo * s - pad, hi * s - pad + 2 * s - 1
        half = self.first.kernel_size[0] // 2  # the centred EEG-rate filters
        lo, hi = max(lo - half, 0), min(hi + half, self.spec.n_times - 1)
        return self.spec.n_times - lo, self.spec.n_times - 1 - hi

    def hrf_kernels(self) -> np.ndarray:
        """[R, n_hrf] learned haemodynamic kernels, index j = lag j / feature_rate seconds."""
        return self.hrf.weight.detach()[:, 0].flip(-1).cpu().numpy()

    def features(self, eeg: Tensor) -> Tensor:
        """[B, C, T] → [B, width, T''] learned band-power-like features at ~feature_hz."""
        x = depthwise_fir(self.spatial(eeg), self.first.weight)
        return self.stages((x + self.first.bias[:, None]).abs())  # type: ignore[index]

    def forward(self, eeg: Tensor) -> Tensor:
        x = self.mix(self.dropout(self.features(eeg)))
        x = self.hrf(F.pad(x, (self.n_hrf - 1, 0)))  # causal: step t sees t - n_hrf + 1 ... t
        return resample_time(x, self.spec.n_out)

    @classmethod
    def search_space(cls, trial: SuggestTrial) -> dict[str, Any]:
        return {
            "n_sources": trial.suggest_int("n_sources", 4, 32, log=True),
            "filters_per_source": trial.suggest_int("filters_per_source", 1, 4),
            "first_kernel_s": trial.suggest_float("first_kernel_s", 0.1, 0.5, log=True),
            "width": trial.suggest_int("width", 8, 64, log=True),
            "feature_hz": trial.suggest_categorical("feature_hz", [1.0, 2.0, 4.0]),
            "hrf_s": trial.suggest_float("hrf_s", 8.0, 24.0),
            "dropout": trial.suggest_float("dropout", 0.0, 0.4),
        }

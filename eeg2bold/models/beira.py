"""``beira``: interpretable front end → strided conv encoder → upsampling conv decoder.

After BEIRA (Kovalev, Mikheev & Ossadtchi, 2022, "fMRI from EEG is only deep learning
away"), rebuilt for speed: the published form trains one full autoencoder per ROI and runs
its first convolutions at the EEG rate before pooling, which makes it slow on CPUs
(``benchmarks/bench_beira.py`` measures both). Here the only full-rate operation is the
front end's depthwise band-pass FIR; everything else runs at the envelope rate or below, and
one decoder serves all ROIs.
"""

from __future__ import annotations

from typing import Any, Literal

import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import Tensor, nn

from eeg2bold.models.base import (
    BoldModel,
    DataSpec,
    SuggestTrial,
    register_model,
    resample_time,
)
from eeg2bold.models.frontend import FrontEndParams, InterpretableFrontEnd


class BeiraParams(FrontEndParams):
    """Hyperparameters of :class:`Beira` (the front end's from :class:`FrontEndParams`;
    ``envelope_s`` is capped at half the window)."""

    envelope_hz: float = Field(
        4.0,
        ge=0.5,
        le=25.0,
        description=(
            "Rate of the envelopes (the front end's stride, rounded to whole samples); all "
            "later layers run at this rate or below."
        ),
    )
    width: int = Field(32, ge=4, le=512, description="Channels of every encoder and decoder layer.")
    depth: int = Field(
        4,
        ge=1,
        le=6,
        description=(
            "Stride-2 encoder levels (and as many upsampling decoder levels, with skip "
            "connections); the bottleneck runs at envelope_hz / 2**depth."
        ),
    )
    kernel_size: int = Field(
        5, ge=3, le=15, description="Temporal kernel of encoder/decoder convolutions (odd)."
    )
    dropout: float = Field(0.3, ge=0.0, le=0.8, description="Dropout after each conv block.")
    norm: Literal["none", "layer", "batch"] = Field(
        "none",
        description=(
            "Normalisation in each conv block: none (convs with bias), LayerNorm over channels "
            "at each step (as published), or BatchNorm. On ~500 simulated windows 'none' "
            "generalised best; the others may suit deeper or wider settings."
        ),
    )

    @field_validator("kernel_size")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError("kernel_size must be odd (centred 'same' padding)")
        return value


class _ChannelNorm(nn.LayerNorm):
    """LayerNorm over channels at every time step of a [B, C, T] tensor."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class _ConvBlock(nn.Sequential):
    """Conv (strided or not) → norm → GELU → dropout: the published block without pooling."""

    def __init__(
        self, n_in: int, n_out: int, *, kernel: int, stride: int, dropout: float, norm: str
    ):
        norms: dict[str, nn.Module] = {
            "none": nn.Identity(),
            "layer": _ChannelNorm(n_out),
            "batch": nn.BatchNorm1d(n_out),
        }
        super().__init__(
            nn.Conv1d(n_in, n_out, kernel, stride=stride, padding=kernel // 2, bias=norm == "none"),
            norms[norm],
            nn.GELU(),
            nn.Dropout(dropout),
        )


@register_model("beira")
class Beira(BoldModel):
    """BEIRA made fast: interpretable band-power front end, then a small shared U-Net.

    ``[B, C, T]`` → front end (1×1 spatial unmixing to K virtual sources, depthwise band-pass
    FIR, |·|, depthwise low-pass envelope with stride, log) → ``[B, K, T']`` at
    ``envelope_hz`` → input conv → ``depth`` stride-2 conv blocks → as many upsampling conv
    blocks with skip connections → 1×1 conv to R ROIs at ``envelope_hz`` → last step
    (seq2one) or ``n_out`` steps interpolated over the window (seq2seq).

    Exists because deep-brain BOLD follows band-power envelopes of a few EEG sources through
    an HRF: the front end makes those sources and rhythms readable (spatial patterns,
    frequency responses), the encoder/decoder learns the slow, nonlinear temporal mapping.
    """

    Params = BeiraParams
    params: BeiraParams
    interpretable = True

    def __init__(self, spec: DataSpec, params: BeiraParams | None = None):
        super().__init__(spec, params)
        p = self.params
        self.frontend = InterpretableFrontEnd(
            p,
            n_channels=spec.n_channels,
            sfreq=spec.sfreq,
            out_hz=min(p.envelope_hz, spec.sfreq / 2),
            max_envelope_s=spec.window_s / 2,
        )

        def block(n_in: int, stride: int) -> _ConvBlock:
            return _ConvBlock(
                n_in, p.width, kernel=p.kernel_size, stride=stride, dropout=p.dropout, norm=p.norm
            )

        self.stem = block(p.n_branches, 1)
        self.down = nn.ModuleList(block(p.width, 2) for _ in range(p.depth))
        self.up = nn.ModuleList(block(p.width, 1) for _ in range(p.depth))
        self.head = nn.Conv1d(p.width, spec.n_rois, 1)

    def forward(self, eeg: Tensor) -> Tensor:
        x = self.stem(self.frontend(eeg))
        skips = []
        for block in self.down:
            skips.append(x)
            x = block(x)
        for block, skip in zip(self.up, reversed(skips), strict=True):
            x = F.interpolate(x, size=skip.shape[-1], mode="linear", align_corners=False)
            x = block(x + skip)
        return resample_time(self.head(x), self.spec.n_out)

    @classmethod
    def search_space(cls, trial: SuggestTrial) -> dict[str, Any]:
        return {
            "n_branches": trial.suggest_int("n_branches", 4, 32, log=True),
            "fir_s": trial.suggest_float("fir_s", 0.25, 1.0, log=True),
            "envelope_s": trial.suggest_float("envelope_s", 0.25, 2.0, log=True),
            "envelope_hz": trial.suggest_categorical("envelope_hz", [2.0, 4.0, 8.0]),
            "width": trial.suggest_int("width", 16, 96, log=True),
            "depth": trial.suggest_int("depth", 2, 5),
            "kernel_size": trial.suggest_categorical("kernel_size", [3, 5, 7]),
            "dropout": trial.suggest_float("dropout", 0.0, 0.5),
            "norm": trial.suggest_categorical("norm", ["none", "layer", "batch"]),
        }

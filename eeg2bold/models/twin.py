"""``twin``: the "digital twin" architecture (interpretable front end → Conformer → decoder).

Path at inference::

    eeg [B, C, T] ─ InterpretableFrontEnd ─▶ [B, K, T'] log band-power envelopes (~feature_hz)
      ─ Linear K→d ─ Conformer blocks ─▶ h [B, T', d]
      ─ decoder (per step MLP d→R) ─ post-decoder (causal per-ROI FIR, a learned HRF-like
        smoothing) ─ resample_time ─▶ bold [B, R, n_out]

During training only, :meth:`Twin.training_outputs` also returns a pooled EEG embedding of ``h``
(attention pooling over time) and a BOLD embedding of the true target (an MLP, the "BOLD
encoder"), both L2-normalised in one ``embed_dim`` space for a CLIP-style contrastive loss.
``forward`` never touches the BOLD encoder, so inference cannot see the target.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from eeg2bold.errors import ConfigError
from eeg2bold.models.base import (
    BoldModel,
    DataSpec,
    ModelOutputs,
    ModelParams,
    SuggestTrial,
    register_model,
    resample_time,
)
from eeg2bold.models.frontend import FrontEndParams, InterpretableFrontEnd


class TwinParams(FrontEndParams):
    """Hyperparameters of :class:`Twin`; sizes in seconds/Hz so they fit any sampling rate."""

    # -- interpretable front end: n_branches, fir_s, envelope_s from FrontEndParams
    feature_hz: float = Field(
        4.0, ge=1.0, le=16.0, description="Rate of the envelope features the encoder sees, Hz."
    )
    # -- Conformer encoder
    d_model: int = Field(64, ge=16, le=256, description="Width of the Conformer encoder.")
    n_heads: int = Field(4, ge=1, le=8, description="Attention heads; must divide d_model.")
    n_layers: int = Field(2, ge=1, le=6, description="Number of Conformer blocks.")
    ff_mult: int = Field(
        2, ge=1, le=8, description="Expansion factor of the Conformer feed-forward modules."
    )
    conv_kernel_s: float = Field(
        2.0,
        ge=0.25,
        le=8.0,
        description="Span of the Conformer depthwise convolution, seconds (odd tap count).",
    )
    dropout: float = Field(0.1, ge=0.0, le=0.5, description="Dropout in the encoder.")
    # -- decoder and post-decoder
    decoder_dim: int = Field(
        64, ge=8, le=256, description="Hidden width of the per-step decoder MLP (d → R)."
    )
    post_kernel_s: float = Field(
        4.0,
        ge=0.0,
        le=16.0,
        description="Span of the causal per-ROI smoothing FIR after the decoder, seconds "
        "(0: a single tap, i.e. a learned gain).",
    )
    # -- contrastive (training-only) part
    embed_dim: int = Field(
        32, ge=4, le=256, description="Size of the shared EEG/BOLD embedding for the CLIP loss."
    )
    bold_hidden: int = Field(
        64, ge=8, le=256, description="Hidden width of the BOLD encoder MLP (training only)."
    )

    @model_validator(mode="after")
    def _heads_divide_width(self) -> TwinParams:
        if self.d_model % self.n_heads:
            raise ValueError(f"n_heads={self.n_heads} must divide d_model={self.d_model}")
        return self


def _odd_taps(seconds: float, rate: float) -> int:
    return max(1, int(round(seconds * rate))) | 1


class _FeedForward(nn.Sequential):
    """Pre-norm Macaron feed-forward module (scaled by 1/2 by the caller)."""

    def __init__(self, d: int, mult: int, dropout: float):
        super().__init__(
            nn.LayerNorm(d),
            nn.Linear(d, mult * d),
            nn.SiLU(),
            nn.Dropout(dropout),
            nn.Linear(mult * d, d),
            nn.Dropout(dropout),
        )


class _RelPosSelfAttention(nn.Module):
    """Multi-head self-attention with a learned relative-position bias per head.

    The bias starts as ALiBi's linear distance penalty (geometric slopes across heads), a
    locality prior that suits slowly varying envelopes, and is learned from there. Relative
    positions make the encoder equivariant to shifts of the sliding window.
    """

    def __init__(self, d: int, n_heads: int, max_len: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.max_len = max_len
        self.dropout = dropout
        self.norm = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.drop = nn.Dropout(dropout)
        slopes = torch.tensor([2.0 ** (-8.0 * (h + 1) / n_heads) for h in range(n_heads)])
        dist = torch.arange(-(max_len - 1), max_len).abs().float()
        self.rel_bias = nn.Parameter(-slopes[:, None] * dist[None, :])

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        q, k, v = (
            self.qkv(self.norm(x))
            .view(b, t, 3, self.n_heads, d // self.n_heads)
            .permute(2, 0, 3, 1, 4)
        )
        pos = torch.arange(t, device=x.device)
        bias = self.rel_bias[:, pos[:, None] - pos[None, :] + self.max_len - 1]  # [H, T, T]
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias.to(q.dtype), dropout_p=self.dropout if self.training else 0.0
        )
        return self.drop(self.out(y.transpose(1, 2).reshape(b, t, d)))


class _ConvModule(nn.Module):
    """Conformer convolution module: pointwise + GLU, depthwise conv, norm, SiLU, pointwise.

    LayerNorm replaces the original BatchNorm so outputs never depend on the batch (and
    constant inputs stay finite: LayerNorm's eps bounds zero-variance vectors).
    """

    def __init__(self, d: int, kernel: int, dropout: float):
        super().__init__()
        self.norm_in = nn.LayerNorm(d)
        self.pointwise_in = nn.Linear(d, 2 * d)
        self.depthwise = nn.Conv1d(d, d, kernel, padding=kernel // 2, groups=d)
        self.norm_mid = nn.LayerNorm(d)
        self.pointwise_out = nn.Linear(d, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        y = F.glu(self.pointwise_in(self.norm_in(x)), dim=-1)
        y = self.depthwise(y.transpose(1, 2)).transpose(1, 2)
        y = F.silu(self.norm_mid(y))
        return self.drop(self.pointwise_out(y))


class _ConformerBlock(nn.Module):
    """FF/2 → MHSA → conv module → FF/2 → LayerNorm, each with a residual connection."""

    def __init__(self, d: int, n_heads: int, mult: int, kernel: int, max_len: int, dropout: float):
        super().__init__()
        self.ff1 = _FeedForward(d, mult, dropout)
        self.attn = _RelPosSelfAttention(d, n_heads, max_len, dropout)
        self.conv = _ConvModule(d, kernel, dropout)
        self.ff2 = _FeedForward(d, mult, dropout)
        self.norm = nn.LayerNorm(d)

    def forward(self, x: Tensor) -> Tensor:
        x = x + 0.5 * self.ff1(x)
        x = x + self.attn(x)
        x = x + self.conv(x)
        x = x + 0.5 * self.ff2(x)
        return self.norm(x)


@register_model("twin")
class Twin(BoldModel):
    """EEG→BOLD digital twin after the AIRI work: readable features, a Conformer, a contrastive aid.

    Exists to test whether an encoder that mixes long-range attention with local convolution,
    on top of the same interpretable band-power front end as ``beira``, predicts deep-brain
    BOLD better, and whether aligning pooled EEG and true-BOLD embeddings (CLIP loss, training
    only) helps generalisation across subjects. The front end (attribute ``frontend``) keeps
    spatial and spectral patterns interpretable.
    """

    Params: ClassVar[type[ModelParams]] = TwinParams
    interpretable: ClassVar[bool] = True
    contrastive: ClassVar[bool] = True

    def __init__(self, spec: DataSpec, params: ModelParams | None = None):
        super().__init__(spec, params)
        p = self.params
        if not isinstance(p, TwinParams):
            raise TypeError(f"twin needs TwinParams, got {type(p).__name__}")
        self.frontend = InterpretableFrontEnd(
            p, n_channels=spec.n_channels, sfreq=spec.sfreq, out_hz=p.feature_hz
        )
        self.n_steps = self.frontend.out_steps(spec.n_times)
        if self.n_steps < 1:
            raise ConfigError(
                f"twin: envelope_s={p.envelope_s} s is longer than the {spec.window_s} s window"
            )
        rate = self.frontend.out_hz
        self.input_proj = nn.Linear(p.n_branches, p.d_model)
        kernel = _odd_taps(p.conv_kernel_s, rate)
        self.encoder = nn.ModuleList(
            _ConformerBlock(p.d_model, p.n_heads, p.ff_mult, kernel, self.n_steps, p.dropout)
            for _ in range(p.n_layers)
        )
        self.decoder = nn.Sequential(
            nn.Linear(p.d_model, p.decoder_dim), nn.GELU(), nn.Linear(p.decoder_dim, spec.n_rois)
        )
        n_post = max(1, int(round(p.post_kernel_s * rate)))
        self.post_decoder = nn.Conv1d(spec.n_rois, spec.n_rois, n_post, groups=spec.n_rois)
        with torch.no_grad():  # start as a causal exponential smoother (unit DC gain)
            age = torch.arange(n_post - 1, -1, -1, dtype=torch.float32)
            kernel_w = torch.exp(-age / max(n_post / 3.0, 1e-6))
            self.post_decoder.weight.copy_(
                (kernel_w / kernel_w.sum()).expand_as(self.post_decoder.weight)
            )
            assert self.post_decoder.bias is not None
            self.post_decoder.bias.zero_()
        # Training-only contrastive heads.
        self.eeg_pool = nn.Linear(p.d_model, 1)
        self.eeg_embed = nn.Linear(p.d_model, p.embed_dim)
        self.bold_encoder = nn.Sequential(
            nn.Linear(spec.n_rois * spec.n_out, p.bold_hidden),
            nn.GELU(),
            nn.Linear(p.bold_hidden, p.bold_hidden),
            nn.GELU(),
            nn.Linear(p.bold_hidden, p.embed_dim),
        )

    # -- inference path -------------------------------------------------------------------
    def encode(self, eeg: Tensor) -> Tensor:
        """Encoder states [B, T', d_model] at the front end's feature rate."""
        x = self.input_proj(self.frontend(eeg).transpose(1, 2))
        for block in self.encoder:
            x = block(x)
        return x

    def decode(self, h: Tensor) -> Tensor:
        """Encoder states [B, T', d] → prediction [B, R, n_out] (decoder, post-decoder)."""
        y = self.decoder(h).transpose(1, 2)  # [B, R, T']
        y = self.post_decoder(F.pad(y, (self.post_decoder.kernel_size[0] - 1, 0)))
        return resample_time(y, self.spec.n_out)

    def forward(self, eeg: Tensor) -> Tensor:
        return self.decode(self.encode(eeg))

    # -- training-only path ---------------------------------------------------------------
    def eeg_embedding(self, h: Tensor) -> Tensor:
        """Attention-pooled, L2-normalised embedding [B, embed_dim] of encoder states ``h``."""
        weights = torch.softmax(self.eeg_pool(h), dim=1)  # [B, T', 1]
        return F.normalize(self.eeg_embed((weights * h).sum(dim=1)), dim=-1)

    def bold_embedding(self, bold: Tensor) -> Tensor:
        """L2-normalised embedding [B, embed_dim] of the true BOLD target [B, R, n_out]."""
        return F.normalize(self.bold_encoder(bold.flatten(1)), dim=-1)

    def training_outputs(self, eeg: Tensor, bold: Tensor) -> ModelOutputs:
        h = self.encode(eeg)
        return ModelOutputs(
            pred=self.decode(h),
            eeg_embedding=self.eeg_embedding(h),
            bold_embedding=self.bold_embedding(bold),
        )

    @classmethod
    def search_space(cls, trial: SuggestTrial) -> dict[str, Any]:
        d_model = trial.suggest_categorical("d_model", [32, 64, 128])
        return {
            "n_branches": trial.suggest_int("n_branches", 8, 32, step=8),
            "fir_s": trial.suggest_float("fir_s", 0.25, 1.0),
            "envelope_s": trial.suggest_float("envelope_s", 0.5, 2.0),
            "feature_hz": trial.suggest_float("feature_hz", 2.0, 8.0),
            "d_model": d_model,
            "n_heads": trial.suggest_categorical("n_heads", [2, 4]),
            "n_layers": trial.suggest_int("n_layers", 1, 3),
            "ff_mult": trial.suggest_categorical("ff_mult", [2, 4]),
            "conv_kernel_s": trial.suggest_float("conv_kernel_s", 0.5, 4.0),
            "dropout": trial.suggest_float("dropout", 0.0, 0.3),
            "decoder_dim": trial.suggest_categorical("decoder_dim", [32, 64, 128]),
            "post_kernel_s": trial.suggest_float("post_kernel_s", 0.0, 8.0),
            "embed_dim": trial.suggest_categorical("embed_dim", [16, 32, 64]),
        }

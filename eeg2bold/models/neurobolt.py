"""``neurobolt``: spatiotemporal patch transformer + multi-scale STFT branch (after NeuroBOLT).

Path::

    eeg [B, C, T] ─ (C > max_spatial_tokens: learned 1×1 spatial mixing to G virtual channels)
      ├─ temporal branch: per-channel patches of patch_s seconds ─ MLP embedding ─▶ [B, G, P, d]
      └─ spectral branch: per scale w in stft_windows_s, |STFT|² of the w-second window ending
         at each patch's end, log1p-compressed, bins ≤ max_freq_hz ─ Linear ─ summed ─▶ [B, G, P, d]
    sum + channel embedding + temporal position embedding ─ transformer over the G·P tokens
      ─ LayerNorm ─ Linear (G·d)→R per patch (reads every channel token) ─ Linear P→n_out
      ─▶ [B, R, n_out]

Token count is ``G · P`` with ``G = min(C, max_spatial_tokens)`` and
``P = n_times // round(patch_s · sfreq)`` (the earliest ``n_times mod patch`` samples are
dropped: the window's end is next to the target). Trained from scratch: NeuroBOLT's pretrained
LaBraM weights are not reachable here.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, cast

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from eeg2bold.models.base import (
    BoldModel,
    DataSpec,
    ModelParams,
    SuggestTrial,
    register_model,
    resample_time,
)

StftWindow = Annotated[float, Field(ge=0.125, le=4.0)]


class NeuroBOLTParams(ModelParams):
    """Hyperparameters of :class:`NeuroBOLT`; sizes in seconds/Hz so they fit any rate."""

    patch_s: float = Field(
        1.0, ge=0.25, le=4.0, description="Length of one temporal patch (token), seconds."
    )
    max_spatial_tokens: int = Field(
        16,
        ge=1,
        le=128,
        description="Channel tokens per patch; more channels than this are mixed by a learned "
        "1×1 spatial filter into this many virtual channels (keeps token counts modest).",
    )
    d_model: int = Field(64, ge=16, le=256, description="Token embedding width.")
    n_heads: int = Field(4, ge=1, le=8, description="Attention heads; must divide d_model.")
    n_layers: int = Field(2, ge=1, le=6, description="Transformer encoder layers.")
    ff_mult: int = Field(
        2, ge=1, le=4, description="Feed-forward width of each layer, as a multiple of d_model."
    )
    dropout: float = Field(0.1, ge=0.0, le=0.5, description="Dropout in the transformer.")
    stft_windows_s: tuple[StftWindow, ...] = Field(
        (0.5, 1.0, 2.0),
        min_length=1,
        max_length=3,
        description="STFT window lengths of the multi-scale spectral branch, seconds (each "
        "window ends at its patch's end; longer than the data before it: zero-padded).",
    )
    max_freq_hz: float = Field(
        45.0, ge=5.0, le=200.0, description="Highest STFT frequency kept (capped below Nyquist)."
    )

    @model_validator(mode="after")
    def _heads_divide_width(self) -> NeuroBOLTParams:
        if self.d_model % self.n_heads:
            raise ValueError(f"n_heads={self.n_heads} must divide d_model={self.d_model}")
        return self


class _SpectralScale(nn.Module):
    """One STFT scale: per-patch log power spectrum of a ``n_fft``-sample window → d."""

    window: Tensor
    freqs: Tensor

    def __init__(self, *, n_fft: int, hop: int, sfreq: float, max_freq_hz: float, d: int):
        super().__init__()
        self.n_fft = n_fft
        self.hop = hop
        nyquist_bin = n_fft // 2
        top = min(int(max_freq_hz * n_fft / sfreq), nyquist_bin)
        self.bins = slice(1, max(top, 1) + 1)  # DC dropped: data are normalised per channel
        self.freqs = torch.arange(n_fft // 2 + 1, dtype=torch.float32)[self.bins] * sfreq / n_fft
        window = torch.hann_window(n_fft, periodic=True)
        self.register_buffer("window", window, persistent=False)
        self.power_scale = float(window.square().sum())
        self.embed = nn.Linear(len(self.freqs), d)

    def features(self, x: Tensor, n_patches: int) -> Tensor:
        """[N, T] → [N, P, F] log1p power of the window ending at each patch's end."""
        t = x.shape[-1]
        span = (n_patches - 1) * self.hop + self.n_fft  # samples the P frames need
        x = F.pad(x, (max(0, span - t), 0))[:, -span:]
        spec = torch.stft(
            x,
            self.n_fft,
            hop_length=self.hop,
            window=self.window.to(x.dtype),
            center=False,
            return_complex=True,
        )  # [N, n_fft // 2 + 1, P]
        power = torch.view_as_real(spec[:, self.bins]).square().sum(-1) / self.power_scale
        return torch.log1p(power).transpose(1, 2)

    def forward(self, x: Tensor, n_patches: int) -> Tensor:
        return self.embed(self.features(x, n_patches))


class _EncoderLayer(nn.Module):
    """Pre-norm transformer layer; dropout on the residual branches, not on attention weights.

    (Dropping attention probabilities forces PyTorch's slow unfused attention on CPU.)
    """

    def __init__(self, d: int, n_heads: int, ff_mult: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.norm_attn = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.norm_ff = nn.LayerNorm(d)
        self.ff = nn.Sequential(
            nn.Linear(d, ff_mult * d), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff_mult * d, d)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        qkv = self.qkv(self.norm_attn(x)).view(b, t, 3, self.n_heads, d // self.n_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, d)
        x = x + self.drop(self.out(y))
        return x + self.drop(self.ff(self.norm_ff(x)))


@register_model("neurobolt")
class NeuroBOLT(BoldModel):
    """Spatiotemporal patch transformer with a multi-scale spectral branch, after NeuroBOLT.

    Exists as the field's transformer reference: per-channel temporal patch tokens (channel and
    position embeddings, full attention across channels and time) fused with explicit
    multi-resolution STFT power, the representation NeuroBOLT found to carry deep-brain BOLD.
    Learned from scratch, it tests what attention over raw patches adds beyond band power.
    """

    Params: ClassVar[type[ModelParams]] = NeuroBOLTParams

    def __init__(self, spec: DataSpec, params: ModelParams | None = None):
        super().__init__(spec, params)
        p = self.params
        if not isinstance(p, NeuroBOLTParams):
            raise TypeError(f"neurobolt needs NeuroBOLTParams, got {type(p).__name__}")
        n_times = spec.n_times
        self.patch_len = max(1, min(int(round(p.patch_s * spec.sfreq)), n_times))
        self.n_patches = n_times // self.patch_len
        self.n_spatial = min(spec.n_channels, p.max_spatial_tokens)
        self.n_tokens = self.n_spatial * self.n_patches
        d = p.d_model

        self.spatial: nn.Conv1d | None = None
        if self.n_spatial < spec.n_channels:
            self.spatial = nn.Conv1d(spec.n_channels, self.n_spatial, 1, bias=False)
            with torch.no_grad():
                nn.init.orthogonal_(self.spatial.weight[:, :, 0])
        self.patch_embed = nn.Sequential(nn.Linear(self.patch_len, d), nn.GELU(), nn.Linear(d, d))
        max_freq = min(p.max_freq_hz, 0.5 * spec.sfreq)
        scales = []
        for window_s in sorted(set(p.stft_windows_s)):
            n_fft = max(4, int(round(window_s * spec.sfreq)))
            scales.append(
                _SpectralScale(
                    n_fft=n_fft, hop=self.patch_len, sfreq=spec.sfreq, max_freq_hz=max_freq, d=d
                )
            )
        self.spectral = nn.ModuleList(scales)
        self.channel_embed = nn.Parameter(torch.randn(self.n_spatial, d) * 0.02)
        self.time_embed = nn.Parameter(torch.randn(self.n_patches, d) * 0.02)
        self.transformer = nn.Sequential(
            *(_EncoderLayer(d, p.n_heads, p.ff_mult, p.dropout) for _ in range(p.n_layers)),
            nn.LayerNorm(d),
        )
        self.head_norm = nn.LayerNorm(d)
        self.head = nn.Linear(self.n_spatial * d, spec.n_rois)
        self.readout = nn.Linear(self.n_patches, spec.n_out)
        with torch.no_grad():  # start as the mean over patches (seq2one) or interpolation
            if spec.n_out == 1:
                self.readout.weight.fill_(1.0 / self.n_patches)
            else:
                eye = torch.eye(self.n_patches)[None]
                self.readout.weight.copy_(resample_time(eye, spec.n_out)[0].T)
            self.readout.bias.zero_()

    @property
    def scales(self) -> list[_SpectralScale]:
        """The STFT scales of the spectral branch, shortest window first."""
        return cast(list[_SpectralScale], list(self.spectral))

    def _sources(self, eeg: Tensor) -> Tensor:
        return eeg if self.spatial is None else self.spatial(eeg)

    def spectral_features(self, eeg: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Per scale: (freqs [F] in Hz, log power [B, G, P, F]) that the spectral branch embeds."""
        x = self._sources(eeg)
        b, g, t = x.shape
        return [
            (
                s.freqs,
                s.features(x.reshape(b * g, t), self.n_patches).view(b, g, self.n_patches, -1),
            )
            for s in self.scales
        ]

    def tokens(self, eeg: Tensor) -> Tensor:
        """Input tokens [B, G·P, d_model] of the transformer (channel-major)."""
        x = self._sources(eeg)
        b, g, t = x.shape
        patches = x[:, :, t - self.n_patches * self.patch_len :]
        tok = self.patch_embed(patches.reshape(b, g, self.n_patches, self.patch_len))
        flat = x.reshape(b * g, t)
        for scale in self.scales:
            tok = tok + scale(flat, self.n_patches).view(b, g, self.n_patches, -1)
        tok = tok + self.channel_embed[None, :, None, :] + self.time_embed[None, None, :, :]
        return tok.reshape(b, g * self.n_patches, -1)

    def forward(self, eeg: Tensor) -> Tensor:
        b = eeg.shape[0]
        h = self.transformer(self.tokens(eeg))
        h = self.head_norm(h).view(b, self.n_spatial, self.n_patches, -1)
        y = self.head(h.transpose(1, 2).flatten(2)).transpose(1, 2)  # [B, R, P]
        return self.readout(y)

    @classmethod
    def search_defaults(cls) -> dict[str, Any]:
        """The derived names of the space below for the default ``Params``: 16 channel tokens
        per second of 1 s patches, STFT windows 0.5, 1 and 2 s (base 0.5 s, three scales)."""
        derived = {"tokens_per_s": 16, "stft_base_s": 0.5, "stft_scales": 3}
        return super().search_defaults() | derived

    @classmethod
    def search_space(cls, trial: SuggestTrial) -> dict[str, Any]:
        patch_s = trial.suggest_categorical("patch_s", [0.5, 1.0, 2.0])
        # Token rate (channel tokens per second of window) bounds attention cost: at most
        # 16 tokens/s, i.e. 320 tokens for a 20 s window, whatever the channel count.
        tokens_per_s = trial.suggest_categorical("tokens_per_s", [8, 16])
        base = trial.suggest_categorical("stft_base_s", [0.25, 0.5, 1.0])
        n_scales = trial.suggest_int("stft_scales", 1, 3)
        return {
            "patch_s": patch_s,
            "max_spatial_tokens": int(tokens_per_s * patch_s),
            "d_model": trial.suggest_categorical("d_model", [32, 64, 128]),
            "n_heads": trial.suggest_categorical("n_heads", [2, 4]),
            "n_layers": trial.suggest_int("n_layers", 1, 3),
            "ff_mult": trial.suggest_categorical("ff_mult", [2, 4]),
            "dropout": trial.suggest_float("dropout", 0.0, 0.3),
            "stft_windows_s": tuple(base * 2**i for i in range(n_scales)),
            "max_freq_hz": trial.suggest_float("max_freq_hz", 30.0, 60.0),
        }

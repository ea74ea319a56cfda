"""A model plugin for sweep tests (loaded through $EEG2BOLD_PLUGINS, also by Ray workers).

``exploding`` predicts like a tiny linear model, but with ``explode=True`` its output turns
NaN after a few training steps, so a trial fails with a non-finite loss.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from eeg2bold.models.base import BoldModel, ModelParams, register_model, resample_time


class ExplodingParams(ModelParams):
    explode: bool = Field(False, description="Return NaN after a few forwards.")


@register_model("exploding")
class Exploding(BoldModel):
    """Test-only plugin: fails on demand with a non-finite loss."""

    Params = ExplodingParams

    def __init__(self, spec, params=None):
        super().__init__(spec, params)
        self.spatial = nn.Conv1d(spec.n_channels, 4, 1)
        self.head = nn.Linear(4, spec.n_rois)
        self.calls = 0

    def forward(self, eeg):
        self.calls += 1
        out = self.head(torch.log1p(self.spatial(eeg).square().mean(dim=-1)))[:, :, None]
        if self.params.explode and self.training and self.calls > 2:
            out = out * float("nan")
        return resample_time(out, self.spec.n_out)

    @classmethod
    def search_space(cls, trial):
        return {"explode": trial.suggest_categorical("explode", [True, False])}


class PlantedParams(ModelParams):
    signal: bool = Field(True, description="Learn from the EEG (False: predict noise).")


@register_model("planted")
class Planted(BoldModel):
    """Test-only plugin with a planted quality: ``signal=False`` predicts noise (val r ≈ 0),
    so a scheduler has a clearly worse trial to stop."""

    Params = PlantedParams

    def __init__(self, spec, params=None):
        super().__init__(spec, params)
        self.spatial = nn.Conv1d(spec.n_channels, 4, 1)
        self.head = nn.Linear(4, spec.n_rois)

    def forward(self, eeg):
        features = torch.log1p(self.spatial(eeg).square().mean(dim=-1))
        if not self.params.signal:
            generator = torch.Generator().manual_seed(int(eeg.shape[0]))
            features = torch.randn(features.shape, generator=generator) + 0 * features
        return resample_time(self.head(features)[:, :, None], self.spec.n_out)

    @classmethod
    def search_space(cls, trial):
        return {"signal": trial.suggest_categorical("signal", [True, False])}


@register_model("flat")
class Flat(BoldModel):
    """Test-only plugin: trains normally, but predicts one constant when evaluated, so its
    val r is undefined (NaN) — a configuration that must never rank."""

    def __init__(self, spec, params=None):
        super().__init__(spec, params)
        self.spatial = nn.Conv1d(spec.n_channels, 4, 1)
        self.head = nn.Linear(4, spec.n_rois)

    def forward(self, eeg):
        out = self.head(torch.log1p(self.spatial(eeg).square().mean(dim=-1)))[:, :, None]
        if not self.training:
            out = 0 * out + self.head.bias[None, :, None]
        return resample_time(out, self.spec.n_out)


@register_model("buggy")
class Buggy(BoldModel):
    """Test-only plugin with a bug: its forward raises a plain Python error (not an eeg2bold
    one), the same on every retry."""

    def __init__(self, spec, params=None):
        super().__init__(spec, params)
        self.head = nn.Linear(spec.n_channels, spec.n_rois)

    def forward(self, eeg):
        raise KeyError("a bug in the buggy model")

"""Tiny test-only models (registered per test, never in the real registry) and a small store."""

from __future__ import annotations

import pytest
import torch
from pydantic import Field
from torch import nn

from eeg2bold.models import base
from eeg2bold.models.base import BoldModel, ModelParams, resample_time
from eeg2bold.simulate import SimulationConfig
from eeg2bold.simulate.write import simulate_to_store

# Subjects that differ little (no subject-private sources, the earlier coupling jitter):
# these tests are about learning, not about generalisation to unseen subjects.
EASY = {"private_sources": 0, "coupling_jitter": 0.5}


class TinyParams(ModelParams):
    hidden: int = Field(4, ge=1, description="Hidden channels.")
    explode_after: int = Field(
        0, ge=0, description="Return NaN after this many forwards (0: never)."
    )


class Tiny(BoldModel):
    """Power envelope of a learned spatial mix, pooled, then linear: fast and learnable."""

    Params = TinyParams

    def __init__(self, spec, params=None):
        super().__init__(spec, params)
        self.spatial = nn.Conv1d(spec.n_channels, self.params.hidden, 1)
        self.dropout = nn.Dropout(0.1)
        self.head = nn.Linear(self.params.hidden, spec.n_rois)
        self.calls = 0

    def forward(self, eeg):
        self.calls += 1
        power = self.spatial(eeg).square().mean(dim=-1)
        out = self.head(self.dropout(torch.log1p(power)))[:, :, None]
        if self.params.explode_after and self.calls > self.params.explode_after:
            out = out * float("nan")
        return resample_time(out.expand(-1, -1, 2), self.spec.n_out)


@pytest.fixture
def tiny_model(monkeypatch):
    """Register ``tiny`` for the duration of one test."""
    monkeypatch.setitem(base._REGISTRY, "tiny", Tiny)
    Tiny.name = "tiny"
    return "tiny"


@pytest.fixture(scope="session")
def sim_store(tmp_path_factory):
    """3 simulated subjects × 10 min, 8 channels at 128 Hz, 3 ROIs (seconds to build)."""
    out = tmp_path_factory.mktemp("sim") / "sim.zarr"
    config = SimulationConfig(subjects=3, minutes=10, channels=8, sfreq=128, rois=3, seed=7, **EASY)
    simulate_to_store(out, config, progress=False)
    return out

"""Trained models for the live twin's tests, built once per session: a small simulated
dataset (2 subjects × 4 min, 8 channels at 100 Hz, 3 ROIs) and ridge under ``within`` as
seq2one with a delay, seq2seq with the common mode, and with Euclidean alignment."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from eeg2bold.simulate import SimulationConfig
from eeg2bold.simulate.write import simulate_to_store
from eeg2bold.storage import RunKey
from eeg2bold.training.config import build_config
from eeg2bold.training.run import train_protocol

SIM = SimulationConfig(subjects=2, minutes=4, channels=8, sfreq=100, rois=3, seed=7)


@pytest.fixture(scope="session")
def live(tmp_path_factory):
    root = tmp_path_factory.mktemp("live")
    dataset = simulate_to_store(root / "sim.zarr", SIM, progress=False)

    def train(name: str, **sets: str):
        config = build_config(model="ridge", protocol="within", sets={"window_s": "8", **sets})
        train_protocol(dataset, config, out_dir=root / name)
        return str(root / name)

    run = dataset.read_run(RunKey("sub-01", "run-1"))
    return SimpleNamespace(
        root=root,
        dataset=dataset,
        channels=dataset.info.eeg.channels,
        eeg=np.asarray(run.eeg, dtype=np.float32),
        s2o=train("s2o", delay_s="2"),
        s2s=train("s2s", target="seq2seq", target_hz="0.5", common_mode="true"),
        aligned=train("aligned", align="euclidean"),
    )

"""A tiny dataset, helpers to write study configs and the test-only model plugin; the shared
Ray instance (``ray_cluster``) lives in tests/conftest.py."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import pytest
import yaml

from eeg2bold.simulate import SimulationConfig
from eeg2bold.simulate.write import simulate_to_store

HERE = Path(__file__).resolve().parent
PLUGIN = "eeg2bold_test_plugins"


@pytest.fixture
def test_plugins(monkeypatch):
    """Register the test plugin's models (exploding, planted, flat, buggy) in this process for
    one test."""
    monkeypatch.syspath_prepend(str(HERE))
    with _registry_restored():
        __import__(PLUGIN)
        yield


@pytest.fixture
def plugin_env(monkeypatch):
    """Child processes (a sweep's driver, `ray start` nodes) find the test plugin too."""
    import os

    monkeypatch.setenv("EEG2BOLD_PLUGINS", PLUGIN)
    paths = [str(HERE), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))
    # anything in this process that lists models (a report, `models`) imports the plugin
    with _registry_restored():
        yield


@contextlib.contextmanager
def _registry_restored():
    """Leave the model registry as it was for the tests that follow."""
    from eeg2bold.models import base

    registry, loaded = dict(base._REGISTRY), set(base._loaded_plugins)
    try:
        yield
    finally:
        base._REGISTRY.clear()
        base._REGISTRY.update(registry)
        base._loaded_plugins.clear()
        base._loaded_plugins.update(loaded)
        sys.modules.pop(PLUGIN, None)


@pytest.fixture
def exploding_model(test_plugins):
    return "exploding"


@pytest.fixture
def planted_model(test_plugins):
    return "planted"


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory):
    """2 subjects × 5 min, 8 channels at 100 Hz, 3 ROIs: a sweep trial takes seconds."""
    out = tmp_path_factory.mktemp("sweepdata") / "tiny.zarr"
    config = SimulationConfig(  # subjects that differ little: these tests are about sweeps
        subjects=2,
        minutes=5,
        channels=8,
        sfreq=100,
        rois=3,
        seed=2,
        private_sources=0,
        coupling_jitter=0.5,
    )
    simulate_to_store(out, config, progress=False)
    return out


@pytest.fixture
def write_study(tmp_path, tiny_store):
    """Write a study YAML for the tiny dataset; keyword arguments override the defaults."""

    def write(label: str = "t", **overrides) -> Path:
        config = {
            "name": label,
            "dataset": str(tiny_store),
            "protocols": ["within"],
            "models": ["ridge"],
            "search": {"data.window_s": 10.0, "train.steps_per_epoch": 3},
            "budget": {"num_samples": 2},
            "scheduler": {"max_epochs": 2, "grace_period": 1},
            "resources": {"cpu": 0.45, "trial_cpu": 0.05},
            "max_concurrent_trials": 2,
            "storage": {"results": str(tmp_path / f"sweep-{label}")},
        }
        for key, value in overrides.items():
            config[key] = value
        path = tmp_path / f"{label}.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    return write

"""Every typed config has one strict base, and every field says what it is (the CLI's help
and the docs are generated from these descriptions)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
from pydantic import BaseModel

import eeg2bold
from eeg2bold.strict_config import StrictConfig


def _configs() -> list[type[BaseModel]]:
    found = []
    for info in pkgutil.walk_packages(eeg2bold.__path__, "eeg2bold."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and issubclass(cls, BaseModel):
                found.append(cls)
    return found


CONFIGS = _configs()


def test_the_configs_are_found():
    names = {c.__name__ for c in CONFIGS}
    assert {"SimulationConfig", "IngestConfig", "StudyConfig", "ReportOptions"} <= names
    commands = {"TrainRunOptions", "SweepOptions", "BestOptions", "PredictOptions"}
    assert commands | {"ModelChoice", "StreamOptions"} <= names


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.__module__}.{c.__qualname__}")
def test_every_config_is_strict_and_every_field_described(config):
    assert issubclass(config, StrictConfig), "derive from eeg2bold.strict_config.StrictConfig"
    for name, field in config.model_fields.items():
        assert field.description, f"{config.__qualname__}.{name} has no description"

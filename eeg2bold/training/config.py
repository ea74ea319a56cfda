"""The configuration of one training run, and ``--set KEY=VALUE`` overrides routed to it."""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Mapping
from typing import Any

import yaml
from pydantic import Field, ValidationError

from eeg2bold.errors import ConfigError, did_you_mean, invalid_options
from eeg2bold.models import get_model_class, make_params
from eeg2bold.protocols.base import get_protocol, protocol_class
from eeg2bold.strict_config import StrictConfig
from eeg2bold.training.data import SampleConfig
from eeg2bold.training.fit import TrainConfig
from eeg2bold.training.losses import LossWeights
from eeg2bold.training.options import DEFAULT_PROTOCOL


class ExperimentConfig(StrictConfig):
    """One configuration: model + hyperparameters, protocol, samples, optimisation.

    Saved as JSON beside every result; its hash identifies the configuration in the results
    table (the seed is part of the hash's input only through ``train.seed``).
    """

    model: str = Field(description="Registered model name (see `eeg2bold models`).")
    model_params: dict[str, Any] = Field(default_factory=dict, description="Hyperparameters.")
    protocol: str = Field(
        DEFAULT_PROTOCOL,
        description="within, within_run, leave_one_run_out, loso or loso_calibrated.",
    )
    protocol_options: dict[str, Any] = Field(
        default_factory=dict, description="Splitter options, e.g. val_fraction, min_gap_s."
    )
    data: SampleConfig = Field(default_factory=SampleConfig, description="Windows and targets.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Optimisation.")

    def resolved(self) -> ExperimentConfig:
        """The same config with model hyperparameters validated and defaults filled in."""
        params = make_params(self.model, self.model_params).model_dump()
        get_protocol(self.protocol, **self.protocol_options)  # validates the options
        return self.model_copy(update={"model_params": params})

    def config_hash(self) -> str:
        text = json.dumps(self.resolved().model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _protocol_option_names(protocol: str) -> list[str]:
    names: list[str] = []
    for klass in protocol_class(protocol).__mro__:
        if "__init__" in vars(klass):
            sig = inspect.signature(vars(klass)["__init__"])
            names += [n for n, p in sig.parameters.items() if p.kind is p.KEYWORD_ONLY]
    return sorted(set(names))


def settable_keys(model: str, protocol: str) -> dict[str, list[str]]:
    """Keys ``--set`` accepts, by section: model, data, train, loss, protocol."""
    return {
        "model": list(get_model_class(model).Params.model_fields),
        "data": list(SampleConfig.model_fields),
        "train": [k for k in TrainConfig.model_fields if k != "loss"],
        "loss": list(LossWeights.model_fields),
        "protocol": _protocol_option_names(protocol),
    }


def parse_value(text: str) -> Any:
    """A ``--set`` value: YAML scalars and lists (``1e-3``, ``true``, ``[a, b]``), else the text."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def build_config(
    *, model: str, protocol: str = DEFAULT_PROTOCOL, sets: Mapping[str, str] | None = None
) -> ExperimentConfig:
    """An experiment config from a model, a protocol and ``KEY=VALUE`` overrides.

    Keys may be qualified (``model.n_branches``, ``train.lr``, ``data.window_s``,
    ``loss.clip``, ``protocol.val_fraction``) or bare when only one section has them.
    Unknown or ambiguous keys are errors naming the nearest valid key.
    """
    sections = settable_keys(model, protocol)
    values: dict[str, dict[str, Any]] = {name: {} for name in sections}
    for raw_key, text in (sets or {}).items():
        section, _, key = raw_key.rpartition(".")
        if section:
            if section not in sections or key not in sections[section]:
                _unknown(raw_key, sections)
        else:
            owners = [name for name, keys in sections.items() if key in keys]
            if not owners:
                _unknown(raw_key, sections)
            if len(owners) > 1:
                options = " or ".join(f"{o}.{key}" for o in owners)
                raise ConfigError(f"--set {key} is ambiguous: write {options}")
            section = owners[0]
        values[section][key] = parse_value(text)
    make_params(model, values["model"])  # one-line errors for model hyperparameters
    try:
        train = TrainConfig(**values["train"], loss=LossWeights(**values["loss"]))
        data = SampleConfig(**values["data"])
    except ValidationError as exc:
        raise ConfigError(invalid_options(exc, prefix="invalid setting(s): ")) from None
    return ExperimentConfig(
        model=model,
        model_params=values["model"],
        protocol=protocol,
        protocol_options=values["protocol"],
        data=data,
        train=train,
    ).resolved()


def _unknown(key: str, sections: Mapping[str, list[str]]) -> None:
    everything = [f"{s}.{k}" for s, keys in sections.items() for k in keys]
    bare = [k for keys in sections.values() for k in keys]
    hint = did_you_mean(key, everything + bare)
    raise ConfigError(f"unknown setting {key!r}{hint}; see `eeg2bold models` for model keys")

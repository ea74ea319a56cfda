"""The model contract and the registry every model joins with one decorator.

Contract (DESIGN.md "Models"):

- ``model(eeg)`` maps ``eeg [B, C, T]`` (float32, normalised per channel, ``T = spec.n_times``)
  to ``bold [B, R, spec.n_out]`` (``R = spec.n_rois``; ``n_out = 1`` for seq2one targets).
- Sizes come from a :class:`DataSpec` derived from the data, hyperparameters from the model's
  own pydantic ``Params`` (unknown keys are errors). Same seed → same initial weights.
- ``training_outputs(eeg, bold)`` is what the fit loop calls; models with a contrastive
  objective return embeddings there. Inference never sees the true BOLD.
- Closed-form models (:class:`ClosedFormModel`, e.g. ridge) are fitted once by
  ``fit_closed_form`` instead of gradient steps; they are ``nn.Module`` all the same, so
  prediction, checkpoints and the contract tests are shared.
- ``search_space(trial)`` is the model's define-by-run Optuna space (``trial`` is any object
  with Optuna's ``suggest_*`` methods); it returns keyword arguments for ``Params``.

Models never read files; they see tensors only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, Protocol, TypeVar

import torch
from pydantic import ValidationError
from torch import Tensor, nn

from eeg2bold.errors import ConfigError, did_you_mean, invalid_options
from eeg2bold.geometry import window_samples
from eeg2bold.strict_config import StrictConfig


@dataclass(frozen=True, kw_only=True)
class DataSpec:
    """Sizes a model is built from; all derived from the dataset and the window settings."""

    n_channels: int
    n_rois: int
    sfreq: float
    window_s: float
    n_out: int = 1

    @property
    def n_times(self) -> int:
        """EEG samples per window (the one sample geometry)."""
        return window_samples(self.window_s, self.sfreq)


class ModelParams(StrictConfig):
    """Base of every model's hyperparameters: typed, documented, strict."""


class ModelOutputs(NamedTuple):
    """What the fit loop gets during training: predictions plus optional embeddings."""

    pred: Tensor
    eeg_embedding: Tensor | None = None
    bold_embedding: Tensor | None = None


class TrainingBatch(NamedTuple):
    """A batch handed to closed-form fits: ``segment`` ids mark contiguous stretches of time."""

    eeg: Tensor
    bold: Tensor
    segment: Tensor


class SuggestTrial(Protocol):
    """What a search space may call: the suggest methods of an Optuna trial (the sweep passes
    a wrapper that applies the study config's fixed values and narrowed ranges)."""

    def suggest_float(self, name: str, low: float, high: float, **kw: Any) -> float: ...

    def suggest_int(self, name: str, low: int, high: int, **kw: Any) -> int: ...

    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


class BoldModel(nn.Module):
    """Base class of every registered model (see the module docstring for the contract)."""

    name: ClassVar[str] = ""
    Params: ClassVar[type[ModelParams]] = ModelParams
    closed_form: ClassVar[bool] = False
    interpretable: ClassVar[bool] = False
    contrastive: ClassVar[bool] = False  # training_outputs returns embeddings (CLIP loss)

    def __init__(self, spec: DataSpec, params: ModelParams | None = None):
        super().__init__()
        self.spec = spec
        self.params = params if params is not None else self.Params()

    def forward(self, eeg: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def training_outputs(self, eeg: Tensor, bold: Tensor) -> ModelOutputs:
        """Outputs for the loss; ``bold`` [B, R, n_out] is available to training-only parts."""
        return ModelOutputs(pred=self(eeg))

    @classmethod
    def search_space(cls, trial: SuggestTrial) -> dict[str, Any]:
        """Define-by-run hyperparameter space; default: nothing to search."""
        return {}

    @classmethod
    def search_defaults(cls) -> dict[str, Any]:
        """The values of the space's own parameters that stand for the default ``Params``
        (what ``eeg2bold train`` uses), so a sweep can start from them. Default: each
        ``Params`` field's default under its own name; a space whose parameters are derived
        (not ``Params`` fields) adds its own. A contract test checks that the space fed these
        values gives back ``Params()`` exactly."""
        return {name: field.get_default() for name, field in cls.Params.model_fields.items()}


class ClosedFormModel(BoldModel):
    """A model fitted in one pass over the training data (no gradient steps)."""

    closed_form: ClassVar[bool] = True

    def fit_closed_form(self, batches: Iterable[TrainingBatch]) -> dict[str, Any]:
        """Fit from all training batches; returns facts worth logging (e.g. chosen alpha)."""
        raise NotImplementedError


M = TypeVar("M", bound=type[BoldModel])
_REGISTRY: dict[str, type[BoldModel]] = {}
PLUGIN_ENV = "EEG2BOLD_PLUGINS"
PLUGIN_GROUP = "eeg2bold.models"
_loaded_plugins: set[str] = set()


def load_plugins() -> list[str]:
    """Import model plugins: modules named in ``$EEG2BOLD_PLUGINS`` (comma-separated) and
    entry points of group ``eeg2bold.models``. Each registers its models with
    :func:`register_model` on import, so a lab can add a model without forking the package
    (sweep workers inherit the variable). Returns the modules imported by this call."""
    import importlib
    import os
    from importlib.metadata import entry_points

    names = [n.strip() for n in os.environ.get(PLUGIN_ENV, "").split(",") if n.strip()]
    names += [ep.value.split(":")[0] for ep in entry_points(group=PLUGIN_GROUP)]
    imported = []
    for name in names:
        if name in _loaded_plugins:
            continue
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(f"cannot import model plugin {name!r} ({exc})") from None
        _loaded_plugins.add(name)
        imported.append(name)
    return imported


def register_model(name: str) -> Callable[[M], M]:
    """Class decorator: make a model available by ``name`` (explicit, no introspection)."""

    def decorate(cls: M) -> M:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"model name {name!r} is already registered")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def model_names() -> list[str]:
    """Names of every registered model (plugins included), sorted."""
    load_plugins()
    return sorted(_REGISTRY)


def get_model_class(name: str) -> type[BoldModel]:
    """The class registered as ``name``; unknown names fail with the list of known ones."""
    if name not in _REGISTRY:
        load_plugins()
    try:
        return _REGISTRY[name]
    except KeyError:
        hint = did_you_mean(name, _REGISTRY)
        raise ConfigError(
            f"unknown model {name!r}{hint}; known models: {', '.join(model_names())}"
        ) from None


def make_params(name: str, values: Mapping[str, Any] | None = None) -> ModelParams:
    """Validated hyperparameters for model ``name``; errors are one line with suggestions."""
    cls = get_model_class(name)
    values = dict(values or {})
    known = list(cls.Params.model_fields)
    for key in values:
        if key not in known:
            hint = did_you_mean(key, known)
            raise ConfigError(
                f"model {name!r} has no hyperparameter {key!r}{hint}; "
                f"valid: {', '.join(known) or 'none'}"
            )
    try:
        return cls.Params(**values)
    except ValidationError as exc:
        raise ConfigError(invalid_options(exc, prefix=f"model {name!r}: ")) from None


def build_model(
    name: str, spec: DataSpec, params: ModelParams | Mapping[str, Any] | None = None
) -> BoldModel:
    """Instantiate a registered model for data of shape ``spec``."""
    cls = get_model_class(name)
    if not isinstance(params, ModelParams):
        params = make_params(name, params)
    return cls(spec, params)


def resample_time(x: Tensor, n_out: int) -> Tensor:
    """Map a feature sequence [B, R, T'] to the requested ``n_out`` output steps.

    ``n_out == 1`` keeps the last step (the prediction for the window's target time);
    otherwise linear interpolation over the window.
    """
    if x.shape[-1] == n_out:
        return x
    if n_out == 1:
        return x[..., -1:]
    return torch.nn.functional.interpolate(x, size=n_out, mode="linear", align_corners=True)

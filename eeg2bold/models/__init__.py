"""Model registry: torch modules (and the closed-form ridge baseline) mapping EEG to ROI BOLD.

Each model lives in its own module with its hyperparameters and search space, and joins the
registry with ``@register_model``; the imports below are the explicit list of models.
"""

from __future__ import annotations

# The registered models (one module each). Import order does not matter.
from eeg2bold.models import beira, linker, neurobolt, ridge, twin  # noqa: F401
from eeg2bold.models.base import (
    BoldModel,
    ClosedFormModel,
    DataSpec,
    ModelOutputs,
    ModelParams,
    TrainingBatch,
    build_model,
    get_model_class,
    make_params,
    model_names,
    register_model,
)

__all__ = [
    "BoldModel",
    "ClosedFormModel",
    "DataSpec",
    "ModelOutputs",
    "ModelParams",
    "TrainingBatch",
    "build_model",
    "get_model_class",
    "make_params",
    "model_names",
    "register_model",
]

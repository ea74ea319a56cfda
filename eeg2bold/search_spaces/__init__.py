"""Define-by-run Optuna search spaces: per model, plus shared window, optimiser and loss spaces.

Never trains: a space only samples hyperparameters; :mod:`eeg2bold.launch` runs them.
"""

from __future__ import annotations

from eeg2bold.search_spaces.spaces import (
    ConstrainedTrial,
    ParamInfo,
    StartPoint,
    check_constraints,
    common_footprint,
    default_point,
    define_space,
    describe_space,
    experiment_from_sample,
    fixed_values,
    project_point,
    search_defaults,
    space_function,
)

__all__ = [
    "ConstrainedTrial",
    "ParamInfo",
    "StartPoint",
    "check_constraints",
    "common_footprint",
    "default_point",
    "define_space",
    "describe_space",
    "experiment_from_sample",
    "fixed_values",
    "project_point",
    "search_defaults",
    "space_function",
]

"""One JSON sanitiser for everything eeg2bold writes: run attributes (and their content
hashes), run-folder files, the report.

JSON has no NaN: an undefined r is ``null`` everywhere (DESIGN.md), so every writer passes
its values through :func:`json_safe` and then ``json.dumps(..., allow_nan=False)``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON types: mappings (keys as str), lists for tuples and arrays,
    Python scalars for numpy ones, and None for NaN, ±inf and pandas' NA/NaT."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return [json_safe(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    pd = sys.modules.get("pandas")  # only a value from pandas can be NA, and then it is loaded
    if pd is not None and (value is pd.NA or value is pd.NaT):
        return None
    return value

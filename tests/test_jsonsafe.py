"""The one JSON sanitiser: what every writer passes its values through."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from eeg2bold.jsonsafe import json_safe


def test_numpy_nan_and_pandas_missing_values_become_plain_json():
    value = {
        1: np.float32(0.5),
        "r": [np.nan, float("inf"), 0.25],
        "shape": (np.int64(3), 4),
        "array": np.array([[1.0, np.nan]]),
        "missing": [pd.NA, pd.NaT],
        "nested": {"ok": True, "name": "sub-01"},
    }
    out = json_safe(value)
    assert out == {
        "1": 0.5,
        "r": [None, None, 0.25],
        "shape": [3, 4],
        "array": [[1.0, None]],
        "missing": [None, None],
        "nested": {"ok": True, "name": "sub-01"},
    }
    assert type(out["shape"][0]) is int
    json.dumps(out, allow_nan=False)  # strict JSON

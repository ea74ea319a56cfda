"""The live twin's output file: TSV and Parquet hold the same updates (NaN rows of a gap
included), Parquet in row groups; another suffix is one line."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from eeg2bold.live.output import PARQUET_ROWS_PER_GROUP, LiveWriter
from eeg2bold.live.twin import Update
from eeg2bold.predict import read_tsv
from eeg2bold.predict.models import PredictError

OUTPUTS = ("Thalamus_L", "mean")


def _updates(n: int) -> list[Update]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        values = rng.normal(size=len(OUTPUTS)).astype(np.float32)
        stamp = 1000.0 + i
        if 40 <= i < 45:  # a gap: NaN values and no LSL timestamp
            values[:] = np.nan
            stamp = np.nan
        out.append(Update(time_s=10.0 + i, lsl_time=stamp, values=values))
    return out


def test_parquet_and_tsv_hold_the_same_updates(tmp_path):
    updates = _updates(2 * PARQUET_ROWS_PER_GROUP + 7)
    for suffix in ("tsv", "parquet"):
        writer = LiveWriter(tmp_path / f"live.{suffix}", OUTPUTS, meta={"model": "m"})
        for u in updates:
            writer.write(u)
        writer.close()
        assert writer.rows == len(updates)
        assert (tmp_path / "live.json").exists()
    times, columns = read_tsv(tmp_path / "live.tsv")
    table = pq.read_table(tmp_path / "live.parquet")
    meta = pq.ParquetFile(tmp_path / "live.parquet").metadata
    assert meta.num_row_groups == 3  # 60 + 60 + the 7 written at close
    assert table.column_names == ["time", "lsl_time", *OUTPUTS]
    np.testing.assert_allclose(table["time"].to_numpy(), times)
    np.testing.assert_allclose(table["time"].to_numpy(), [u.time_s for u in updates])
    lsl = table["lsl_time"].to_numpy()
    np.testing.assert_array_equal(np.isnan(lsl), np.isnan(columns["lsl_time"]))
    for name in ("lsl_time", *OUTPUTS):
        np.testing.assert_allclose(
            table[name].to_numpy(zero_copy_only=False), columns[name], rtol=1e-6, equal_nan=True
        )
    values = np.stack([u.values for u in updates])
    np.testing.assert_array_equal(table["Thalamus_L"].to_numpy(), values[:, 0])


def test_another_suffix_is_one_line(tmp_path):
    with pytest.raises(PredictError, match=r"live\.csv: the live output is a \.tsv or \.parquet"):
        LiveWriter(tmp_path / "live.csv", OUTPUTS, meta={})

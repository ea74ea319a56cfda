"""The results table: incremental Parquet parts readable by pandas, pyarrow and DuckDB."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from eeg2bold.errors import DatasetError
from eeg2bold.study.results import COLUMNS, ResultsWriter, read_results


def _rows(fold: int, n: int = 3):
    return [
        {
            "sweep": "s1",
            "trial": "t1",
            "config_hash": "abc",
            "model": "ridge",
            "protocol": "loso",
            "fold": fold,
            "subject": f"sub-{fold:02d}",
            "roi": f"roi{i}",
            "split": "test",
            "epoch": 4,
            "seed": 0,
            "final": True,
            "r": 0.1 * i,
            "n": 100,
        }
        for i in range(n)
    ]


def test_parts_accumulate_and_read_back(tmp_path):
    writer = ResultsWriter(tmp_path / "results")
    assert read_results(tmp_path / "results").empty
    writer.write(_rows(0), tag="loso-sub-00")
    writer.write(_rows(1), tag="loso/sub 01")
    assert writer.write([]) is None
    df = read_results(tmp_path / "results")
    assert list(df.columns) == COLUMNS
    assert len(df) == 6
    assert sorted(df["subject"].unique()) == ["sub-00", "sub-01"]
    assert df["r"].dtype == "float64"
    files = os.listdir(tmp_path / "results")
    assert len(files) == 2
    assert not any(f.endswith(".tmp") for f in files)
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "results")
        .sort_values(["subject", "roi"])
        .reset_index(drop=True),
        df.sort_values(["subject", "roi"]).reset_index(drop=True),
        check_dtype=False,
    )


def test_duckdb_reads_the_folder(tmp_path):
    duckdb = pytest.importorskip("duckdb", reason="duckdb is not installed")
    writer = ResultsWriter(tmp_path / "results")
    writer.write(_rows(0))
    writer.write(_rows(1))
    con = duckdb.connect()
    total = con.execute(f"SELECT count(*), avg(r) FROM '{tmp_path}/results/*.parquet'").fetchone()
    assert total[0] == 6
    assert total[1] == pytest.approx(0.1)


def test_rows_must_have_every_column(tmp_path):
    bad = _rows(0)
    del bad[0]["r"]
    with pytest.raises(ValueError, match=r"lack columns \['r'\]"):
        ResultsWriter(tmp_path / "results").write(bad)
    with pytest.raises(DatasetError, match="no results folder"):
        read_results(tmp_path / "nowhere")

"""The results table: named Parquet parts readable by pandas, pyarrow and DuckDB, rows unique
by their key however often an epoch is written."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from eeg2bold.errors import DatasetError
from eeg2bold.run_folder.table import (
    COLUMNS,
    ROW_KEY,
    ResultsWriter,
    part_name,
    read_results,
    score_rows,
)

BASE = {
    "sweep": "s1",
    "trial": "t1",
    "config_hash": "abc",
    "model": "ridge",
    "protocol": "loso",
    "seed": 0,
    "window_s": 10.0,
    "delay_s": 2.0,
}


def _rows(fold: int, n: int = 3, *, epoch: int = 4, offset: float = 0.0):
    base = {**BASE, "fold": fold, "subject": f"sub-{fold:02d}"}
    r = [0.1 * i + offset for i in range(n)]
    rois = [f"roi{i}" for i in range(n)]
    return score_rows(base, outputs=rois, r=r, split="test", epoch=epoch, final=True, n=100)


def test_parts_accumulate_and_read_back(tmp_path):
    writer = ResultsWriter(tmp_path / "table")
    writer.write(_rows(0), part=part_name("t1", "fold0", "final"))
    writer.write(_rows(1), part=part_name("t1", "fold1/x y", "final"))
    assert writer.write([], part="empty") is None
    df = read_results(tmp_path / "table")
    assert list(df.columns) == COLUMNS
    assert len(df) == 6
    assert sorted(df["subject"].unique()) == ["sub-00", "sub-01"]
    assert df["r"].dtype == "float64" and set(df["window_s"]) == {10.0}
    files = sorted(os.listdir(tmp_path / "table"))
    assert files == ["t1-fold0-final.parquet", "t1-fold1-x-y-final.parquet"]
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "table").sort_values(["subject", "roi"]).reset_index(drop=True),
        df.sort_values(["subject", "roi"]).reset_index(drop=True),
        check_dtype=False,
    )


def test_rewriting_a_part_replaces_its_rows(tmp_path):
    """A re-run epoch (resume, node retry) writes its part again: no duplicates, new values."""
    writer = ResultsWriter(tmp_path / "table")
    writer.write(_rows(0), part=part_name("t1", "fold0", "epoch4"))
    writer.write(_rows(0, offset=0.5), part=part_name("t1", "fold0", "epoch4"))
    df = read_results(tmp_path / "table")
    assert len(df) == 3
    assert df.sort_values("roi")["r"].tolist() == pytest.approx([0.5, 0.6, 0.7])


def test_reader_keeps_one_row_per_key_across_parts(tmp_path):
    """Parts written under other names (an older writer) still read unique: the last wins."""
    writer = ResultsWriter(tmp_path / "table")
    first = writer.write(_rows(0), part="a-first")
    os.utime(first, (1_000_000, 1_000_000))  # written long ago
    writer.write(_rows(0, offset=0.5), part="z-second")
    df = read_results(tmp_path / "table")
    assert not df.duplicated(ROW_KEY).any()
    assert len(df) == 3 and df["r"].min() == pytest.approx(0.5)


def test_duckdb_reads_the_folder(tmp_path):
    duckdb = pytest.importorskip("duckdb", reason="duckdb is not installed")
    writer = ResultsWriter(tmp_path / "table")
    writer.write(_rows(0), part="p0")
    writer.write(_rows(1), part="p1")
    con = duckdb.connect()
    total = con.execute(f"SELECT count(*), avg(r) FROM '{tmp_path}/table/*.parquet'").fetchone()
    assert total[0] == 6
    assert total[1] == pytest.approx(0.1)


def test_rows_must_have_every_column_and_unique_keys(tmp_path):
    bad = _rows(0)
    del bad[0]["r"]
    with pytest.raises(ValueError, match=r"lack columns \['r'\]"):
        ResultsWriter(tmp_path / "table").write(bad, part="p")
    twice = _rows(0) + _rows(0)
    with pytest.raises(ValueError, match="same key twice"):
        ResultsWriter(tmp_path / "table").write(twice, part="p")
    with pytest.raises(DatasetError, match="no results folder"):
        read_results(tmp_path / "nowhere")

"""The results table: one row per (sweep, trial, config, model, protocol, fold, subject, ROI,
split, epoch, seed) with r and the sample count, stored as Parquet parts in one folder.

Each fold's rows are published as one part file (temporary name, then rename; a single PUT on
object stores), so a crash loses at most the fold in flight. Read the folder with
:func:`read_results`, pandas (``pd.read_parquet(folder)``), pyarrow or DuckDB
(``SELECT * FROM 'results/*.parquet'``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from eeg2bold.errors import DatasetError

SCHEMA = pa.schema(
    [
        ("sweep", pa.string()),
        ("trial", pa.string()),
        ("config_hash", pa.string()),
        ("model", pa.string()),
        ("protocol", pa.string()),
        ("fold", pa.int32()),
        ("subject", pa.string()),
        ("roi", pa.string()),
        ("split", pa.string()),
        ("epoch", pa.int32()),
        ("seed", pa.int64()),
        ("final", pa.bool_()),
        ("r", pa.float64()),
        ("n", pa.int64()),
    ]
)
COLUMNS = SCHEMA.names


class ResultsWriter:
    """Appends rows to a results folder (local path or fsspec URL), one part file per call."""

    def __init__(
        self, url: str | os.PathLike[str], *, storage_options: dict[str, Any] | None = None
    ):
        self.url = os.fspath(url)
        self.fs, self.root = fsspec.core.url_to_fs(self.url, **(storage_options or {}))
        self.fs.makedirs(self.root, exist_ok=True)

    def write(self, rows: Iterable[Mapping[str, Any]], *, tag: str = "part") -> str | None:
        """Publish ``rows`` atomically as one Parquet part; returns its path (None if no rows)."""
        rows = list(rows)
        if not rows:
            return None
        missing = set(COLUMNS) - set(rows[0])
        if missing:
            raise ValueError(f"results rows lack columns {sorted(missing)}")
        table = pa.Table.from_pylist([{c: row[c] for c in COLUMNS} for row in rows], schema=SCHEMA)
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in tag)
        name = f"{safe}-{uuid.uuid4().hex[:12]}.parquet"
        final = f"{self.root.rstrip('/')}/{name}"
        if isinstance(self.fs, LocalFileSystem):
            tmp = f"{self.root.rstrip('/')}/.{name}.tmp"
            pq.write_table(table, tmp)
            os.replace(tmp, final)
        else:
            with self.fs.open(final, "wb") as f:
                pq.write_table(table, f)
        return final


def read_results(
    url: str | os.PathLike[str], *, storage_options: dict[str, Any] | None = None
) -> pd.DataFrame:
    """All rows of a results folder as a DataFrame (empty, with the columns, if none yet)."""
    fs, root = fsspec.core.url_to_fs(os.fspath(url), **(storage_options or {}))
    if not fs.exists(root):
        raise DatasetError(f"{url}: no results folder")
    parts = sorted(p for p in fs.glob(f"{root.rstrip('/')}/*.parquet"))
    if not parts:
        return SCHEMA.empty_table().to_pandas()
    tables = []
    for p in parts:
        with fs.open(p, "rb") as f:
            tables.append(pq.read_table(f, schema=SCHEMA))
    return pa.concat_tables(tables).to_pandas()

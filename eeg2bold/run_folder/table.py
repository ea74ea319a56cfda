"""The results table: one row per (sweep, trial, fold, ROI, split, epoch, final) with r and the
sample count, stored as Parquet parts in one folder of a run folder.

Rows are unique by :data:`ROW_KEY`. Each part is named by what it holds (``<trial>-fold<k>-
epoch<e>``, ``<trial>-fold<k>-final``), so re-running an epoch after a resume or a node retry
rewrites its part instead of adding one; :func:`read_results` also keeps only the last row of
any key, so a table is unique whoever wrote it. Every row carries the sample geometry
(``window_s``, ``delay_s``) and a ``config_hash`` that resolves to ``configs/<hash>.json``.
Parts are published atomically (:mod:`eeg2bold.run_folder.files`): a crash loses at most the
epoch in flight. Read with :func:`read_results`, pandas (``pd.read_parquet(folder)``), pyarrow
or DuckDB (``SELECT * FROM 'table/*.parquet'``).
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from eeg2bold.errors import DatasetError
from eeg2bold.run_folder.files import write_bytes

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
        ("window_s", pa.float64()),
        ("delay_s", pa.float64()),
        ("final", pa.bool_()),
        ("r", pa.float64()),
        ("n", pa.int64()),
    ]
)
COLUMNS = SCHEMA.names
# A row's identity: writing the same key again replaces the row (resume, node retry).
ROW_KEY = ["sweep", "trial", "fold", "roi", "split", "epoch", "final"]


def part_name(*fields: str | int) -> str:
    """A part file name from what it holds, safe on every file system."""
    text = "-".join(str(f) for f in fields)
    return re.sub(r"[^A-Za-z0-9_-]", "-", text) + ".parquet"


def score_rows(
    base: Mapping[str, Any],
    *,
    outputs: Sequence[str],
    r: Sequence[float] | np.ndarray,
    split: str,
    epoch: int,
    final: bool,
    n: int,
) -> list[dict[str, Any]]:
    """Rows of one split's per-output r at one epoch; ``base`` holds the fold's identity
    (sweep, trial, config_hash, model, protocol, fold, subject, seed, window_s, delay_s)."""
    values = [float(v) for v in np.asarray(r, dtype=np.float64).ravel()]
    if len(values) != len(outputs):
        raise ValueError(f"{len(values)} scores for {len(outputs)} outputs")
    return [
        {**base, "roi": roi, "split": split, "epoch": int(epoch), "final": bool(final)}
        | {"r": value, "n": int(n)}
        for roi, value in zip(outputs, values, strict=True)
    ]


class ResultsWriter:
    """Publishes rows to a results folder (local path or fsspec URL), one named part per call."""

    def __init__(self, url: str | os.PathLike[str]):
        self.url = os.fspath(url).rstrip("/")

    def write(self, rows: Iterable[Mapping[str, Any]], *, part: str) -> str | None:
        """Publish ``rows`` as the part ``part`` (see :func:`part_name`), replacing an earlier
        part of that name; returns its location (None if there are no rows)."""
        rows = list(rows)
        if not rows:
            return None
        missing = set(COLUMNS) - set(rows[0])
        if missing:
            raise ValueError(f"results rows lack columns {sorted(missing)}")
        table = pa.Table.from_pylist([{c: row[c] for c in COLUMNS} for row in rows], schema=SCHEMA)
        keys = {tuple(row[k] for k in ROW_KEY) for row in rows}
        if len(keys) != len(rows):
            raise ValueError(f"results part {part} holds rows with the same key twice")
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        name = part if part.endswith(".parquet") else part_name(part)
        return write_bytes(f"{self.url}/{name}", buffer.getvalue(), what="results")


def read_results(url: str | os.PathLike[str]) -> pd.DataFrame:
    """All rows of a results folder as a DataFrame, unique by :data:`ROW_KEY` (the part
    written last wins; empty, with the columns, if there are no parts yet)."""
    fs, root = fsspec.core.url_to_fs(os.fspath(url))
    if not fs.exists(root):
        raise DatasetError(f"{url}: no results folder")
    parts = fs.glob(f"{root.rstrip('/')}/*.parquet")
    if not parts:
        return SCHEMA.empty_table().to_pandas()
    order = sorted(parts, key=lambda p: (_modified(fs, p), p))
    tables = []
    for p in order:
        with fs.open(p, "rb") as f:
            tables.append(pq.read_table(f, schema=SCHEMA))
    frame = pa.concat_tables(tables).to_pandas()
    frame = frame.drop_duplicates(ROW_KEY, keep="last")
    return frame.reset_index(drop=True)


def _modified(fs: Any, path: str) -> float:
    try:
        stamp = fs.modified(path)
    except (NotImplementedError, OSError):
        return 0.0
    return float(stamp.timestamp())

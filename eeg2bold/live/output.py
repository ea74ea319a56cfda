"""The live twin's file: a TSV like ``predict``'s (a ``time`` column, then one per output) with
an ``lsl_time`` column, written a whole line at a time and flushed, so that whenever the
command stops (Ctrl-C, SIGTERM, a lost stream, even SIGKILL) the file is complete and
readable; or Parquet, the same columns in row groups of :data:`PARQUET_ROWS_PER_GROUP` updates,
whole once the command ends by itself, by Ctrl-C or by SIGTERM (Parquet's footer is written
last: a killed process leaves no readable file, which is why TSV is the default to name). A
JSON sidecar says how it was made."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

import eeg2bold
from eeg2bold.jsonsafe import json_safe
from eeg2bold.live.twin import Update
from eeg2bold.predict.models import PredictError

LIVE_FORMAT = "eeg2bold.live/1"
# one minute of updates at the default rate per Parquet row group
PARQUET_ROWS_PER_GROUP = 60


class _TsvSink:
    """One line per update, flushed: complete whatever stops the command."""

    def __init__(self, path: Path, outputs: tuple[str, ...]):
        self._file = open(path, "w", encoding="utf-8")  # noqa: SIM115 (held open)
        self._line("\t".join(["time", "lsl_time", *outputs]))

    def _line(self, text: str) -> None:
        self._file.write(text + "\n")
        self._file.flush()

    def write(self, update: Update) -> None:
        values = (f"{v:.7g}" if np.isfinite(v) else "nan" for v in update.values)
        stamp = f"{update.lsl_time:.6f}" if np.isfinite(update.lsl_time) else "nan"
        self._line("\t".join([f"{update.time_s:.6f}", stamp, *values]))

    def close(self) -> None:
        self._file.close()


class _ParquetSink:
    """Row groups of :data:`PARQUET_ROWS_PER_GROUP` updates; the footer on close."""

    def __init__(self, path: Path, outputs: tuple[str, ...]):
        import pyarrow as pa
        import pyarrow.parquet as pq

        fields = [pa.field("time", pa.float64()), pa.field("lsl_time", pa.float64())]
        schema = pa.schema(fields + [pa.field(name, pa.float32()) for name in outputs])
        self._writer = pq.ParquetWriter(path, schema)
        self.outputs = outputs
        self._pending: list[Update] = []

    def write(self, update: Update) -> None:
        self._pending.append(update)
        if len(self._pending) >= PARQUET_ROWS_PER_GROUP:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if not self._pending:
            return
        rows = self._pending
        columns = {
            "time": pa.array([u.time_s for u in rows], pa.float64()),
            "lsl_time": pa.array([u.lsl_time for u in rows], pa.float64()),
        }
        values = np.stack([u.values for u in rows]).astype(np.float32)
        for i, name in enumerate(self.outputs):
            columns[name] = pa.array(values[:, i], pa.float32())
        self._writer.write_table(pa.table(columns))
        self._pending = []

    def close(self) -> None:
        self._flush()
        self._writer.close()


# the file formats by suffix
SINKS: dict[str, type[_TsvSink] | type[_ParquetSink]] = {
    ".tsv": _TsvSink,
    ".parquet": _ParquetSink,
}


class LiveWriter:
    """Appends updates to ``path`` (a suffix of :data:`SINKS`); the sidecar ``.json`` is
    written first."""

    def __init__(self, path: str | os.PathLike[str], outputs: tuple[str, ...], *, meta: dict):
        self.path = Path(path)
        sink = SINKS.get(self.path.suffix.lower())
        if sink is None:
            raise PredictError(f"{self.path}: the live output is a {' or '.join(SINKS)} file")
        self.outputs = outputs
        self.rows = 0
        sidecar: dict[str, Any] = {
            "format": LIVE_FORMAT,
            "eeg2bold": eeg2bold.__version__,
            "columns": ["time", "lsl_time", *outputs],
            **meta,
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.with_suffix(".json").write_text(json.dumps(json_safe(sidecar), indent=2))
            self._sink = sink(self.path, outputs)
        except OSError as exc:
            raise PredictError(f"{self.path}: cannot write ({exc.strerror})") from None

    def write(self, update: Update) -> None:
        self.rows += 1
        self._sink.write(update)

    def close(self) -> None:
        self._sink.close()

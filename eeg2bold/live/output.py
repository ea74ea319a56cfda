"""The live twin's file: a TSV like ``predict``'s (a ``time`` column, then one per output) with
an ``lsl_time`` column, written a whole line at a time and flushed, so that whenever the
command stops (Ctrl-C, SIGTERM, a lost stream) the file is complete and readable; a JSON
sidecar says how it was made."""

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


class LiveWriter:
    """Appends updates to ``path`` (``.tsv``); the sidecar ``.json`` is written first."""

    def __init__(self, path: str | os.PathLike[str], outputs: tuple[str, ...], *, meta: dict):
        self.path = Path(path)
        if self.path.suffix.lower() != ".tsv":
            raise PredictError(f"{self.path}: the live output is a .tsv file")
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
            self._file = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 (held open)
        except OSError as exc:
            raise PredictError(f"{self.path}: cannot write ({exc.strerror})") from None
        self._line("\t".join(["time", "lsl_time", *outputs]))

    def _line(self, text: str) -> None:
        self._file.write(text + "\n")
        self._file.flush()

    def write(self, update: Update) -> None:
        values = (f"{v:.7g}" if np.isfinite(v) else "nan" for v in update.values)
        stamp = f"{update.lsl_time:.6f}" if np.isfinite(update.lsl_time) else "nan"
        self._line("\t".join([f"{update.time_s:.6f}", stamp, *values]))
        self.rows += 1

    def close(self) -> None:
        self._file.close()

"""Single files written atomically: a temporary name beside the target, then a rename, so a
reader never sees half a report or half a prediction table."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

from eeg2bold.errors import Eeg2BoldError


def write_bytes_atomic(
    path: Path,
    payload: bytes,
    *,
    what: str = "",
    error: type[Eeg2BoldError] = Eeg2BoldError,
) -> Path:
    """Write ``payload`` to ``path``; an unwritable place is a one-line ``error`` naming it
    (``what`` says what could not be written, e.g. "the report")."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(payload)
        os.replace(tmp, path)
    except OSError as exc:
        label = f" {what}" if what else ""
        raise error(f"{path}: cannot write{label} ({exc.strerror or exc})") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    return path

"""The one way eeg2bold publishes a single file: whole or not at all.

Locally the payload goes to a temporary name beside the target and is renamed over it (atomic
on POSIX), so a reader never sees half a report, model file or results part. Object stores
have no rename; there a file is one PUT, which is atomic too. Every file a run, a sweep, a
report or a prediction leaves behind is written through :func:`write_bytes`.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from eeg2bold.errors import Eeg2BoldError


def is_url(location: str | os.PathLike[str]) -> bool:
    """True for fsspec URLs (``s3://…``), False for local paths."""
    return "://" in os.fspath(location)


def absolute(location: str | os.PathLike[str]) -> str:
    """A local path made absolute (URLs unchanged), so a record means the same from any
    working folder."""
    text = os.fspath(location)
    return text if is_url(text) else str(Path(text).expanduser().resolve())


def write_bytes(
    location: str | os.PathLike[str],
    payload: bytes,
    *,
    what: str = "",
    error: type[Eeg2BoldError] = Eeg2BoldError,
) -> str:
    """Publish ``payload`` at ``location`` (a path or URL), creating folders; an unwritable
    place is a one-line ``error`` naming it (``what`` says what, e.g. "the report")."""
    text = os.fspath(location)
    fs, path = fsspec.core.url_to_fs(text)
    try:
        if isinstance(fs, LocalFileSystem):
            target = Path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
            try:
                tmp.write_bytes(payload)
                os.replace(tmp, target)
            finally:
                with contextlib.suppress(OSError):
                    tmp.unlink(missing_ok=True)
        else:
            fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            with fs.open(path, "wb") as f:
                f.write(payload)
    except OSError as exc:
        label = f" {what}" if what else ""
        raise error(f"{text}: cannot write{label} ({exc.strerror or exc})") from None
    return text


def write_json(location: str | os.PathLike[str], value: Any, **kw: Any) -> str:
    """:func:`write_bytes` of ``value`` as indented JSON (NaN refused: it is not JSON)."""
    return write_bytes(location, json.dumps(value, indent=2, allow_nan=False).encode(), **kw)


def read_bytes(location: str | os.PathLike[str]) -> bytes | None:
    """The file's content, or None when there is no such file."""
    fs, path = fsspec.core.url_to_fs(os.fspath(location))
    try:
        return fs.cat_file(path)
    except FileNotFoundError:
        return None


def read_json(location: str | os.PathLike[str]) -> Any:
    """A JSON file's value, or None when there is no such file."""
    blob = read_bytes(location)
    return None if blob is None else json.loads(blob)

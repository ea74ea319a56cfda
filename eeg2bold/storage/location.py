"""Where a store lives: a local folder or an fsspec URL (``s3://…``), and how runs are published.

Publishing is the only place that knows the difference between file systems. Locally a run is
written into a temporary folder and renamed into place (atomic on POSIX). Object stores have no
rename, so files are copied with the run group's ``zarr.json`` last: a run is visible only once
that file exists, so readers never see half a run either way.

Credentials never appear in URLs we print: :func:`mask_url` hides user info and secret-looking
query parameters; object-store credentials come from the environment (AWS_* variables).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import fsspec
from fsspec.implementations.local import LocalFileSystem
from zarr.abc.store import Store
from zarr.storage import FsspecStore, LocalStore

TMP_DIR = ".eeg2bold-tmp"
_SECRET_QUERY = re.compile(r"(?i)(password|secret|token|key|signature|credential)[^=&]*=[^&]*")


def mask_url(url: str) -> str:
    """Hide passwords, user names and secret query values in a URL before it is shown."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<url>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = _SECRET_QUERY.sub(lambda m: m.group(0).split("=", 1)[0] + "=***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class Location:
    """A store root on some file system, with the operations publishing needs."""

    def __init__(self, url: str | os.PathLike[str], *, storage_options: dict[str, Any] | None):
        self.url = os.fspath(url)
        self.storage_options = dict(storage_options or {})
        self.fs, self.root = fsspec.core.url_to_fs(self.url, **self.storage_options)
        self.is_local = isinstance(self.fs, LocalFileSystem)
        if self.is_local:  # recorded absolute: the same store from any working folder
            self.root = str(Path(self.root).resolve())
            self.url = self.root

    @property
    def display(self) -> str:
        """The URL as it may be printed (credentials masked)."""
        return mask_url(self.url)

    def path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts]) if parts else self.root

    def _url(self, path: str) -> str:
        protocol = self.fs.protocol[0] if isinstance(self.fs.protocol, tuple) else self.fs.protocol
        return f"{protocol}://{path}"

    def zarr_store(self, *parts: str, read_only: bool) -> Store:
        path = self.path(*parts)
        if self.is_local:
            return LocalStore(path, read_only=read_only)
        return FsspecStore.from_url(
            self._url(path), storage_options=self.storage_options, read_only=read_only
        )

    def refresh(self) -> None:
        """Forget cached listings (object stores cache directory listings)."""
        self.fs.invalidate_cache()

    def exists(self, *parts: str) -> bool:
        return bool(self.fs.exists(self.path(*parts)))

    def read_json(self, *parts: str) -> Any:
        with self.fs.open(self.path(*parts), "rb") as f:
            return json.loads(f.read())

    def list_dirs(self, *parts: str) -> list[str]:
        """Names of the sub-folders (prefixes) directly under ``parts``."""
        base = self.path(*parts)
        if self.is_local:
            try:
                return sorted(e.name for e in os.scandir(base) if e.is_dir())
            except FileNotFoundError:
                return []
        try:
            entries = self.fs.ls(base, detail=True, refresh=True)
        except FileNotFoundError:
            return []
        return sorted(
            e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e["type"] == "directory"
        )

    def new_tmp(self) -> tuple[str, ...]:
        """A fresh, unique temporary folder (relative parts) under the store root."""
        parts = (TMP_DIR, uuid.uuid4().hex)
        if self.is_local:
            os.makedirs(self.path(*parts), exist_ok=False)
        return parts

    def remove(self, *parts: str) -> None:
        path = self.path(*parts)
        if self.is_local:
            shutil.rmtree(path, ignore_errors=True)
        elif self.fs.exists(path):
            self.fs.rm(path, recursive=True)

    def publish(self, tmp: tuple[str, ...], final: tuple[str, ...]) -> None:
        """Move a fully written node from ``tmp`` to ``final``; raises FileExistsError if taken."""
        src, dst = self.path(*tmp), self.path(*final)
        if self.is_local:
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            try:
                os.rename(src, dst)
            except OSError as exc:
                if os.path.exists(dst):
                    raise FileExistsError(dst) from exc
                raise
            return
        self.refresh()
        if self.fs.exists(f"{dst}/zarr.json"):
            raise FileExistsError(dst)
        if self.fs.exists(dst):  # leftovers of an interrupted publish: never visible, replace
            self.fs.rm(dst, recursive=True)
        files = sorted(self.fs.find(src))
        marker = f"{src}/zarr.json"
        for f in [f for f in files if f != marker] + [marker]:
            self.fs.copy(f, dst + f[len(src) :])
        self.fs.rm(src, recursive=True)

    def replace(self, tmp: tuple[str, ...], final: tuple[str, ...]) -> None:
        """Publish ``tmp`` over an existing node (an explicit overwrite).

        Locally the old node is moved aside and restored if the swap fails. Object stores
        cannot swap: the old run is hidden (its ``zarr.json`` removed first) and deleted, then the
        new one is published, so a crash in between leaves no run rather than a mixed one.
        """
        dst = self.path(*final)
        if self.is_local:
            aside = self.path(TMP_DIR, "old-" + uuid.uuid4().hex)
            os.rename(dst, aside)
            try:
                os.rename(self.path(*tmp), dst)
            except OSError:
                os.rename(aside, dst)
                raise
            shutil.rmtree(aside, ignore_errors=True)
            return
        self.fs.rm(f"{dst}/zarr.json")
        self.refresh()
        self.fs.rm(dst, recursive=True)
        self.publish(tmp, final)

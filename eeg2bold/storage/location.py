"""Where a store lives: a local folder or an fsspec URL (``s3://…``), and how runs are published.

Publishing is the only place that knows the difference between file systems. Locally a run is
written into a temporary folder and renamed into place (atomic on POSIX). Object stores have no
rename, so files are copied with the run group's ``zarr.json`` last: a run is visible only once
that file exists, so readers never see half a run either way.

Credentials never appear in URLs we print: :func:`mask_url` hides user info and secret-looking
query parameters; object-store credentials come from the environment (AWS_* variables).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import fsspec
from fsspec.implementations.local import LocalFileSystem
from zarr.abc.store import Store
from zarr.storage import FsspecStore, LocalStore

from eeg2bold.errors import ConfigError

TMP_DIR = ".eeg2bold-tmp"
_SECRET_QUERY = re.compile(r"(?i)(password|secret|token|key|signature|credential)[^=&]*=[^&]*")


_HOST = socket.gethostname().split(".")[0].replace("~", "-") or "host"


def temporary_name() -> str:
    """``<host>~<pid>~<random>``: who writes this temporary (see :func:`writer_alive`)."""
    return f"{_HOST}~{os.getpid()}~{uuid.uuid4().hex[:16]}"


def writer_alive(name: str) -> bool | None:
    """Whether the process that made the temporary ``name`` still runs: True or False for
    one of this host, None where it cannot be told (another host, an older name)."""
    parts = name.removeprefix("old-").split("~")
    if len(parts) != 3 or parts[0] != _HOST or not parts[1].isdigit():
        return None
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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


# ``${NAME}`` in a URL template: expanded when connecting, kept as written everywhere else
ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(url: str) -> str:
    """Replace ``${NAME}`` by the environment's value (an unset variable is an error)."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise ConfigError(f"environment variable {name} (used in a storage URL) is not set")
        return os.environ[name]

    return ENV_VAR.sub(value, url)


def display_url(url: str) -> str:
    """A storage URL safe to print (variables unexpanded, credentials masked)."""
    if url.startswith(("sqlite:", "journal:")):  # file paths: nothing secret
        return url
    return mask_url(url)


# botocore's exceptions, by name (botocore is optional: eeg2bold[s3])
_NO_CREDENTIALS = {"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"}
_UNREACHABLE = {"EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError"}
_REFUSED = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"}


def object_store_error(display: str, exc: BaseException) -> Exception | None:
    """What an object store's client raised, as a one-line error naming the URL (None: not
    one of the failures a user's settings cause): no credentials, an endpoint that does not
    answer, or credentials the store refuses."""

    seen: BaseException | None = exc
    while seen is not None:  # s3fs may wrap botocore's error (PermissionError, OSError)
        name = type(seen).__name__
        if name in _NO_CREDENTIALS:
            return ConfigError(
                f"{display}: no credentials for the object store (set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"
            )
        if name in _UNREACHABLE:
            endpoint = urlsplit(str(getattr(seen, "kwargs", {}).get("endpoint_url", "")))
            where = (
                f" {mask_url(f'{endpoint.scheme}://{endpoint.netloc}')}" if endpoint.netloc else ""
            )
            return ConfigError(
                f"{display}: the object store's endpoint{where} does not answer (check "
                "AWS_ENDPOINT_URL and the network)"
            )
        code = str(getattr(seen, "response", {}).get("Error", {}).get("Code", ""))
        if name == "ClientError" and code in _REFUSED:
            return ConfigError(f"{display}: the object store refused the credentials ({code})")
        seen = seen.__cause__ or seen.__context__
    return None


@contextlib.contextmanager
def object_store_errors(display: str) -> Any:
    """Object-store failures caused by the user's settings, named in one line."""
    try:
        yield
    except Exception as exc:
        mapped = object_store_error(display, exc)
        if mapped is None:
            raise
        raise mapped from None


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

    def new_tmp(self, prefix: str = "") -> tuple[str, ...]:
        """A fresh, unique temporary folder (relative parts) under the store root, named after
        its writer (host and process) so that a later write can tell a crashed writer's
        leftovers from a live one's."""
        parts = (TMP_DIR, prefix + temporary_name())
        if self.is_local:
            for attempt in range(3):  # another writer may remove the empty parent meanwhile
                try:
                    os.makedirs(self.path(*parts), exist_ok=False)
                    break
                except FileNotFoundError:
                    if attempt == 2:
                        raise
        return parts

    def temporaries(self) -> list[str]:
        return self.list_dirs(TMP_DIR)

    def newest_mtime(self, *parts: str) -> float | None:
        """The newest modification time of any file under ``parts`` (None if unknown)."""
        path = self.path(*parts)
        try:
            if self.is_local:
                times = [os.path.getmtime(path)]
                for root, _dirs, files in os.walk(path):
                    times += [os.path.getmtime(os.path.join(root, f)) for f in files]
                return max(times)
            found = self.fs.find(path, detail=True)
        except OSError:
            return None
        times = []
        for info in found.values():
            stamp = info.get("mtime") or info.get("LastModified") or info.get("last_modified")
            if hasattr(stamp, "timestamp"):
                stamp = stamp.timestamp()
            if isinstance(stamp, int | float):
                times.append(float(stamp))
        return max(times) if times else None

    def drop_empty_tmp_root(self) -> None:
        """Remove the temporaries' folder once nothing is in it (zarr lists it otherwise)."""
        if self.is_local:
            with contextlib.suppress(OSError):  # not empty (a live writer), or already gone
                os.rmdir(self.path(TMP_DIR))

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
            aside = self.path(*self.new_tmp(prefix="old-"))
            os.rmdir(aside)  # a name of our own; the old node is renamed onto it
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

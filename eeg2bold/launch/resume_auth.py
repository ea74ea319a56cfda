"""Resume trusts only its own state: Ray Tune's pickled experiment state is loaded by
``sweep --resume`` only when it carries this user's authentication code.

Tune keeps pickles in the results folder (``tuner.pkl``, ``searcher-state-*.pkl``, pickles
inside ``experiment_state-*.json``, ``trial_*/params.pkl``), and unpickling runs code: on a
cluster that folder is shared storage, so anyone who can write there could run code as the
next driver. While a sweep runs, :class:`StateSigner` keeps a signed copy of these files
(HMAC-SHA256 with a per-user key kept outside the results folder, mode 0600, created on first
use) under ``.eeg2bold-signed/``; before ``Tuner.restore`` it puts the signed copies back,
verified, and removes state files it never signed. A missing, altered or foreign signature is
a one-line error, and nothing is unpickled.

Ray-free (plain files through fsspec), so it is tested without a cluster.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any

import fsspec

from eeg2bold.errors import ConfigError
from eeg2bold.run_folder.files import read_bytes, write_bytes

KEY_ENV = "EEG2BOLD_RESUME_KEY"  # another key file (e.g. one per project)
SIGNED = ".eeg2bold-signed"
MANIFEST = "manifest.json"


def key_path() -> Path:
    return Path(os.environ.get(KEY_ENV) or Path.home() / ".config" / "eeg2bold" / "resume.key")


def load_key() -> bytes:
    """This user's key; created (32 random bytes, mode 0600) on first use."""
    path = key_path()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another driver made it just now
            pass
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(32))
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{path}: the resume key is readable by others (mode {stat.S_IMODE(mode):o}); "
            f"run `chmod 600 {path}`"
        )
    key = path.read_bytes()
    if len(key) < 32:
        raise ConfigError(f"{path}: not an eeg2bold resume key (too short)")
    return key


def _is_state(name: str) -> bool:
    """Files of a Tune experiment folder that Tune unpickles (or that hold pickles)."""
    top = "/" not in name
    return (top and (name.endswith(".pkl") or (name.endswith(".json") and "state" in name))) or (
        name.startswith("trial_") and name.endswith("/params.pkl")
    )


class StateSigner:
    """Signs the state files of one Tune experiment folder, and restores them verified."""

    def __init__(self, experiment: str):
        self.experiment = experiment.rstrip("/")
        self._seen: dict[str, Any] = {}

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles its callbacks: never the key
        return {"experiment": self.experiment, "_seen": {}}

    def _state_files(self) -> dict[str, str]:
        fs, root = fsspec.core.url_to_fs(self.experiment)
        if not fs.exists(root):
            return {}
        found = {}
        for path in fs.find(root):
            name = path[len(root.rstrip("/")) + 1 :]
            if not name.startswith(SIGNED) and _is_state(name):
                found[name] = path
        return found

    def sign_if_changed(self) -> bool:
        """Sign the state files when Tune has rewritten any of them; True if it signed."""
        fs, _ = fsspec.core.url_to_fs(self.experiment)
        files = self._state_files()
        stamp = {n: (fs.info(p).get("size"), _modified(fs, p)) for n, p in files.items()}
        if not files or stamp == self._seen:
            return False
        key = load_key()
        digests = {}
        for name, path in sorted(files.items()):
            blob = fs.cat_file(path)
            digests[name] = hmac.new(key, blob, hashlib.sha256).hexdigest()
            write_bytes(f"{self.experiment}/{SIGNED}/{name}", blob)
        body = json.dumps(digests, sort_keys=True)
        manifest = {"files": digests, "mac": hmac.new(key, body.encode(), "sha256").hexdigest()}
        write_bytes(f"{self.experiment}/{SIGNED}/{MANIFEST}", json.dumps(manifest).encode())
        self._seen = stamp
        return True

    def restore_verified(self) -> None:
        """Put the signed state back in place, verified; refuse (one line) otherwise."""
        where = self.experiment
        raw = read_bytes(f"{where}/{SIGNED}/{MANIFEST}")
        if raw is None:
            raise ConfigError(
                f"{where}: Ray's saved state carries no eeg2bold signature, so --resume will "
                "not load it (it could run code); start the sweep again in a new folder"
            )
        key = load_key()
        try:
            manifest = json.loads(raw)
            body = json.dumps(manifest["files"], sort_keys=True)
            expected = hmac.new(key, body.encode(), "sha256").hexdigest()
            ok = hmac.compare_digest(expected, str(manifest["mac"]))
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            raise ConfigError(
                f"{where}: the signature of Ray's saved state does not match this user's key "
                f"({key_path()}): it was altered or signed by someone else; --resume refused"
            )
        blobs = {}
        for name, digest in manifest["files"].items():
            blob = read_bytes(f"{where}/{SIGNED}/{name}")
            if blob is None or not hmac.compare_digest(
                hmac.new(key, blob, hashlib.sha256).hexdigest(), digest
            ):
                raise ConfigError(
                    f"{where}: the signed copy of {name} was altered; --resume refused"
                )
            blobs[name] = blob
        fs, _ = fsspec.core.url_to_fs(where)
        for name, path in self._state_files().items():
            if name not in blobs:  # written after the last signature: never loaded
                fs.rm(path)
        for name, blob in blobs.items():
            write_bytes(f"{where}/{name}", blob)


def _modified(fs: Any, path: str) -> float:
    try:
        return float(fs.modified(path).timestamp())
    except (NotImplementedError, OSError, AttributeError):
        return 0.0

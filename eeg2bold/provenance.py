"""Where a result came from: package versions, the git commit of the code, host and time.

Sweeps record this when they start (``sweep.json``) and reports when they are built, so a
published number can be traced to the exact code that produced it.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from eeg2bold import __version__

PACKAGES = ("torch", "numpy", "scipy", "pandas", "ray", "optuna", "zarr", "mne", "nilearn")


def git_commit(path: str | Path | None = None) -> dict[str, Any] | None:
    """The commit of the checkout holding ``path`` (default: this package) and whether it had
    uncommitted changes; None outside a git checkout or without git."""
    where = Path(path) if path else Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if head.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}


def versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed versions of eeg2bold, Python and the packages results depend on."""
    out: dict[str, str | None] = {"eeg2bold": __version__, "python": sys.version.split()[0]}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def environment() -> dict[str, Any]:
    """Versions, git commit, host and UTC time, as plain JSON."""
    return {
        "versions": versions(),
        "git": git_commit(),
        "platform": platform.platform(),
        "host": platform.node(),
        "time_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }

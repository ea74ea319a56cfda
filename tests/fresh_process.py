"""Running a few lines in a fresh interpreter: what a process imports, or what its first calls
set, can only be seen before anything else in the test session has loaded it."""

from __future__ import annotations

import os
import subprocess
import sys


def last_line(code: str, *, env: dict[str, str] | None = None) -> str:
    """The last line ``code`` prints in a new ``python -c`` (which must exit 0)."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=None if env is None else {**os.environ, **env},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]

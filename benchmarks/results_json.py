"""Writing a benchmark's JSON result (imported by the scripts beside it)."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any


def write_result(out: dict[str, Any], path: str | Path) -> Path:
    """``out`` with the platform added, as indented JSON at ``path`` (folders made)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    full = {**out, "platform": {"python": platform.python_version(), "cpus": os.cpu_count()}}
    target.write_text(json.dumps(full, indent=2))
    print(f"written {target}", file=sys.stderr)
    return target

"""What Tune recorded of a sweep's trials: their result rows, when each ran and where."""

from __future__ import annotations

import json
from pathlib import Path


def trial_rows(folder) -> dict[str, list[dict]]:
    """Tune's result rows of every trial (one file per trial; its config names its arm)."""
    out = {}
    for path in sorted(Path(folder, "ray").glob("*/trial_*/result.json")):
        out[path.parent.name] = [
            json.loads(line) for line in path.read_text().splitlines() if line.strip()
        ]
    return out


def arm_spans(folder) -> dict[str, list[tuple[float, float]]]:
    """Per arm, each trial's (start, end) in wall-clock seconds, from the trial's own clock."""
    spans: dict[str, list[tuple[float, float]]] = {}
    for rows in trial_rows(folder).values():
        last = rows[-1]
        start = float(last["started_at"])
        spans.setdefault(last["config"]["arm"], []).append((start, start + last["time_total_s"]))
    return spans


def longest_overlap(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    """Seconds for which a trial of ``a`` and a trial of ``b`` ran at once (≤ 0: never)."""
    return max(min(x[1], y[1]) - max(x[0], y[0]) for x in a for y in b)

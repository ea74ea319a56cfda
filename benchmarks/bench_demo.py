"""The demo's end-to-end time: simulate -> sweep -> report, exactly as `make demo` runs them.

Runs the three commands of the Makefile's demo target in a fresh temporary folder (so nothing
is reused), timing each. Target (issue 10): under 6 minutes on a 2-core machine, installation
not counted.

    python benchmarks/bench_demo.py [--out benchmarks/results/demo.json] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 360.0


def demo_commands() -> list[list[str]]:
    """The demo target's command lines, read from the Makefile (one source of truth)."""
    make = (ROOT / "Makefile").read_text()
    block = make.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    lines = [ln.strip() for ln in block.splitlines()[1:] if ln.startswith("\t")]
    exe = str(Path(sys.executable).with_name("eeg2bold"))
    out = []
    for line in lines:
        line = line.replace("$(BIN)/eeg2bold", exe).replace("$(DEMO_DIR)", "demo_out")
        if re.search(r"\$\(", line):
            raise SystemExit(f"unexpanded make variable in the demo target: {line}")
        out.append(shlex.split(line))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "demo.json"))
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="eeg2bold-demo-"))
    shutil.copytree(ROOT / "examples", work / "examples")
    steps = []
    load_start = os.getloadavg()
    total = time.perf_counter()
    try:
        for cmd in demo_commands():
            started = time.perf_counter()
            run = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
            seconds = time.perf_counter() - started
            name = Path(cmd[0]).name + " " + cmd[1]
            steps.append({"command": name, "seconds": seconds, "returncode": run.returncode})
            print(f"{name}: {seconds:.1f} s", flush=True)
            if run.returncode != 0:
                print(run.stdout[-3000:], run.stderr[-3000:], sep="\n")
                raise SystemExit(f"{name} failed (exit {run.returncode})")
        elapsed = time.perf_counter() - total
        report = work / "demo_out" / "report.json"
        numbers = json.loads(report.read_text())
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    result = {
        "benchmark": "demo end to end (simulate, sweep, report)",
        "steps": steps,
        "total_seconds": elapsed,
        "target_seconds": TARGET_S,
        "pass": elapsed < TARGET_S,
        "n_trials": numbers["sweep"]["n_trials"],
        "report_build_seconds": numbers.get("build_seconds"),
        # the story the demo must tell (issue 10): ROIs above chance, a positive within - LOSO gap
        "summary": [
            {k: row[k] for k in ("protocol", "model", "mean_r", "n_above_chance", "mean_gap")}
            for row in numbers["summary"]
        ],
        "significant_rois_max": max(row["n_above_chance"] for row in numbers["summary"]),
        "positive_loso_gap": any(
            row["protocol"] == "loso" and (row["mean_gap"] or 0) > 0 for row in numbers["summary"]
        ),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
        "folder": str(work) if args.keep else None,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    verdict = "PASS" if result["pass"] else "FAIL"
    print(f"demo end to end: {elapsed:.0f} s (target < {TARGET_S:.0f} s) {verdict}")
    for row in result["summary"]:
        gap = "" if row["mean_gap"] is None else f", gap {row['mean_gap']:+.3f}"
        print(
            f"  {row['protocol']:<22}{row['model']:<7} r {row['mean_r']:.3f}, "
            f"{row['n_above_chance']} ROIs q<0.05{gap}"
        )


if __name__ == "__main__":
    main()

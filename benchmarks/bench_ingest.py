"""Ingest throughput and peak memory on one long BrainVision recording.

Input: a generated 30-min, 64-channel, 1000 Hz BrainVision recording (pybv, float32 microvolts,
one R128 marker per 2 s volume) paired with a synthetic region table. The ingest runs end to
end in a fresh child process (hashing, header checks, reading, notch + band-pass + resampling
to 250 Hz, average reference, validation and the atomic Zarr write with its read-back check).

Definitions (also written to the JSON):
- raw data size = n_channels x n_samples x 4 bytes (the recording as float32);
- throughput = raw data size / wall time of ``ingest(...)``, in MB/s (1 MB = 1e6 bytes), and
  per CPU-second of the process (a fairer figure on a shared machine);
- peak memory = peak resident set size during ``ingest(...)`` minus the RSS just before it
  (after imports), sampled every 5 ms from /proc/self/statm, cross-checked with
  ``getrusage`` maxrss. Target: below 4 x the raw data size.

    python benchmarks/bench_ingest.py [--minutes 30] [--channels 64] [--group 16]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

TARGET_RATIO = 4.0
TR = 2.0


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _PeakRSS:
    """Samples this process's RSS in a thread; ``peak`` is the largest value seen."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak = _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(self.interval)

    def __enter__(self) -> _PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


def write_inputs(folder: Path, *, minutes: float, channels: int, sfreq: float) -> dict:
    """The BrainVision recording (pybv) and a region table with one row per marker."""
    import pybv

    n = int(round(minutes * 60 * sfreq))
    rng = np.random.default_rng(0)
    names = [f"E{i + 1:02d}" for i in range(channels)]
    data = rng.standard_normal((channels, n), dtype=np.float32)
    data *= 10.0  # microvolts
    t = np.arange(n, dtype=np.float32) / np.float32(sfreq)
    data += 5.0 * np.sin(2 * np.pi * 50.0 * t)  # mains
    data[-8:] += 20.0 * np.sin(2 * np.pi * 10.0 * t)  # alpha on the "occipital" rows
    del t
    onsets = np.arange(5.0, minutes * 60 - TR, TR)
    events = [
        {"onset": int(round(o * sfreq)), "duration": 1, "description": 128, "type": "Response"}
        for o in onsets
    ]
    pybv.write_brainvision(
        data=data,
        sfreq=sfreq,
        ch_names=names,
        fname_base="long",
        folder_out=str(folder),
        events=events,
        unit="µV",
        fmt="binary_float32",
    )
    del data
    table = folder / "rois.tsv"
    values = rng.standard_normal((len(onsets), 8))
    header = "\t".join(f"roi{i}" for i in range(8))
    np.savetxt(table, values, delimiter="\t", header=header, comments="")
    return {
        "vhdr": str(folder / "long.vhdr"),
        "table": str(table),
        "n_channels": channels,
        "n_samples": n,
        "sfreq": sfreq,
        "n_volumes": len(onsets),
    }


def child(args: argparse.Namespace) -> None:
    """Measure one ingest in this (fresh) process and print the result as JSON."""
    from eeg2bold.ingest import FileRun, FilesLayout, IngestConfig, ingest

    spec = json.loads(args.child)
    layout = FilesLayout([FileRun(eeg=Path(spec["vhdr"]), bold=Path(spec["table"]))])
    config = IngestConfig(timing={"markers": ["R128"]}, bold={"tr": TR})
    base_rss = _rss_bytes()
    base_max = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0, c0 = time.perf_counter(), time.process_time()
    with _PeakRSS() as sampler:
        report = ingest(layout, spec["out"], config=config, progress=False, group_size=args.group)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if report.failed:
        raise SystemExit(f"ingest failed: {report.failed[0].reason}")
    print(
        json.dumps(
            {
                "wall_s": wall,
                "cpu_s": cpu,
                "rss_before_bytes": base_rss,
                "peak_rss_bytes": sampler.peak,
                "peak_rss_delta_bytes": sampler.peak - base_rss,
                "getrusage_maxrss_bytes": maxrss,
                "getrusage_maxrss_before_bytes": base_max,
                "status": report.outcomes[0].status,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/ingest.json")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--sfreq", type=float, default=1000.0)
    parser.add_argument("--group", type=int, default=16, help="channels preprocessed at a time")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        spec = write_inputs(folder, minutes=args.minutes, channels=args.channels, sfreq=args.sfreq)
        write_s = time.perf_counter() - t0
        spec["out"] = str(folder / "bench.zarr")
        eeg_file_bytes = (folder / "long.eeg").stat().st_size
        cmd = [sys.executable, __file__, "--child", json.dumps(spec), "--group", str(args.group)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"benchmark child failed:\n{done.stderr[-3000:]}")
        measured = json.loads(done.stdout.strip().splitlines()[-1])

    raw_bytes = spec["n_channels"] * spec["n_samples"] * 4
    mb_per_s = raw_bytes / 1e6 / measured["wall_s"]
    mb_per_cpu_s = raw_bytes / 1e6 / measured["cpu_s"]
    ratio = measured["peak_rss_delta_bytes"] / raw_bytes
    result = {
        "benchmark": "ingest",
        "recording": {
            "format": "BrainVision (pybv, IEEE float32)",
            "minutes": args.minutes,
            "n_channels": spec["n_channels"],
            "sfreq": spec["sfreq"],
            "n_samples": spec["n_samples"],
            "n_volumes": spec["n_volumes"],
            "eeg_file_bytes": eeg_file_bytes,
        },
        "pipeline": "hash inputs, header checks, read, notch 50/100 Hz, high-pass 0.5 Hz, "
        "resample to 250 Hz, average reference, float32 uV, validate, atomic Zarr write + "
        "read-back check",
        "channel_group": args.group,
        "raw_data_definition": "n_channels x n_samples x 4 bytes (float32)",
        "raw_data_bytes": raw_bytes,
        "wall_s": measured["wall_s"],
        "throughput_mb_per_s": mb_per_s,
        "cpu_s": measured["cpu_s"],
        "throughput_mb_per_cpu_s": mb_per_cpu_s,
        "throughput_note": "wall-clock MB/s is the headline; MB per CPU-second (this process, "
        "all threads) shows the cost when the machine is shared (see load_average)",
        "peak_rss_delta_bytes": measured["peak_rss_delta_bytes"],
        "peak_rss_delta_over_raw": ratio,
        "memory_definition": "peak RSS during ingest() minus RSS just before it (after imports), "
        "sampled every 5 ms in a fresh process",
        "getrusage_maxrss_bytes": measured["getrusage_maxrss_bytes"],
        "target_ratio": TARGET_RATIO,
        "pass": ratio < TARGET_RATIO,
        "input_write_s": write_s,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average": list(os.getloadavg()),
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"ingest: {args.minutes:g} min x {spec['n_channels']} ch @ {spec['sfreq']:g} Hz "
        f"({raw_bytes / 1e6:.0f} MB float32) in {measured['wall_s']:.1f} s = {mb_per_s:.1f} MB/s "
        f"({mb_per_cpu_s:.1f} MB per CPU-s); "
        f"peak RSS +{measured['peak_rss_delta_bytes'] / 1e9:.2f} GB = {ratio:.2f}x raw "
        f"(target < {TARGET_RATIO:g}x): {'PASS' if result['pass'] else 'FAIL'} -> {out}"
    )


if __name__ == "__main__":
    main()

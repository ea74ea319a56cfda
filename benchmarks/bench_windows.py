"""Window sampling speed: the store reader vs slicing the same windows from in-memory NumPy.

Store: 8 subjects x 10 min x 32 channels x 250 Hz (simulated), random 10 s windows, warm cache.
Target: the reader reaches at least 0.5x the in-memory rate. Both are measured side by side in
one run, interleaved, so machine noise hits both alike. Writes JSON (default
benchmarks/results/windows.json).

    python benchmarks/bench_windows.py [--out FILE] [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from eeg2bold.simulate import SimulationConfig
from eeg2bold.simulate.write import simulate_to_store
from eeg2bold.storage import open_dataset
from eeg2bold.storage.windows import WindowReader

WINDOW_S = 10.0
TARGET_RATIO = 0.5


def _rate(fn, items, seconds: float) -> float:
    """Items processed per second, looping over ``items`` for about ``seconds``."""
    done, start = 0, time.perf_counter()
    while True:
        for item in items:
            fn(item)
        done += len(items)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/windows.json")
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        config = SimulationConfig(subjects=8, minutes=10, channels=32, sfreq=250, seed=1)
        url = Path(tmp) / "bench.zarr"
        t0 = time.perf_counter()
        simulate_to_store(url, config, progress=False)
        build_s = time.perf_counter() - t0
        ds = open_dataset(url)
        reader = WindowReader(ds, window_s=WINDOW_S)
        keys = ds.runs()
        memory = {k: ds.read_run(k).eeg for k in keys}
        n = reader.n_window
        rng = np.random.default_rng(0)
        valid = {k: reader.valid_volumes(k) for k in keys}
        picks = []
        for _ in range(2000):
            k = keys[rng.integers(len(keys))]
            picks.append((k, int(rng.choice(valid[k]))))
        times = {k: ds.read_run(k).volume_times for k in keys}
        starts = {
            (k, int(v)): int(round(times[k][v] * reader.sfreq)) - n for k in keys for v in valid[k]
        }
        batches = []
        for _ in range(100):
            k = keys[rng.integers(len(keys))]
            batches.append((k, rng.choice(valid[k], size=args.batch)))

        def reader_one(item):
            reader.read(item[0], [item[1]])

        def numpy_one(item):
            s = starts[item]
            memory[item[0]][:, s : s + n].copy()

        def reader_batch(item):
            reader.read(item[0], item[1])

        def numpy_batch(item):
            k, vols = item
            arr = memory[k]
            np.stack([arr[:, starts[(k, int(v))] : starts[(k, int(v))] + n] for v in vols])

        for k in keys:  # warm: every run in the reader's cache
            reader.read(k, valid[k][:1])
        results: dict[str, list[float]] = {
            "reader_single": [],
            "numpy_single": [],
            "reader_batch": [],
            "numpy_batch": [],
        }
        for _ in range(3):  # interleaved repeats
            results["reader_single"].append(_rate(reader_one, picks, args.seconds))
            results["numpy_single"].append(_rate(numpy_one, picks, args.seconds))
            results["reader_batch"].append(args.batch * _rate(reader_batch, batches, args.seconds))
            results["numpy_batch"].append(args.batch * _rate(numpy_batch, batches, args.seconds))
        lazy = WindowReader(ds, window_s=WINDOW_S, lazy=True)
        lazy_rate = _rate(lambda it: lazy.read(it[0], [it[1]]), picks[:200], args.seconds)

    med = {k: float(np.median(v)) for k, v in results.items()}
    ratio_single = med["reader_single"] / med["numpy_single"]
    ratio_batch = med["reader_batch"] / med["numpy_batch"]
    out = {
        "benchmark": "window_sampling",
        "store": "8 subjects x 10 min x 32 ch x 250 Hz (simulated)",
        "window_s": WINDOW_S,
        "batch_size": args.batch,
        "store_build_s": build_s,
        "windows_per_s": med,
        "windows_per_s_all_repeats": results,
        "lazy_reader_single_windows_per_s": lazy_rate,
        "ratio_single": ratio_single,
        "ratio_batch": ratio_batch,
        "target_ratio": TARGET_RATIO,
        "passed": bool(min(ratio_single, ratio_batch) >= TARGET_RATIO),
        "platform": {"python": platform.python_version(), "machine": platform.machine()},
    }
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(
        f"windows/s single: reader {med['reader_single']:.0f} vs numpy {med['numpy_single']:.0f} "
        f"({ratio_single:.2f}x); batch of {args.batch}: reader {med['reader_batch']:.0f} vs numpy "
        f"{med['numpy_batch']:.0f} ({ratio_batch:.2f}x); lazy {lazy_rate:.0f}/s; target >= "
        f"{TARGET_RATIO}x -> {'PASS' if out['passed'] else 'FAIL'}  ({path})"
    )


if __name__ == "__main__":
    main()

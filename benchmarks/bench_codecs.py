"""EEG chunk codecs: size and decode rate, for the choice of the store's EEG codec.

Real EEG (the EDF and EEGLAB recordings in ``../shared/data/real/eeg``, tiled to a few
minutes) and a simulated run, each written as a Zarr v3 array in 4 s chunks under every codec,
then read back in the streaming path's pattern (stretches of 20 s and of 208 s, one read
each) through tensorstore and through zarr-python. Reported: stored size / raw size and MB/s
of decoded float32. The store writes EEG with ``EEG_COMPRESSOR`` (eeg2bold/storage/schema.py).

    python benchmarks/bench_codecs.py [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from results_json import write_result  # same folder

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real" / "eeg"
CODECS: dict[str, list[dict[str, Any]] | None] = {
    "none": None,
    "zstd (zarr's default)": [{"name": "zstd", "configuration": {"level": 0}}],
    "blosc lz4 shuffle (eeg2bold)": [
        {"name": "blosc", "configuration": {"cname": "lz4", "clevel": 5, "shuffle": "shuffle"}}
    ],
    "blosc lz4 bitshuffle": [
        {"name": "blosc", "configuration": {"cname": "lz4", "clevel": 5, "shuffle": "bitshuffle"}}
    ],
    "blosc zstd-1 shuffle": [
        {"name": "blosc", "configuration": {"cname": "zstd", "clevel": 1, "shuffle": "shuffle"}}
    ],
}


def sources(tmp: Path) -> dict[str, tuple[np.ndarray, float]]:
    """name -> (EEG [C, N] float32 µV, sfreq)."""
    import mne

    out = {}
    if REAL.is_dir():
        raw = mne.io.read_raw_edf(REAL / "eyes-closed-1.edf", preload=True, verbose=False)
        out["real EDF, 31 ch, 1000 Hz"] = (raw.get_data() * 1e6, raw.info["sfreq"])
        raw = mne.io.read_raw_eeglab(REAL / "eeglab_data.set", preload=True, verbose=False)
        out["real EEGLAB, 32 ch, 128 Hz"] = (raw.get_data() * 1e6, raw.info["sfreq"])
    else:
        print(f"note: {REAL} is absent; simulated EEG only", file=sys.stderr)
    from eeg2bold.simulate import SimulationConfig
    from eeg2bold.simulate.write import simulate_to_store
    from eeg2bold.storage import open_dataset

    path = tmp / "sim.zarr"
    simulate_to_store(path, SimulationConfig(subjects=1, minutes=10, channels=32), progress=False)
    dataset = open_dataset(str(path))
    eeg = dataset.array(dataset.runs()[0], "eeg")[...]
    out["simulated, 32 ch, 100 Hz"] = (eeg, dataset.info.eeg.sfreq)
    minutes = 8
    for name, (x, sfreq) in out.items():  # a few minutes each: stable rates
        reps = max(1, int(np.ceil(minutes * 60 * sfreq / x.shape[1])))
        out[name] = (np.ascontiguousarray(np.tile(x, (1, reps)), dtype=np.float32), sfreq)
    return out


def rate(read: Any, n: int, stretch: int, nbytes: int) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for a in range(0, n, stretch):
            np.asarray(read(a, min(n, a + stretch)))
        best = min(best, time.perf_counter() - start)
    return nbytes / best / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/codecs.json")
    args = parser.parse_args()
    import tensorstore as ts
    import zarr

    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for source, (x, sfreq) in sources(tmp).items():
            chunk = int(round(4.0 * sfreq))
            for codec, compressors in CODECS.items():
                path = tmp / f"{len(rows)}.zarr"
                array = zarr.create_array(
                    str(path),
                    shape=x.shape,
                    dtype="float32",
                    chunks=(x.shape[0], chunk),
                    compressors=compressors,
                    zarr_format=3,
                )
                array[...] = x
                size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
                spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path)}}
                store = ts.open(spec, read=True).result()
                reopened = zarr.open_array(str(path), mode="r")
                assert np.array_equal(np.asarray(store[...].read().result()), x)
                row = {"source": source, "codec": codec, "size_ratio": size / x.nbytes}
                for label, seconds in (("20s", 20), ("208s", 208)):
                    n = int(seconds * sfreq)
                    row[f"tensorstore_mb_s_{label}"] = rate(
                        lambda a, b, s=store: s[:, a:b].read().result(), x.shape[1], n, x.nbytes
                    )
                    row[f"zarr_mb_s_{label}"] = rate(
                        lambda a, b, z=reopened: z[:, a:b], x.shape[1], n, x.nbytes
                    )
                rows.append(row)
                print(
                    f"{source:28s} {codec:30s} size {row['size_ratio']:5.3f}  tensorstore "
                    f"{row['tensorstore_mb_s_20s']:5.0f} / {row['tensorstore_mb_s_208s']:5.0f} "
                    f"MB/s  zarr {row['zarr_mb_s_20s']:4.0f} / {row['zarr_mb_s_208s']:4.0f} MB/s "
                    "(20 s / 208 s reads)",
                    file=sys.stderr,
                    flush=True,
                )
    write_result({"benchmark": "codecs", "rows": rows}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

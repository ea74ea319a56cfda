"""One copy of the data per node: fold actors map their node's runs from Ray's object store."""

from __future__ import annotations

import os

import numpy as np
import pytest

from eeg2bold.storage import RunKey


def _mapping(address: int) -> tuple[str, str, int]:
    """(permissions, device:inode of the file, offset into it) of a mapped address."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            if lo <= address < hi:
                return fields[1], f"{fields[3]}:{fields[4]}", int(fields[2], 16) + address - lo
    raise AssertionError("address not mapped")


def test_the_fold_actors_of_a_node_read_one_shared_copy_of_each_run(ray_cluster, tiny_store):
    """Two fold actors ask for the same run: the node's store reads it once, and both map the
    same bytes of the same shared-memory file, read-only (no copy per actor). Without a store
    an actor reads the run itself."""
    import ray

    from eeg2bold.launch.tune import fold_actor
    from eeg2bold.launch.tune import runtime as ray_runtime
    from eeg2bold.storage import open_dataset

    @ray.remote(num_cpus=0)
    class Probe:
        def __init__(self) -> None:
            from eeg2bold.training.engine import RunCache

            self.cache = RunCache(read=fold_actor.read_from_node)

        def read(self, url: str, subject: str, run: str):
            run_data = self.cache.reader(open_dataset(url))(RunKey(subject, run))
            eeg = run_data.eeg
            return {
                "pid": os.getpid(),
                "writeable": bool(eeg.flags.writeable),
                "map": _mapping(eeg.ctypes.data),
                "sum": float(np.asarray(eeg, dtype=np.float64).sum()),
            }

    url = str(tiny_store)
    stores = ray_runtime.start_run_stores()
    try:
        probes = [Probe.remote() for _ in range(2)]
        first, second = ray.get([p.read.remote(url, "sub-01", "run-1") for p in probes])
        assert ray.get(stores[0].stats.remote()) == {"reads": 1, "runs": 1}
        assert first["pid"] != second["pid"]
        assert not first["writeable"] and not second["writeable"]
        perms, inode, offset = first["map"]
        assert perms.endswith("s"), perms  # a shared mapping
        assert second["map"] == (perms, inode, offset)  # the same bytes of the same file
        expected = open_dataset(url).read_run(RunKey("sub-01", "run-1")).eeg
        assert first["sum"] == pytest.approx(float(expected.astype(np.float64).sum()))
    finally:
        for store in stores:
            ray.kill(store)
    # no store on the node: the actor reads the run itself (its own, writeable copy)
    alone = ray.get(Probe.remote().read.remote(url, "sub-02", "run-1"))
    assert alone["writeable"]

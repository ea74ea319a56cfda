"""Atomic publication: killed writers leave no visible run, concurrent writers do not collide."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from eeg2bold.storage import RunKey, create_dataset, open_dataset

# The child builds its runs from a seed, so the parent can rebuild the same content.
WRITER = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    from eeg2bold.storage import BOLDInfo, DatasetInfo, EEGInfo, RunData, create_dataset
    from eeg2bold.storage.location import Location

    url, mode, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    runs = [a.split(":") for a in sys.argv[4:]]
    info = DatasetInfo(
        name="atomic",
        eeg=EEGInfo(sfreq=250.0, channels=tuple(f"E{i}" for i in range(32))),
        bold=BOLDInfo(tr=2.0, rois=("a", "b", "c")),
    )

    def make(subject, run, seed):
        rng = np.random.default_rng(int(seed))
        n_vol = int((seconds - 1) // 2)
        return RunData(
            subject=subject,
            run=run,
            eeg=rng.normal(size=(32, int(seconds * 250))).astype("float32"),
            bold=rng.normal(size=(3, n_vol)).astype("float32"),
            volume_times=1.0 + 2.0 * np.arange(n_vol),
        )

    if mode == "die-before-publish":
        publish = Location.publish

        def die_before_run(self, tmp, final):
            if len(final) == 2:  # a run, not its subject group
                os.kill(os.getpid(), signal.SIGKILL)
            publish(self, tmp, final)

        Location.publish = die_before_run
    ds = create_dataset(url, info)
    for subject, run, seed in runs:
        data = make(subject, run, seed)
        print("start", flush=True)
        print(ds.write_run(data), flush=True)
    """
)


@pytest.fixture
def writer(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)

    started = []

    def start(url, mode, seconds, *runs):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(url), mode, str(seconds), *runs],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:  # a test that failed or timed out leaves no writer running
        proc.kill()
        proc.wait(timeout=60)


def test_writer_killed_before_publish_leaves_no_run(tmp_path, writer):
    url = tmp_path / "d.zarr"
    proc = writer(url, "die-before-publish", 30, "sub-01:run-1:1")
    proc.communicate(timeout=120)
    assert proc.returncode == -9
    ds = open_dataset(url)
    assert ds.runs() == []
    assert len(ds.stale_temporaries()) == 1  # the data was written, just never published

    ok = writer(url, "normal", 30, "sub-01:run-1:1")
    out, err = ok.communicate(timeout=120)
    assert ok.returncode == 0, err
    assert out.split() == ["start", "written"]
    assert ds.runs() == [RunKey("sub-01", "run-1")]
    assert ds.verify(RunKey("sub-01", "run-1")) == []


@pytest.mark.slow
def test_writer_killed_at_any_moment_is_all_or_nothing(tmp_path, writer):
    url = tmp_path / "d.zarr"
    outcomes = set()
    for i, delay in enumerate([0.0, 0.05, 0.15, 0.3, 0.6, 1.2]):
        proc = writer(url, "normal", 600, f"sub-{i:02d}:run-1:{i}")
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "start"
        time.sleep(delay)
        proc.kill()
        proc.communicate(timeout=60)
        key = RunKey(f"sub-{i:02d}", "run-1")
        ds = open_dataset(url)
        if key in ds.runs():
            assert ds.verify(key) == []
            outcomes.add("complete")
        else:
            outcomes.add("absent")
    assert "absent" in outcomes  # at least one kill landed mid-write


def test_concurrent_writers_to_different_runs(tmp_path, writer):
    url = tmp_path / "d.zarr"
    create_dataset(url, _info_like_writer())
    plans = [
        ["sub-01:run-1:1", "sub-02:run-1:2"],
        ["sub-01:run-2:3", "sub-02:run-2:4"],
        ["sub-01:run-3:5", "sub-03:run-1:6"],
        ["sub-03:run-2:7", "sub-01:run-4:8"],
    ]
    procs = [writer(url, "normal", 30, *plan) for plan in plans]
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
        assert out.split().count("written") == 2
    ds = open_dataset(url)
    expected = sorted(RunKey(*r.split(":")[:2]) for plan in plans for r in plan)
    assert ds.runs() == expected
    for key in expected:
        assert ds.verify(key) == []
    assert ds.stale_temporaries() == []


def test_concurrent_writers_of_the_same_run_agree(tmp_path, writer):
    url = tmp_path / "d.zarr"
    create_dataset(url, _info_like_writer())
    procs = [writer(url, "normal", 60, "sub-01:run-1:42") for _ in range(3)]
    statuses = []
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
        statuses.append(out.split()[-1])
    assert statuses.count("written") >= 1
    assert set(statuses) <= {"written", "unchanged"}
    ds = open_dataset(url)
    assert ds.runs() == [RunKey("sub-01", "run-1")]
    assert ds.verify(RunKey("sub-01", "run-1")) == []
    rng = np.random.default_rng(42)
    np.testing.assert_array_equal(
        ds.read_run(RunKey("sub-01", "run-1")).eeg,
        rng.normal(size=(32, 60 * 250)).astype("float32"),
    )


def _info_like_writer():
    from eeg2bold.storage import BOLDInfo, DatasetInfo, EEGInfo

    return DatasetInfo(
        name="atomic",
        eeg=EEGInfo(sfreq=250.0, channels=tuple(f"E{i}" for i in range(32))),
        bold=BOLDInfo(tr=2.0, rois=("a", "b", "c")),
    )

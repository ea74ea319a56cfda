"""Atomic publication: killed writers leave no visible run, concurrent writers do not collide."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest
import zarr

from eeg2bold.storage import RunKey, create_dataset, open_dataset
from eeg2bold.storage.location import TMP_DIR

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
    # the next write removed the crashed writer's leftovers: nothing beside the runs
    assert ds.stale_temporaries() == [] and not (url / TMP_DIR).exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # zarr warns of folders that are not zarr nodes
        assert sorted(zarr.open_group(url, mode="r").group_keys()) == ["sub-01"]


def test_only_crashed_writers_temporaries_are_removed(tmp_path, capsys):
    """On this host a temporary is stale when its writer's process is gone; of another host
    (or an older name) when untouched for a day. A live writer's is never touched, by a
    write or by `inspect --repair`."""
    from eeg2bold.cli import main
    from eeg2bold.storage.location import temporary_name

    url = tmp_path / "d.zarr"
    create_dataset(url, _info_like_writer())
    host = temporary_name().split("~")[0]
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    names = {
        "live": f"{host}~{os.getpid()}~aaaa",  # this test process: alive
        "dead": f"{host}~{dead}~bbbb",
        "foreign-recent": "otherhost~123~cccc",
        "foreign-old": "otherhost~456~dddd",
        "older-name": "0123456789abcdef",  # before names said who wrote them; old
    }
    for name in names.values():
        (url / TMP_DIR / name / "eeg").mkdir(parents=True)
        (url / TMP_DIR / name / "eeg" / "c0").write_bytes(b"x" * 10)
    old = time.time() - 2 * 86400
    for key in ("foreign-old", "older-name"):
        for path in [url / TMP_DIR / names[key], *(url / TMP_DIR / names[key]).rglob("*")]:
            os.utime(path, (old, old))
    ds = open_dataset(url)
    expected_stale = sorted(names[k] for k in ("dead", "foreign-old", "older-name"))
    assert sorted(ds.stale_temporaries()) == expected_stale
    assert sorted(ds.live_temporaries()) == sorted([names["live"], names["foreign-recent"]])
    assert main(["inspect", str(url), "--repair"]) == 0
    captured = capsys.readouterr()
    assert "repair: removed 3 temporary write(s) of crashed writers" in captured.err
    assert "2 write(s) in progress" in captured.out
    left = sorted(p.name for p in (url / TMP_DIR).iterdir())
    assert left == sorted([names["live"], names["foreign-recent"]])
    assert (url / TMP_DIR / names["live"] / "eeg" / "c0").read_bytes() == b"x" * 10


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


def test_writers_of_one_run_with_different_content_leave_the_winners_and_name_the_race(
    tmp_path, writer
):
    """Issue 26, item 9: the losers are told another writer won (or got there first), never
    that the storage failed to keep their data; the run is the winner's, whole."""
    url = tmp_path / "d.zarr"
    create_dataset(url, _info_like_writer())
    seeds = [11, 12, 13]
    procs = [writer(url, "normal", 60, f"sub-01:run-1:{seed}") for seed in seeds]
    winners, told = [], []
    for seed, p in zip(seeds, procs, strict=True):
        out, err = p.communicate(timeout=180)
        assert "read-back" not in err, err
        if p.returncode == 0:
            assert out.split()[-1] == "written"
            winners.append(seed)
        else:
            told.append(err.strip().splitlines()[-1])
    assert len(winners) == 1, (winners, told)
    for line in told:
        assert (
            "was written concurrently with different content" in line
            or "already exists with different content" in line
        ), line
    ds = open_dataset(url)
    assert ds.verify(RunKey("sub-01", "run-1")) == []
    rng = np.random.default_rng(winners[0])
    np.testing.assert_array_equal(
        ds.read_run(RunKey("sub-01", "run-1")).eeg,
        rng.normal(size=(32, 60 * 250)).astype("float32"),
    )

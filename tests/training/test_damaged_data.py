"""A damaged store (a missing chunk reads as NaN) is named — run, array, and the command that
checks it — instead of surfacing as a linear-algebra error or a NaN loss blamed on the lr."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

from eeg2bold.cli import main


@pytest.fixture
def damaged_store(sim_store, tmp_path):
    store = tmp_path / "damaged.zarr"
    shutil.copytree(sim_store, store)
    (store / "sub-02" / "run-1" / "eeg" / "c" / "0" / "3").unlink()  # one 4-s chunk gone
    return store


@pytest.mark.parametrize("model", ["ridge", "tiny"])
def test_training_on_a_missing_chunk_names_the_run(
    damaged_store, tmp_path, capsys, model, tiny_model
):
    code = main(
        ["train", str(damaged_store), "--model", model, "--protocol", "loso", "-q"]
        + ["--set", "window_s=8", "--set", "epochs=1", "--out", str(tmp_path / "run")]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "run sub-02/run-1: eeg holds" in err and "non-finite" in err
    assert f"eeg2bold inspect {damaged_store} --verify" in err
    assert "LinAlgError" not in err and "lr" not in err


@pytest.fixture
def undecodable_store(sim_store, tmp_path):
    """One chunk's bytes replaced by random ones of the same length (blosc cannot decode)."""
    store = tmp_path / "undecodable.zarr"
    shutil.copytree(sim_store, store)
    chunk = store / "sub-02" / "run-1" / "eeg" / "c" / "0" / "3"
    noise = np.random.default_rng(0).integers(0, 256, chunk.stat().st_size, dtype=np.uint8)
    chunk.write_bytes(noise.tobytes())
    return store


@pytest.mark.parametrize("path", ["memory", "stream"])
def test_an_undecodable_chunk_names_the_run_in_one_line(
    undecodable_store, tmp_path, capsys, monkeypatch, path
):
    if path == "stream":
        monkeypatch.setenv("EEG2BOLD_MEMORY_BUDGET_MB", "1")  # the streaming reader
    code = main(
        ["train", str(undecodable_store), "--model", "ridge", "--protocol", "loso", "-q"]
        + ["--set", "window_s=8", "--out", str(tmp_path / "run")]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "run sub-02/run-1:" in err and "cannot be decoded (a damaged chunk" in err, err
    assert "internal error" not in err and "inspect --verify" in err


def test_verify_gives_an_undecodable_run_its_verdict_without_noise(undecodable_store):
    """In a process of its own: asyncio's report of the reads left pending comes at exit."""
    from eeg2bold.launch.tune.trial import failure_kind
    from eeg2bold.storage.store import undecodable

    done = subprocess.run(
        [sys.executable, "-m", "eeg2bold.cli", "inspect", str(undecodable_store), "--verify"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    lines = (done.stdout + done.stderr).strip().splitlines()
    (problem,) = [line for line in lines if "PROBLEM" in line]
    assert problem.startswith("sub-02") and "cannot be decoded" in problem
    assert sum("verified" in line for line in lines) >= 1  # the other runs' verdicts
    assert not any("Task" in line or "Traceback" in line for line in lines), lines
    # in a sweep, a damaged chunk fails its trial as data, not as a bug
    assert failure_kind(undecodable("x", "eeg", RuntimeError("blosc"))) == "data"

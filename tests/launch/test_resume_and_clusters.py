"""Killed drivers resume, Optuna storages (SQLite, journal, PostgreSQL) work for real, and a
two-node Ray cluster survives losing a node."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest

from eeg2bold.launch.optuna_storage import optuna_storage
from eeg2bold.study.queries import load_sweep, trials_table
from eeg2bold.study.results import read_results

optuna.logging.set_verbosity(optuna.logging.WARNING)
EEG2BOLD = [sys.executable, "-m", "eeg2bold.cli"]


def _states(folder) -> dict[str, list[str]]:
    sweep = load_sweep(folder)
    storage = optuna_storage(sweep.optuna_url)
    out = {}
    for arm in sweep.arms():
        study = optuna.load_study(study_name=arm["study_name"], storage=storage)
        out[arm["study_name"]] = [t.state.name for t in study.trials]
    return out


def _start(args, **kw) -> subprocess.Popen[str]:
    """A child in its own process group, so killing it kills everything it started."""
    return subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        **kw,
    )


def _wait_for(proc: subprocess.Popen[str], needle: str, timeout: float) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if needle in line:
            return lines
    raise AssertionError(f"{needle!r} never appeared:\n{''.join(lines[-40:])}")


def _kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)


@pytest.mark.slow
def test_killed_driver_resumes_without_lost_or_duplicate_trials(write_study, tmp_path):
    path = write_study(
        "resume",
        budget={"num_samples": 4},
        max_concurrent_trials=1,
        scheduler={"type": "fifo", "max_epochs": 2},
    )
    first = _start([*EEG2BOLD, "sweep", str(path), "--num-cpus", "2"])
    try:
        _wait_for(first, "finished (1/4)", timeout=600)
    finally:
        _kill_group(first)  # the driver and the Ray instance it started, at once
    folder = tmp_path / "sweep-resume"
    before = _states(folder)
    assert sum(len(v) for v in before.values()) < 4 or "RUNNING" in str(before)

    second = subprocess.run(
        [*EEG2BOLD, "sweep", str(path), "--resume", "--num-cpus", "2"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert second.returncode == 0, second.stdout + second.stderr
    (states,) = _states(folder).values()
    assert len(states) == 4  # exactly the requested number of trials
    assert "RUNNING" not in states
    assert states.count("COMPLETE") == 4
    table = trials_table(load_sweep(folder))
    assert not table["failure_reason"].astype(bool).any()
    final = read_results(folder / "table")
    final = final[final["final"]]
    per_trial = final.groupby(["trial", "subject", "roi", "split"]).size()
    assert (per_trial == 1).all()  # no trial wrote its final scores twice
    assert final["trial"].nunique() == 4


def test_journal_file_storage(ray_cluster, write_study, tmp_path):
    journal = tmp_path / "journal" / "optuna.log"
    path = write_study(
        "journal",
        storage={
            "results": str(tmp_path / "sweep-journal"),
            "optuna": f"journal://{journal}",
        },
    )
    from eeg2bold.cli import main

    assert main(["sweep", str(path)]) == 0
    assert journal.exists()
    (states,) = _states(tmp_path / "sweep-journal").values()
    assert states == ["COMPLETE", "COMPLETE"]


def test_two_sweeps_write_to_one_postgresql_storage_at_once(
    ray_cluster, write_study, tmp_path, monkeypatch, postgres
):
    database = postgres.database("sweeps")  # empty: both sweeps race to create the schema
    url = postgres.url(database, user_info="postgres:${EEG2BOLD_TEST_PGPASSWORD}")
    password = "pw-" + uuid.uuid4().hex  # trust auth ignores it; it must never be printed
    monkeypatch.setenv("EEG2BOLD_TEST_PGPASSWORD", password)
    paths = [
        write_study(
            f"pg{i}",
            storage={"results": str(tmp_path / f"sweep-pg{i}"), "optuna": url},
            budget={"num_samples": 2},
        )
        for i in range(2)
    ]
    procs = [
        _start([*EEG2BOLD, "sweep", str(p), "--address", ray_cluster["address"]], env=os.environ)
        for p in paths
    ]
    outputs = []
    try:
        for proc in procs:
            out, _ = proc.communicate(timeout=900)
            outputs.append(out)
            assert proc.returncode == 0, out
    finally:
        for proc in procs:
            _kill_group(proc)
    for out in outputs:
        assert password not in out
        assert f"postgresql://***@{postgres.url(database).split('@', 1)[1]}" in out
    expected = set()
    for i in range(2):
        ((name, states),) = _states(tmp_path / f"sweep-pg{i}").items()
        expected.add(name)
        assert states == ["COMPLETE", "COMPLETE"]
    storage = optuna_storage(postgres.url(database))
    # exactly the two sweeps' studies, each with its own two trials: none appended to another
    assert set(optuna.get_all_study_names(storage=storage)) == expected
    assert len(expected) == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive_nodes(address: str) -> int:
    code = (
        f"import ray; ray.init(address={address!r}, logging_level='ERROR'); "
        "print(sum(n['Alive'] for n in ray.nodes()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    return int(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else 0


@pytest.mark.slow
def test_two_node_cluster_survives_losing_a_node(write_study, tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "token")  # the local token, shared by both nodes
    ray_bin = str(Path(sys.executable).parent / "ray")
    port = _free_port()
    head = _start(
        [ray_bin, "start", "--head", f"--port={port}", "--num-cpus=1", "--block"]
        + ["--include-dashboard=false"]
    )
    worker = None
    try:
        address = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while (
            subprocess.run(
                [ray_bin, "status", f"--address={address}"], capture_output=True
            ).returncode
            != 0
        ):
            assert time.monotonic() < deadline, "head node did not start"
            time.sleep(1)
        worker = _start([ray_bin, "start", f"--address={address}", "--num-cpus=2", "--block"])
        path = write_study(
            "twonode",
            budget={"num_samples": 3},
            max_concurrent_trials=3,
            scheduler={"type": "fifo", "max_epochs": 3},
            failure={"max_failures": 3},
            storage={
                "results": str(tmp_path / "sweep-twonode"),
                "optuna": f"journal://{tmp_path / 'twonode.log'}",
            },
        )
        deadline = time.monotonic() + 120
        while _alive_nodes(address) < 2:  # wait for the worker to join
            assert time.monotonic() < deadline, "worker node did not join"
            time.sleep(1)
        sweep = _start([*EEG2BOLD, "sweep", str(path), "--address", address])
        _wait_for(sweep, "epoch 1:", timeout=600)
        _kill_group(worker)  # the second node dies mid-sweep
        worker = None
        out, _ = sweep.communicate(timeout=900)
        assert sweep.returncode == 0, out
        (states,) = _states(tmp_path / "sweep-twonode").values()
        assert states == ["COMPLETE"] * 3  # every trial complete, retried where needed
    finally:
        if worker is not None:
            _kill_group(worker)
        _kill_group(head)

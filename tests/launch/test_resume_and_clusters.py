"""Killed drivers resume, Optuna storages (SQLite, journal, PostgreSQL) work for real, and a
two-node Ray cluster survives losing a node."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import optuna
import pandas as pd
import pytest

from eeg2bold.run_folder import ROW_KEY, RunFolder
from eeg2bold.storage.optuna_db import optuna_storage
from eeg2bold.study.queries import load_sweep, trials_table

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


class _Lines:
    """A child's output read by a thread, so waiting for a line can time out (a plain
    ``readline`` blocks forever on a stuck child)."""

    def __init__(self, proc: subprocess.Popen[str]):
        assert proc.stdout is not None
        self.proc, self.seen = proc, []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(proc.stdout,), daemon=True).start()

    def _read(self, stream) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
            if match := re.search(pattern, line):
                return match
        raise AssertionError(f"{pattern!r} never appeared:\n{''.join(self.seen[-40:])}")

    def rest(self, timeout: float) -> str:
        """Everything the child prints until it exits (killed on timeout)."""
        try:
            self.proc.wait(timeout=timeout)
        finally:
            _kill_group(self.proc)
        out = []
        while (line := self._queue.get(timeout=30)) is not None:
            out.append(line)
        return "".join(self.seen + out)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)


EPOCHS = 8


@pytest.mark.slow
def test_killed_driver_resumes_without_lost_or_duplicate_trials(
    ray_cluster, write_study, tmp_path, planted_model, plugin_env
):
    """SIGKILL the driver while two arms' trials run at once (within and LOSO, one Tuner),
    each past its first of eight epochs; `--resume` finishes those very trials from their
    saved state (after the last epoch they reported, never from epoch 1), runs the rest, and
    no trial, Optuna trial or results row appears twice."""
    path = write_study(
        "resume",
        protocols=["within", "loso"],
        models=["planted"],
        budget={"num_samples": 2},
        max_concurrent_trials=2,
        search={"data.window_s": 10.0, "train.steps_per_epoch": 20, "train.patience": 0},
        # eight epochs: the arm whose trial starts first must not finish before the other's
        # reports its first (with four, one run did so on 2026-12-07)
        scheduler={"type": "fifo", "max_epochs": EPOCHS},
    )
    address = ["--address", ray_cluster["address"]]  # the suite's one Ray; only drivers die
    first = _start([*EEG2BOLD, "sweep", str(path), *address])
    killed: dict[str, str] = {}
    try:
        lines = _Lines(first)
        while len(killed) < 2:  # both arms have a trial past its first epoch
            match = lines.wait_for(r"\[(\S+)-planted\] trial (\S+) epoch 1:", timeout=600)
            killed[match.group(1)] = match.group(2)
    finally:
        _kill_group(first)  # mid-trial: epochs still to run
    assert set(killed) == {"within", "loso"}
    # the trial that started first may have reported more epochs before the kill landed
    said = lines.rest(timeout=60)
    reported = {
        trial: max(int(e) for e in re.findall(rf"trial {trial} epoch (\d+):", said))
        for trial in killed.values()
    }
    folder = RunFolder(tmp_path / "sweep-resume")
    for trial in killed.values():
        assert folder.load_state(trial, 0) is not None, "the trial saved no state before the kill"
        assert folder.done(trial, 0) is None, "the trial finished before the kill landed"
    before = _states(folder.url)
    assert len(before) == 2 and all("RUNNING" in states for states in before.values())

    second = _start([*EEG2BOLD, "sweep", str(path), "--resume", *address])
    out = _Lines(second).rest(timeout=900)
    assert second.returncode == 0, out
    # Ray's output (e.g. a worker's `SystemExit` traceback) goes to the log, not the console
    assert "Traceback" not in out and "SystemExit" not in out, out
    for trial in killed.values():
        resumed_epochs = re.findall(rf"trial {re.escape(trial)} epoch (\d+):", out)
        # continued from its saved state (at least the last epoch it reported), not restarted
        assert resumed_epochs and int(resumed_epochs[0]) >= reported[trial] + 1 >= 2, out
    # exactly the requested trials per arm, none RUNNING
    assert list(_states(folder.url).values()) == [["COMPLETE"] * 2] * 2
    table = trials_table(load_sweep(folder.url))
    assert not table["failure_reason"].astype(bool).any()
    assert set(killed.values()) <= set(table["trial"])
    # the defaults are trial 0 of each arm, and queued once, across the kill and --resume
    for _, arm in table.groupby("protocol"):
        assert list(arm.sort_values("number")["origin"]) == ["defaults", "sampled"]
    results = folder.results()
    assert not results.duplicated(ROW_KEY).any()
    raw = pd.concat([pd.read_parquet(p) for p in (tmp_path / "sweep-resume" / "table").glob("*")])
    assert not raw.duplicated(ROW_KEY).any()  # unique on disk too, not only after reading
    final = results[results["final"]]
    assert final["trial"].nunique() == 4
    per_trial = final.groupby(["trial", "subject", "roi", "split"]).size()
    assert (per_trial == 1).all()
    for trial in killed.values():
        curve = results[(results["trial"] == trial) & ~results["final"]]
        assert sorted(set(curve["epoch"])) == list(range(1, EPOCHS + 1))


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
    ray_cluster, write_study, tmp_path, monkeypatch, postgres, ray_temp_dir
):
    """Two sweeps start together on an empty database (both create the schema), each gets
    its own study, and the database password reaches no file: not the sweep folders, not the
    report, not Ray's pickles or session folder."""
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
    from eeg2bold.cli import main

    report = tmp_path / "report"
    args = ["report", str(tmp_path / "sweep-pg0"), "-o", str(report / "r.html")]
    assert main([*args, "--json", str(report / "r.json"), "--n-boot", "50", "-q"]) == 0
    assert "${EEG2BOLD_TEST_PGPASSWORD}" in (tmp_path / "sweep-pg0" / "sweep.json").read_text()
    leaks = [p for p in _files(tmp_path, ray_temp_dir) if password.encode() in p.read_bytes()]
    assert not leaks, leaks
    assert len(list(_files(tmp_path / "sweep-pg0" / "ray"))) > 5  # Tune's pickles were read


def _files(*roots: Path):
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink() and path.stat().st_size < 200e6:
                yield path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_with_cpus(address: str, cpus: float) -> str:
    """The id of the alive node offering ``cpus`` CPUs (the worker, not the head)."""
    code = (
        f"import ray; ray.init(address={address!r}, logging_level='ERROR'); "
        f"print([n['NodeID'] for n in ray.nodes() if n['Alive'] and "
        f"n['Resources'].get('CPU') == {cpus}][0])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def _alive_nodes(address: str) -> int:
    code = (
        f"import ray; ray.init(address={address!r}, logging_level='ERROR'); "
        "print(sum(n['Alive'] for n in ray.nodes()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    return int(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else 0


@pytest.mark.slow
def test_two_node_cluster_survives_losing_a_node(write_study, tmp_path, monkeypatch, plugin_env):
    """A worker node dies while trials run on it: they resume from their saved state on
    another node, the user is told so in one line per trial (not Ray's dumps), and every
    trial completes. The head offers no CPU, so the trials start on worker A; A is killed
    after a trial's first epoch and worker B joins: the trials can only resume there."""
    ray_bin = str(Path(sys.executable).parent / "ray")
    port = _free_port()
    head = _start(
        [ray_bin, "start", "--head", f"--port={port}", "--num-cpus=0", "--block"]
        + ["--include-dashboard=false"]
    )
    workers: list[subprocess.Popen[str]] = []
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
        worker_a = [ray_bin, "start", f"--address={address}", "--num-cpus=2", "--block"]
        workers.append(_start(worker_a))
        path = write_study(
            "twonode",
            models=["planted"],
            search={"data.window_s": 10.0, "train.steps_per_epoch": 150, "train.patience": 0},
            budget={"num_samples": 2},
            max_concurrent_trials=2,
            scheduler={"type": "fifo", "max_epochs": 3},
            failure={"max_failures": 3},
            storage={
                "results": str(tmp_path / "sweep-twonode"),
                "optuna": f"journal://{tmp_path / 'twonode.log'}",
            },
        )
        deadline = time.monotonic() + 120
        while _alive_nodes(address) < 2:  # wait for worker A to join
            assert time.monotonic() < deadline, "worker node did not join"
            time.sleep(1)
        lost_node = _node_with_cpus(address, 2.0)
        sweep = _start([*EEG2BOLD, "sweep", str(path), "--address", address])
        lines = _Lines(sweep)
        first = lines.wait_for(r"trial (\S+) epoch 1:", timeout=600).group(1)
        _kill_group(workers.pop())  # worker A dies under trials with saved state
        workers.append(
            _start([ray_bin, "start", f"--address={address}", "--num-cpus=2"] + ["--block"])
        )
        out = lines.rest(timeout=900)
        assert sweep.returncode == 0, out
        (states,) = _states(tmp_path / "sweep-twonode").values()
        assert states == ["COMPLETE"] * 2  # every trial complete, retried where needed
        told = re.findall(
            r"trial (\S+) lost its node (\w{8}) \(\S+\); (resumed from the epoch (\d) "
            r"checkpoint|restarted from the beginning \(it had finished no epoch\)) on another "
            r"node (\w{8}) \(\S+\)",
            out,
        )
        retried = {t[0] for t in told}
        assert first in retried, out  # one line per retried trial: the lost and the new node
        assert all(t[1] == lost_node[:8] and t[4] != lost_node[:8] for t in told), out
        resumed = {t[0]: t[3] for t in told}
        assert resumed[first] in ("1", "2", "3"), out  # from its saved epoch, not from scratch
        assert len(re.findall(r"lost its (node|worker)", out)) == 2  # each told once
        assert re.search(
            rf"\(2 trial\(s\) retried, each from its last epoch checkpoint; {len(told)} of them "
            "had lost their node\\)",
            out,
        ), out
        # Ray's raw dumps went to the log file, not the console
        assert "Traceback" not in out and "raylet" not in out and "gcs_server" not in out, out
        log = tmp_path / "sweep-twonode" / "logs" / "ray.log"
        assert "Trial task failed" in log.read_text(), "Tune's traceback is not in the log"
        assert f"are in {log}" in out
        # the retries are counted in the trials table (from Optuna) and the report
        trials = trials_table(load_sweep(tmp_path / "sweep-twonode")).set_index("trial")
        assert trials["retries"].tolist() == [1, 1]
        assert trials.loc[first, "lost_nodes"] == 1
        from eeg2bold.cli import main

        report = tmp_path / "report"
        args = ["report", str(tmp_path / "sweep-twonode"), "-o", str(report / "r.html")]
        assert main([*args, "--json", str(report / "r.json"), "--n-boot", "50", "-q"]) == 0
        (arm,) = json.loads((report / "r.json").read_text())["sweep"]["arms"]
        assert (arm["n_retries"], arm["n_lost_nodes"]) == (2, len(told))
        assert f"2 retried ({len(told)} after losing their node" in (report / "r.html").read_text()
        results = RunFolder(tmp_path / "sweep-twonode").results()
        assert not results.duplicated(ROW_KEY).any()
        assert set(results[results["final"]]["trial"]) >= retried
    finally:
        for worker in workers:
            _kill_group(worker)
        _kill_group(head)

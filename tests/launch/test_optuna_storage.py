"""Optuna storages open safely when several processes create the schema at once, and keep
credentials out of their pickles."""

from __future__ import annotations

import pickle
import subprocess
import sys
import time
import uuid

import optuna
import pytest

from eeg2bold.storage.optuna_db import optuna_storage

# Each child waits for the same wall-clock moment, then opens the storage and uses it: the
# table creation of all of them overlaps (without the lock: UniqueViolation on pg_type).
_CHILD = """
import sys, time
import optuna
from eeg2bold.storage.optuna_db import optuna_storage
go = float(sys.argv[2])
while time.time() < go:
    time.sleep(0.001)
storage = optuna_storage(sys.argv[1])
study = optuna.create_study(storage=storage, study_name=sys.argv[3])
study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
print("ok", len(study.trials))
"""


def _open_together(url: str, n: int) -> list[subprocess.CompletedProcess[str]]:
    go = time.time() + 4.0  # every child has imported Optuna by then
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, url, str(go), f"study-{i}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(n)
    ]
    out = []
    for proc in procs:
        try:
            stdout, stderr = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
        out.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    return out


@pytest.mark.parametrize("attempt", [1, 2])  # without the lock, each fails about 2 times in 3
def test_processes_create_the_postgresql_schema_at_once(postgres, attempt):
    url = postgres.url(postgres.database("race"))  # empty: no tables yet
    results = _open_together(url, 4)
    for r in results:
        assert r.returncode == 0, r.stderr[-2000:]
        assert r.stdout.strip() == "ok 2"
    studies = optuna.get_all_study_names(storage=optuna_storage(url))
    assert sorted(studies) == [f"study-{i}" for i in range(4)]


def test_pickled_storage_keeps_the_url_template(postgres, monkeypatch):
    secret = "pw-" + uuid.uuid4().hex
    monkeypatch.setenv("EEG2BOLD_TEST_PGPASSWORD", secret)
    name = postgres.database("pickle")
    url = postgres.url(name, user_info="postgres:${EEG2BOLD_TEST_PGPASSWORD}")
    storage = optuna_storage(url)
    study = optuna.create_study(storage=storage, study_name="s")
    blob = pickle.dumps(study)  # what Ray writes into searcher-state-*.pkl
    assert secret.encode() not in blob
    assert b"${EEG2BOLD_TEST_PGPASSWORD}" in blob
    again = pickle.loads(blob)  # re-expanded from the environment
    again.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    assert len(optuna.load_study(study_name="s", storage=storage).trials) == 1
    monkeypatch.delenv("EEG2BOLD_TEST_PGPASSWORD")
    with pytest.raises(Exception, match="EEG2BOLD_TEST_PGPASSWORD"):
        pickle.loads(blob)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_storage_given_as_the_optuna_tools_take_it(tmp_path, monkeypatch):
    """A bare path is a journal file (an SQLite file for .db/.sqlite/.sqlite3), made
    absolute; every other form is kept."""
    from eeg2bold.launch.config import parse_study_config

    monkeypatch.chdir(tmp_path)

    def url(value: str) -> str:
        data = {"name": "x", "dataset": "/d.zarr", "models": ["ridge"]}
        return parse_study_config(data | {"storage": {"optuna": value}}).optuna_url

    assert url("runs/optuna.log") == f"journal://{tmp_path}/runs/optuna.log"
    assert url(f"journal://{tmp_path}/runs/optuna.log") == f"journal://{tmp_path}/runs/optuna.log"
    assert url("optuna.db") == f"sqlite:///{tmp_path}/optuna.db"
    assert url("${SCRATCH}/o.log") == "journal://${SCRATCH}/o.log"  # expanded when connecting
    assert url("postgresql://u@db/optuna") == "postgresql://u@db/optuna"


@pytest.mark.parametrize("given", ["bare", "journal"])
def test_optuna_cli_and_dashboard_read_a_finished_sweep(ray_cluster, write_study, tmp_path, given):
    """The journal written both ways (a bare path, as optuna-dashboard takes it, and
    journal:///…) is read by Optuna's CLI and by optuna-dashboard's HTTP API: 2 trials,
    the metric named val_r."""
    import json
    import shutil
    import urllib.request
    from pathlib import Path

    from eeg2bold.cli import main
    from eeg2bold.study.queries import load_sweep

    journal = tmp_path / "optuna.log"
    path = write_study(
        f"jr{given}",
        models=["ridge"],
        protocols=["within"],
        budget={"num_samples": 1},
        scheduler={"type": "fifo", "max_epochs": 1},
        storage={
            "results": str(tmp_path / "sweep"),
            "optuna": str(journal) if given == "bare" else f"journal://{journal}",
        },
    )
    assert main(["sweep", str(path)]) == 0
    sweep = load_sweep(tmp_path / "sweep")
    assert sweep.optuna_url == f"journal://{journal}"
    (arm,) = sweep.arms()
    bin_dir = Path(sys.executable).parent
    cli = subprocess.run(
        [str(bin_dir / "optuna"), "trials", "--storage", str(journal)]
        + [
            "--storage-class",
            "JournalFileBackend",
            "--study-name",
            arm["study_name"],
            "-f",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 0, cli.stderr
    trials = json.loads(cli.stdout)
    assert len(trials) == 1 and all(set(t["value"]) == {"val_r"} for t in trials)

    dashboard = shutil.which("optuna-dashboard", path=str(bin_dir))
    if dashboard is None:
        pytest.skip("optuna-dashboard is not installed (it is in the test extras)")
    port = _free_port()
    proc = subprocess.Popen(
        [dashboard, str(journal), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as r:
                    studies = json.load(r)["study_summaries"]
                break
            except OSError:
                assert time.monotonic() < deadline, "optuna-dashboard did not answer"
                time.sleep(0.5)
        (study,) = [s for s in studies if s["study_name"] == arm["study_name"]]
        url = f"http://127.0.0.1:{port}/api/studies/{study['study_id']}"
        with urllib.request.urlopen(url, timeout=10) as r:
            detail = json.load(r)
        assert len(detail["trials"]) == 1
        assert detail["objective_names"] == ["val_r"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)

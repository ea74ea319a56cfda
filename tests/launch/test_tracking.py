"""Experiment tracking against a real MLflow tracking server (SQLite backend) on loopback:
one run per trial with the resolved config and the per-epoch val r, fold results as metrics,
the report attached as artifacts."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

mlflow = pytest.importorskip("mlflow", reason="mlflow is in the test extras")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """`mlflow server` on 127.0.0.1 with an SQLite backend and a fresh port; stopped after."""
    exe = shutil.which("mlflow", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("the mlflow command is not installed")
    root = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    proc = subprocess.Popen(
        [exe, "server", "--backend-store-uri", f"sqlite:///{root}/mlflow.db"]
        + ["--default-artifact-root", str(root / "artifacts"), "--host", "127.0.0.1"]
        + ["--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, "mlflow server exited"
            assert time.monotonic() < deadline, "mlflow server did not answer in 120 s"
            time.sleep(0.5)
        yield url
    finally:
        import os
        import signal

        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def test_a_sweep_and_its_report_reach_mlflow(
    ray_cluster, mlflow_server, write_study, tmp_path, monkeypatch, capsys
):
    from eeg2bold.cli import main
    from eeg2bold.run_folder import RunFolder
    from eeg2bold.study.queries import load_sweep, trials_table

    monkeypatch.setenv("E2B_TEST_MLFLOW", mlflow_server)
    path = write_study(
        "tracked",
        models=["linker"],
        protocols=["within"],
        budget={"num_samples": 1},
        scheduler={"type": "fifo", "max_epochs": 2},
        tracking={"mlflow": {"tracking_uri": "${E2B_TEST_MLFLOW}", "experiment": "e2b-tracked"}},
    )
    assert main(["sweep", str(path)]) == 0
    folder = tmp_path / "sweep-tracked"
    assert mlflow_server not in (folder / "sweep.json").read_text()  # the template is kept
    client = mlflow.MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("e2b-tracked")
    runs = client.search_runs([experiment.experiment_id])
    trials = trials_table(load_sweep(folder))
    assert {r.info.run_name for r in runs} == {f"trial {t}" for t in trials["trial"]}
    for run in runs:
        identity = run.data.tags["eeg2bold.trial"]
        assert run.data.tags["eeg2bold.model"] == "linker"
        params = run.data.params
        row = trials[trials["trial"] == identity].iloc[0]
        assert params["config_hash"] == row["config_hash"]
        resolved = RunFolder(folder).read_config(row["config_hash"])
        assert params["config.model"] == resolved["model"]
        assert float(params["config.train.lr"]) == pytest.approx(resolved["train"]["lr"])
        history = client.get_metric_history(run.info.run_id, "val_r")
        assert [m.step for m in history][:2] == [1, 2]  # one point per epoch, step = epoch
        assert history[-1].value == pytest.approx(row["val_r"], abs=1e-9)
        folds = {k for k in run.data.metrics if k.startswith("fold.")}
        assert folds == {f"fold.sub-0{i}.{s}_r" for i in (1, 2) for s in ("val", "test")}

    capsys.readouterr()
    report = tmp_path / "report.html"
    args = ["report", str(folder), "-o", str(report), "--n-boot", "50", "--n-surrogates", "20"]
    assert main(args) == 0
    assert "attached to MLflow" in capsys.readouterr().out
    (attached,) = client.search_runs(
        [experiment.experiment_id], filter_string="attributes.run_name = 'report'"
    )
    names = {a.path for a in client.list_artifacts(attached.info.run_id)}
    assert names == {"report.html"}


def test_a_sweep_reaches_weights_and_biases_offline(
    ray_cluster, write_study, tmp_path, monkeypatch
):
    """W&B in offline mode (no API key, nothing leaves the machine): one offline run per
    trial, named by the trial's identity, in SWEEP/wandb, holding val r and test r (`wandb
    sync` uploads them later)."""
    pytest.importorskip("wandb", reason="wandb is in the test extras")
    from eeg2bold.cli import main
    from eeg2bold.study.queries import load_sweep, trials_table

    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    path = write_study(
        "wb",
        models=["ridge"],
        protocols=["within"],
        budget={"num_samples": 1},
        scheduler={"type": "fifo", "max_epochs": 1},
        tracking={"wandb": {"project": "e2b-test", "mode": "offline"}},
    )
    assert main(["sweep", str(path)]) == 0
    folder = tmp_path / "sweep-wb"
    runs = sorted(folder.glob("wandb/wandb/offline-run-*/run-*.wandb"))
    trials = set(trials_table(load_sweep(folder))["trial"])
    assert {p.stem.removeprefix("run-") for p in runs} == trials
    for run in runs:
        data = run.read_bytes()
        assert b"val_r" in data and b"test_r" in data and b"e2b-test" in data

"""A live Slurm cluster on loopback (munge, slurmdbd on the local MariaDB, slurmctld, two
slurmd: see loopback_slurm.py): `eeg2bold launch slurm` renders the job, `sbatch` submits
it, the job starts Ray inside its allocation and runs the sweep from the staged study config;
`sacct` tells how it ended.
`pytest -k "slurm and live"` selects these tests.

Debian's `slurm-wlm`, `slurmdbd` and `munge` are installed by `make test` (as root with
apt-get); without them, root, or a MariaDB at 127.0.0.1:3306, the tests skip with the reason.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from loopback_slurm import VENV, Slurm, free_port, loopback_slurm, missing
from trial_results import arm_spans, longest_overlap, trial_rows

from eeg2bold.cli import main
from eeg2bold.run_folder import ROW_KEY, RunFolder
from eeg2bold.storage.optuna_db import optuna_storage
from eeg2bold.study.queries import load_sweep, trials_table


@pytest.fixture(scope="module")
def slurm() -> Iterator[Slurm]:
    reason = missing()
    if reason:
        pytest.skip(reason)
    with loopback_slurm() as cluster:
        yield cluster


@pytest.fixture
def live_study(tmp_path, tiny_store, monkeypatch):
    """A study config on this machine's "shared" file system (one host: every path is)."""
    monkeypatch.setattr("eeg2bold.launch.cluster.NODE_LOCAL", ())
    monkeypatch.chdir(tmp_path)

    def write(
        name: str,
        num_samples: int,
        model: str | list[str] = "ridge",
        epochs: int = 1,
        concurrent: int = 1,
    ) -> Path:
        study = {
            "name": name,
            "dataset": str(tiny_store),
            "protocols": ["within"],
            "models": [model] if isinstance(model, str) else model,
            "search": {"data.window_s": 10.0, "train.steps_per_epoch": 10},
            "budget": {"num_samples": num_samples},
            "scheduler": {"type": "fifo", "max_epochs": epochs},
            "resources": {"cpu": 0.45, "trial_cpu": 0.05},
            "max_concurrent_trials": concurrent,
            "storage": {"results": "sweep", "optuna": f"journal://{tmp_path}/optuna.log"},
        }
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(study))
        return path

    return write


def _launch_args(study: Path, *, resume: bool = False, nodes: int = 1, cpus: int = 2) -> list[str]:
    args = ["launch", "slurm", study.name, "--nodes", str(nodes), "--cpus-per-node", str(cpus)]
    args += ["--port", str(free_port()), "--shared-nodes", "--no-dashboard", "--time", "15"]
    return args + ["--venv", str(VENV)] + (["--resume"] if resume else [])


def _render(study: Path, *, resume: bool = False) -> Path:
    out = study.with_suffix(".resume.sbatch" if resume else ".sbatch")
    assert main([*_launch_args(study, resume=resume), "-o", str(out)]) == 0
    return out


def _optuna_states(url: str) -> dict[str, list[str]]:
    storage = optuna_storage(url)
    return {
        name: sorted(
            t.state.name for t in optuna.load_study(study_name=name, storage=storage).trials
        )
        for name in optuna.get_all_study_names(storage)
    }


def _log(study: Path, job: str) -> str:
    path = study.parent / f"eeg2bold-{study.stem}-{job}.log"
    return path.read_text() if path.exists() else ""


def test_slurm_live_sweep_runs_in_a_job(slurm, live_study, tmp_path, monkeypatch, capsys):
    """`eeg2bold launch slurm --submit`: rendered, staged, submitted with sbatch."""
    study = live_study("livesweep", num_samples=2)
    for key, value in slurm.env.items():  # sbatch finds this loopback cluster
        monkeypatch.setenv(key, value)
    capsys.readouterr()
    assert main([*_launch_args(study), "--submit"]) == 0
    out, err = capsys.readouterr()
    job = out.strip()
    assert job.isdigit() and f"submitted Slurm job {job}" in err, (out, err)
    study.unlink()  # the job reads the staged copy, never the file it was rendered from
    assert (tmp_path / "sweep" / "launch" / "livesweep.sbatch").exists()
    state = slurm.wait(job, timeout=600)
    log = _log(study, job)
    assert state == "COMPLETED", log[-3000:]
    steps = slurm.run("sacct", "-j", job, "-n", "-P", "-o", "JobID,State,ExitCode")
    assert f"{job}|COMPLETED|0:0" in steps and f"{job}.batch|COMPLETED|0:0" in steps
    assert "Ray cluster ready (1 nodes)" in log
    folder = RunFolder(tmp_path / "sweep")
    table = trials_table(load_sweep(folder.url))
    assert len(table) == 2 and set(table["state"]) == {"COMPLETE"}
    results = folder.results()
    assert not results.duplicated(ROW_KEY).any() and results["final"].any()
    (states,) = _optuna_states(f"journal://{tmp_path}/optuna.log").values()
    assert states == ["COMPLETE", "COMPLETE"]


@pytest.mark.slow
def test_slurm_live_scancel_then_resume_ends_with_the_requested_trials(slurm, live_study, tmp_path):
    study = live_study("livecancel", num_samples=4, model="linker", epochs=3)  # seconds each
    first = slurm.submit(_render(study))
    deadline = time.monotonic() + 600
    # cancel mid-trial, as a preemption would: the second trial has run its first epoch
    mid_trial = re.compile(r"finished \(1/4\).*?\n.*trial (\S+) epoch 1:", re.S)
    while not mid_trial.search(_log(study, first)):
        assert time.monotonic() < deadline, _log(study, first)[-3000:]
        assert slurm.state(first) in ("", "PENDING", "RUNNING"), _log(study, first)[-3000:]
        time.sleep(0.2)
    slurm.run("scancel", first)
    cancelled = slurm.wait(first, timeout=120)
    assert cancelled == "CANCELLED", (cancelled, _log(study, first)[-3000:])
    folder = RunFolder(tmp_path / "sweep")
    before = trials_table(load_sweep(folder.url))
    done_before = int((before["state"] == "COMPLETE").sum())
    assert 1 <= done_before < 4, f"the cancel landed after the sweep ended: {before}"

    second = slurm.submit(_render(study, resume=True))
    state = slurm.wait(second, timeout=600)
    assert state == "COMPLETED", _log(study, second)[-3000:]
    (states,) = _optuna_states(f"journal://{tmp_path}/optuna.log").values()
    assert states == ["COMPLETE"] * 4, (states, _log(study, second)[-3000:])  # none RUNNING
    table = trials_table(load_sweep(folder.url))
    assert len(table) == 4 and table["trial"].is_unique
    results = folder.results()
    assert not results.duplicated(ROW_KEY).any()
    raw = pd.concat([pd.read_parquet(p) for p in (tmp_path / "sweep" / "table").glob("*")])
    assert not raw.duplicated(ROW_KEY).any()
    assert results[results["final"]]["trial"].nunique() == 4


@pytest.mark.slow
def test_slurm_live_two_nodes_run_trials_on_both(slurm, live_study, tmp_path):
    """Two slurmd on this host: one job on both nodes, a Ray head on the first and a worker on
    the second; each node fits one trial (1 CPU), so two concurrent trials run one per node:
    one of each arm (linker, ridge), at the same time (one Tune run for every arm)."""
    study = live_study("livetwo", num_samples=1, model=["linker", "ridge"], epochs=2, concurrent=2)
    out = study.with_suffix(".sbatch")
    assert main([*_launch_args(study, nodes=2, cpus=1), "-o", str(out)]) == 0
    job = slurm.submit(out)
    state = slurm.wait(job, timeout=600)
    log = _log(study, job)
    assert state == "COMPLETED", log[-3000:]
    assert "Ray cluster ready (2 nodes)" in log, log[-3000:]
    allocated = slurm.run("sacct", "-j", job, "-X", "-n", "-P", "-o", "NodeList,AllocNodes")
    assert allocated.strip() == "e2b[1-2]|2", allocated
    steps = slurm.run("sacct", "-j", job, "-n", "-P", "-o", "JobID,NodeList")
    assert {"e2b1", "e2b2"} <= set(re.findall(r"e2b\d", steps))  # a `ray start` step on each
    folder = RunFolder(tmp_path / "sweep")
    table = trials_table(load_sweep(folder.url))
    assert len(table) == 2 and set(table["state"]) == {"COMPLETE"}
    ran_on = {
        n
        for rows in trial_rows(tmp_path / "sweep").values()
        for row in rows
        for n in str(row.get("nodes", "")).split(",")
        if n
    }
    assert len(ran_on) == 2, ran_on  # the two trials ran on the two Ray nodes
    spans = arm_spans(tmp_path / "sweep")  # one trial of each arm, and they ran at the same time
    assert set(spans) == {"within/linker", "within/ridge"}
    assert longest_overlap(spans["within/linker"], spans["within/ridge"]) > 0, spans
    assert not folder.results().duplicated(ROW_KEY).any()

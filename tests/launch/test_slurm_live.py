"""A live Slurm cluster on loopback (munge, slurmdbd on the local MariaDB, slurmctld, slurmd):
`eeg2bold launch slurm` renders the job, `sbatch` submits it, the job starts Ray inside its
allocation and runs the sweep from the staged study config; `sacct` tells how it ended.
`pytest -k "slurm and live"` selects these tests.

Debian's `slurm-wlm`, `slurmdbd` and `munge` are installed by `make test` (as root with
apt-get); without them, root, or a MariaDB at 127.0.0.1:3306, the tests skip with the reason.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

from eeg2bold.cli import main
from eeg2bold.launch.optuna_storage import optuna_storage
from eeg2bold.run_folder import ROW_KEY, RunFolder
from eeg2bold.study.queries import load_sweep, trials_table

BINARIES = ("munged", "munge", "slurmdbd", "slurmctld", "slurmd", "sacctmgr", "sbatch", "sacct")
MUNGE_SOCKET = Path("/run/munge/munge.socket.2")  # where every Slurm command looks for it
VENV = Path(sys.prefix)  # the job activates the environment the tests run in


def _free_port() -> int:
    with socket.socket() as s:  # the kernel's ephemeral range: clear of Ray's worker ports
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _mysql(sql: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["mysql", "-uroot", "-h127.0.0.1", "-P3306", "-e", sql],
        capture_output=True,
        text=True,
        timeout=30,
    )


@dataclass
class Slurm:
    root: Path
    env: dict[str, str]

    def run(self, *cmd: str, timeout: float = 60) -> str:
        out = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout)
        assert out.returncode == 0, f"{' '.join(cmd)}: {out.stderr}"
        return out.stdout

    def submit(self, script: Path) -> str:
        return self.run("sbatch", "--parsable", str(script), timeout=30).strip().split(";")[0]

    def state(self, job: str) -> str:
        """The job's state as accounting records it ('' until slurmdbd has it)."""
        out = subprocess.run(
            ["sacct", "-j", job, "-X", "-n", "-P", "-o", "State"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        return out.stdout.strip().split(" ")[0]

    def wait(self, job: str, *, timeout: float = 600) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.state(job)
            ended = state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL")
            if ended and not self.run("squeue", "-h", "-j", job).strip():
                return state  # ended, and every step of it gone
            time.sleep(2)
        raise AssertionError(f"job {job} still {self.state(job)!r} after {timeout:.0f} s")


def _start_daemons(root: Path, env: dict[str, str], pids: list[Path]) -> None:
    for cmd, pid in (
        (["slurmdbd"], root / "slurmdbd.pid"),
        (["slurmctld", "-f", env["SLURM_CONF"]], root / "slurmctld.pid"),
        (["slurmd", "-f", env["SLURM_CONF"]], root / "slurmd.pid"),
    ):
        subprocess.run(cmd, env=env, check=True, timeout=60)
        pids.append(pid)
        if cmd[0] == "slurmdbd":  # the cluster must exist in accounting before slurmctld starts
            deadline = time.monotonic() + 60
            while True:
                added = subprocess.run(
                    ["sacctmgr", "-i", "add", "cluster", "e2b"],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=30,
                )
                if added.returncode == 0:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"slurmdbd did not answer: {added.stderr}")
                time.sleep(1)
            for args in (["account", "e2b", "Cluster=e2b"], ["user", "root", "Account=e2b"]):
                subprocess.run(["sacctmgr", "-i", "add", *args], env=env, check=True, timeout=30)


@pytest.fixture(scope="module")
def slurm() -> Iterator[Slurm]:
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        pytest.skip(f"Slurm is not installed ({', '.join(missing)}): `make test` installs it")
    if os.geteuid() != 0:
        pytest.skip("the loopback Slurm cluster runs its daemons as root")
    if shutil.which("mysql") is None or _mysql("select 1").returncode != 0:
        pytest.skip("no MariaDB/MySQL at 127.0.0.1:3306 for slurmdbd (sacct)")
    root = Path(tempfile.mkdtemp(prefix="e2b-slurm-", dir="/tmp"))
    database = f"e2b_slurm_{secrets.token_hex(4)}"
    host = socket.gethostname().split(".")[0]
    ctld, node, dbd = _free_port(), _free_port(), _free_port()
    cpus = os.cpu_count() or 2
    (root / "state").mkdir()
    (root / "spool").mkdir()
    conf = root / "slurm.conf"
    conf.write_text(
        f"""ClusterName=e2b
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldPort={ctld}
SlurmdPort={node}
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={dbd}
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
KillWait=10
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=2000 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""
    )
    dbd_conf = root / "slurmdbd.conf"  # read from beside slurm.conf ($SLURM_CONF)
    dbd_conf.write_text(
        f"""AuthType=auth/munge
DbdHost={host}
DbdAddr=127.0.0.1
DbdPort={dbd}
SlurmUser=root
LogFile={root}/slurmdbd.log
PidFile={root}/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=3306
StorageUser=root
StorageLoc={database}
"""
    )
    dbd_conf.chmod(0o600)
    env = {**os.environ, "SLURM_CONF": str(conf)}
    pids: list[Path] = []
    own_munge = subprocess.run(["munge", "-n"], capture_output=True, timeout=30).returncode != 0
    try:
        if own_munge:  # none running: ours, on the socket every Slurm command uses
            key = root / "munge.key"
            key.write_bytes(secrets.token_bytes(1024))
            key.chmod(0o400)
            MUNGE_SOCKET.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                ["munged", f"--key-file={key}", f"--socket={MUNGE_SOCKET}", "--force"]
                + [f"--pid-file={root}/munged.pid", f"--log-file={root}/munged.log"]
                + [f"--seed-file={root}/munged.seed"],
                check=True,
                timeout=30,
            )
            pids.append(root / "munged.pid")
        _start_daemons(root, env, pids)
        cluster = Slurm(root=root, env=env)
        deadline = time.monotonic() + 60
        while "idle" not in cluster.run("sinfo", "-h", "-o", "%T"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"slurmd did not come up: {(root / 'slurmd.log').read_text()}")
            time.sleep(1)
        yield cluster
    finally:
        subprocess.run(["scancel", "--user=root"], env=env, capture_output=True, timeout=30)
        deadline = time.monotonic() + 60  # let the steps end before the daemons do
        while (
            time.monotonic() < deadline
            and subprocess.run(
                ["squeue", "-h"], env=env, capture_output=True, text=True, timeout=30
            ).stdout.strip()
        ):
            time.sleep(1)
        subprocess.run(["scontrol", "shutdown"], env=env, capture_output=True, timeout=30)
        for pid_file in reversed(pids):
            if pid_file.exists():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
        time.sleep(1)
        _mysql(f"drop database if exists {database}")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def live_study(tmp_path, tiny_store, monkeypatch):
    """A study config on this machine's "shared" file system (one host: every path is)."""
    monkeypatch.setattr("eeg2bold.launch.cluster.NODE_LOCAL", ())
    monkeypatch.chdir(tmp_path)

    def write(name: str, num_samples: int, model: str = "ridge", epochs: int = 1) -> Path:
        study = {
            "name": name,
            "dataset": str(tiny_store),
            "protocols": ["within"],
            "models": [model],
            "search": {"data.window_s": 10.0, "train.steps_per_epoch": 10},
            "budget": {"num_samples": num_samples},
            "scheduler": {"type": "fifo", "max_epochs": epochs},
            "resources": {"cpu": 0.45, "trial_cpu": 0.05},
            "max_concurrent_trials": 1,
            "storage": {"results": "sweep", "optuna": f"journal://{tmp_path}/optuna.log"},
        }
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(study))
        return path

    return write


def _launch_args(study: Path, *, resume: bool = False) -> list[str]:
    args = ["launch", "slurm", study.name, "--nodes", "1", "--cpus-per-node", "2"]
    args += ["--port", str(_free_port()), "--shared-nodes", "--no-dashboard", "--time", "15"]
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

"""A Slurm cluster on loopback for the live tests and the Slurm benchmark: munge (ours only
where none answers), slurmdbd on the local MariaDB (a database made and dropped), slurmctld
and two slurmd (two nodes, ``e2b1`` and ``e2b2``, on this one host), all on free ports, all
stopped afterwards.
"""

from __future__ import annotations

import contextlib
import os
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


class SlurmUnavailable(RuntimeError):
    """What this machine lacks for a loopback cluster (the tests skip with it)."""


# two slurmd on this one host (Debian's Slurm is built with MULTIPLE_SLURMD), each with its
# own port, spool and log
NODES = ("e2b1", "e2b2")
BINARIES = ("munged", "munge", "slurmdbd", "slurmctld", "slurmd", "sacctmgr", "sbatch", "sacct")
MUNGE_SOCKET = Path("/run/munge/munge.socket.2")  # where every Slurm command looks for it
VENV = Path(sys.prefix)  # the job activates the environment the tests run in


def free_port() -> int:
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
        *(
            (["slurmd", "-N", node, "-f", env["SLURM_CONF"]], root / f"slurmd-{node}.pid")
            for node in NODES
        ),
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


def missing() -> str | None:
    """Why no loopback cluster can start here (None: it can)."""
    absent = [b for b in BINARIES if shutil.which(b) is None]
    if absent:
        return f"Slurm is not installed ({', '.join(absent)}): `make test` installs it"
    if os.geteuid() != 0:
        return "the loopback Slurm cluster runs its daemons as root"
    if shutil.which("mysql") is None or _mysql("select 1").returncode != 0:
        return "no MariaDB/MySQL at 127.0.0.1:3306 for slurmdbd (sacct)"
    return None


@contextlib.contextmanager
def loopback_slurm() -> Iterator[Slurm]:
    """A running one-node cluster; ``SLURM_CONF`` is in the returned cluster's ``env``."""
    reason = missing()
    if reason:
        raise SlurmUnavailable(reason)
    root = Path(tempfile.mkdtemp(prefix="e2b-slurm-", dir="/tmp"))
    database = f"e2b_slurm_{secrets.token_hex(4)}"
    host = socket.gethostname().split(".")[0]
    ctld, dbd = free_port(), free_port()
    cpus = os.cpu_count() or 2
    (root / "state").mkdir()
    (root / "spool").mkdir()
    nodes = "\n".join(  # the host's CPUs on each (config_overrides: no hardware check)
        f"NodeName={n} NodeHostname={host} NodeAddr=127.0.0.1 Port={free_port()} CPUs={cpus} "
        "RealMemory=2000 State=UNKNOWN"
        for n in NODES
    )
    conf = root / "slurm.conf"
    conf.write_text(
        f"""ClusterName=e2b
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool/%n
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd-%n.pid
SlurmctldPort={ctld}
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd-%n.log
SlurmdParameters=config_overrides
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
{nodes}
PartitionName=debug Nodes={",".join(NODES)} Default=YES MaxTime=INFINITE State=UP
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
        while cluster.run("sinfo", "-h", "-N", "-o", "%T").split() != ["idle"] * len(NODES):
            if time.monotonic() > deadline:
                logs = [(root / f"slurmd-{n}.log").read_text() for n in NODES]
                raise RuntimeError(f"slurmd did not come up: {logs}")
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

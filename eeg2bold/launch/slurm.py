"""A sweep as one Slurm job: ``ray start --head`` on the first node, workers on the others
via ``srun``, a wait until every node has joined, the sweep driver, and teardown; optionally
inside a container (Apptainer or pyxis)."""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import Field

from eeg2bold.errors import ConfigError
from eeg2bold.launch.cluster import (
    check_cluster_storage,
    check_fits,
    common_values,
    credential_names,
    expand_known,
    parse_options,
    render_template,
    staged_study_path,
    sweep_args,
)
from eeg2bold.launch.config import StudyConfig
from eeg2bold.strict_config import StrictConfig

RAY_PORT = 6379
_SLURM_TIME = re.compile(r"(\d+-)?\d+(:\d+){0,2}")
_SLURM_NAME = re.compile(r"[A-Za-z0-9_.,+-]+")
_SLURM_MEM = re.compile(r"\d+[KMGT]?")


class SlurmOptions(StrictConfig):
    """One Slurm job: Ray head + workers, then the sweep driver."""

    nodes: int = Field(ge=1, description="Nodes of the job (head included).")
    cpus_per_node: int = Field(ge=1, description="CPUs Ray uses per node.")
    gpus_per_node: int = Field(0, ge=0, description="GPUs per node.")
    time: str = Field("24:00:00", description="Wall-clock limit.")
    partition: str | None = Field(None, description="Slurm partition.")
    account: str | None = Field(None, description="Slurm account.")
    mem: str | None = Field(
        None, description="Memory per node, e.g. 128G (default: the partition's)."
    )
    job_name: str | None = Field(None, description="Job name (default eeg2bold-<study name>).")
    venv: Path | None = Field(None, description="Virtual environment to activate on the nodes.")
    setup: tuple[str, ...] = Field(
        (), description="Shell line run before Ray starts, e.g. 'module load cuda' (repeatable)."
    )
    env_file: Path | None = Field(
        None, description="File of NAME=value lines sourced by the job (credentials; mode 600)."
    )
    forward_env: tuple[str, ...] = Field(
        (),
        description="Another environment variable the job needs, e.g. AWS_SECRET_ACCESS_KEY; "
        "forwarded by name (repeatable).",
    )
    port: int = Field(RAY_PORT, description="Ray GCS port.")
    exclusive: bool = Field(
        True, description="Ask for --exclusive nodes (without them Ray's fixed port may collide)."
    )
    dashboard: bool = Field(True, description="Start Ray's dashboard (bound to 127.0.0.1).")
    node_timeout_s: int = Field(600, ge=30, description="Seconds to wait for every node to join.")
    resume: bool = Field(False, description="The job continues an interrupted sweep.")
    stage_dir: str | None = Field(
        None,
        description="Folder every node reads where the job's copy of the study config goes "
        "(default: <results>/launch; needed when results is an object store).",
    )
    image: str | None = Field(
        None,
        description="Container image to run Ray and the sweep in (the Dockerfile's image, or "
        "an Apptainer .sif file); default: the host's software (--venv, --setup).",
    )
    container: Literal["apptainer", "pyxis"] = Field(
        "apptainer",
        description="How --image runs: `apptainer exec` on every node, or Slurm's pyxis "
        "plugin (`srun --container-image`).",
    )
    container_bind: tuple[str, ...] = Field(
        (),
        description="Another host folder the container must see (repeatable; the results, "
        "dataset and staged-config folders are bound already).",
    )


def slurm_job_name(config: StudyConfig, job_name: str | None = None) -> str:
    """The job's name: ``job_name``, or one made from the study's (its log is NAME-JOBID.log)."""
    return job_name or f"eeg2bold-{config.name}"


# -- the batch script ---------------------------------------------------------------------
def render_slurm(
    config_path: str | os.PathLike[str], *, config: StudyConfig, **options: Any
) -> str:
    """A batch script that starts Ray on every node of the job, then runs the sweep driver;
    ``options`` are :class:`SlurmOptions` fields.

    Why one job for the whole cluster: the sweep lives and dies with its allocation, and a
    killed sweep resumes with ``resume=True``. ``exclusive`` (default) keeps other jobs off the
    nodes, so Ray's fixed ``port`` is free and Ray sees whole nodes.
    """
    o: SlurmOptions = parse_options(SlurmOptions, options)
    nodes, cpus_per_node, gpus_per_node, time = o.nodes, o.cpus_per_node, o.gpus_per_node, o.time
    partition, account, mem, job_name, port = o.partition, o.account, o.mem, o.job_name, o.port
    venv, setup, env_file, forward_env = o.venv, o.setup, o.env_file, o.forward_env
    exclusive, dashboard, node_timeout_s, resume = (
        o.exclusive,
        o.dashboard,
        o.node_timeout_s,
        o.resume,
    )
    check_cluster_storage(config)
    staged = staged_study_path(config, o.stage_dir)
    if nodes < 1 or cpus_per_node < 1 or gpus_per_node < 0:
        raise ConfigError("nodes and cpus_per_node must be at least 1, gpus_per_node at least 0")
    check_fits(config, cpus=cpus_per_node, gpus=gpus_per_node, where="a node")
    if not _SLURM_TIME.fullmatch(time):
        raise ConfigError(f"time {time!r}: use minutes, HH:MM:SS or D-HH:MM:SS")
    for what, value, pattern in (
        ("partition", partition, _SLURM_NAME),
        ("account", account, _SLURM_NAME),
        ("job name", job_name, _SLURM_NAME),
        ("mem", mem, _SLURM_MEM),
    ):
        if value is not None and not pattern.fullmatch(value):
            raise ConfigError(f"{what} {value!r} is not a valid Slurm value")
    if not 1024 <= port <= 65535:
        raise ConfigError(f"port {port} is outside 1024-65535")

    job = slurm_job_name(config, job_name)
    sbatch = [
        f"--job-name={job}",
        f"--nodes={nodes}",
        "--ntasks-per-node=1",
        f"--cpus-per-task={cpus_per_node}",
        *([f"--gpus-per-task={gpus_per_node}"] if gpus_per_node else []),
        *([f"--mem={mem}"] if mem else []),
        f"--time={time}",
        *([f"--partition={partition}"] if partition else []),
        *([f"--account={account}"] if account else []),
        *(["--exclusive"] if exclusive else []),
        f"--output={job}-%j.log",
    ]
    setup_lines = [f"source {_shell_path(venv)}/bin/activate"] if venv else []
    setup_lines += list(setup)
    names = credential_names(config, forward_env)
    env_lines = (
        f"set -a; source {_shell_path(env_file)}; set +a"
        if env_file
        else "# (no --env-file: credentials come from the environment sbatch was run in)"
    )
    config_abs = str(Path(config_path).expanduser().resolve())
    sweep = shlex.join(["eeg2bold", "sweep", staged, *sweep_args(resume)])
    runner = _container(o, config, staged)
    values = common_values(f"{config_abs}, staged for the job as {staged}", config)
    values.update(
        sbatch="\n".join(f"#SBATCH {line}" for line in sbatch),
        setup="\n".join(setup_lines) or "# (none: eeg2bold and ray must be on PATH)",
        env_file=env_lines,
        env_names=" ".join(names),
        credentials_display=", ".join(f"${n}" for n in names) or "(none)",
        # Explicit: some Slurm versions do not pass --cpus-per-task on to job steps.
        srun_resources=" ".join(
            ['--cpus-per-task="$SLURM_CPUS_PER_TASK"']
            + ([f"--gpus-per-task={gpus_per_node}"] if gpus_per_node else [])
            + runner.srun_flags
        ),
        in_step=runner.in_step,
        on_head=runner.on_head,
        container_display=runner.display,
        port=str(port),
        dashboard="--dashboard-host=127.0.0.1" if dashboard else "--include-dashboard=false",
        node_timeout=str(max(node_timeout_s, 30)),
        sweep_command=sweep,
    )
    return render_template("slurm.sh", **values)


@dataclass(frozen=True)
class _Runner:
    """How the job's commands run: on the host, or inside the image (Apptainer or pyxis)."""

    srun_flags: list[str]  # added to every srun step that starts Ray
    in_step: str  # before `ray start` inside those steps
    on_head: str  # before `ray status`, the node wait and the sweep driver on the head
    display: str


def _container(o: SlurmOptions, config: StudyConfig, staged: str) -> _Runner:
    if o.image is None:
        return _Runner([], "", "", "none (the host's software)")
    image = o.image
    if not image or any(c.isspace() or ord(c) < 32 for c in image) or "," in image:
        raise ConfigError(f"image {image!r} is not a container image reference or .sif file")
    binds = _container_binds(config, staged, o.container_bind)
    if o.container == "apptainer":
        command = ["apptainer", "exec", *(["--nv"] if o.gpus_per_node else [])]
        command += ["--bind", ",".join(binds), image] if binds else [image]
        exec_ = shlex.join(command)
        return _Runner([], exec_ + " ", exec_ + " ", f"apptainer, {image}")
    flags = [f"--container-image={shlex.quote(image)}"]
    if binds:
        flags.append("--container-mounts=" + shlex.quote(",".join(f"{b}:{b}" for b in binds)))
    on_head = " ".join(['srun --nodes=1 --ntasks=1 --overlap -w "$head_node"', *flags]) + " "
    return _Runner(flags, "", on_head, f"pyxis, {image}")


def _container_binds(config: StudyConfig, staged: str, extra: tuple[str, ...]) -> list[str]:
    """Host folders the job's container needs: the staged config's, the results' and the
    dataset's (local ones), and any the user names."""
    folders = [str(PurePosixPath(staged).parent)]
    for url in (config.results_url, config.dataset):
        local = expand_known(url).removeprefix("file://")
        if "://" not in local and "${" not in local:
            # the parent: a sweep's results folder may not exist yet when the job starts
            folders.append(str(PurePosixPath(os.path.normpath(local)).parent))
    for folder in extra:
        if not folder.startswith("/") or any(c in folder for c in ",:\n"):
            raise ConfigError(f"container bind {folder!r}: give an absolute host folder")
        folders.append(os.path.normpath(folder))
    return list(dict.fromkeys(folders))


def submit_slurm(script: str | os.PathLike[str]) -> str:
    """``sbatch`` the rendered job from the current folder; returns the job id, or a one-line
    error with sbatch's own reason."""
    import shutil
    import subprocess

    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise ConfigError("--submit needs sbatch on PATH (run it on a Slurm login node)")
    done = subprocess.run(
        [sbatch, "--parsable", os.fspath(script)], capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        reason = (done.stderr.strip() or done.stdout.strip() or "no reason given").splitlines()
        raise ConfigError(f"sbatch refused {script}: {reason[-1]}")
    return done.stdout.strip().split(";")[0]


def _shell_path(path: str | os.PathLike[str]) -> str:
    """A quoted path for the script; ``~/`` becomes the job user's ``$HOME`` on the cluster."""
    text = os.fspath(path)
    if text == "~" or text.startswith("~/"):
        rest = text[2:]
        return '"$HOME"' + (f"/{shlex.quote(rest)}" if rest else "")
    return shlex.quote(str(Path(text).resolve()))

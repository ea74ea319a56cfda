"""Cluster paths of a sweep: a Slurm batch script and a KubeRay ``RayJob`` manifest, both
running ``eeg2bold sweep CONFIG --address auto`` on a multi-node Ray cluster.

Rendering is text only (no Ray import, nothing submitted): the output is meant to be read,
kept next to the study config, and submitted by the user. Three rules hold for both paths:

* multi-node sweeps need storage every node sees (:func:`check_cluster_storage`);
* credentials are referred to by environment-variable name (``${NAME}`` in storage URLs) and
  supplied at run time (the submitting environment or an env file for Slurm, a Kubernetes
  Secret for KubeRay); every URL shown goes through :func:`display_url`;
* Ray token authentication stays on, and the Slurm head binds its dashboard to 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError

from eeg2bold import __version__
from eeg2bold.errors import ConfigError
from eeg2bold.launch.config import StudyConfig
from eeg2bold.storage.location import ENV_VAR, display_url
from eeg2bold.strict_config import StrictConfig

RAY_PORT = 6379
CONFIG_MOUNT = "/config"
CONFIG_KEY = "study.yaml"
# Node-local folders: each node has its own, so a multi-node sweep cannot share them.
NODE_LOCAL = ("/tmp", "/var/tmp", "/dev/shm", "/run")
NETWORK_DATABASES = ("postgresql://", "postgresql+psycopg2://", "mysql://")

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
_SLURM_TIME = re.compile(r"(\d+-)?\d+(:\d+){0,2}")
_SLURM_NAME = re.compile(r"[A-Za-z0-9_.,+-]+")
_SLURM_MEM = re.compile(r"\d+[KMGT]?")
_K8S_QUANTITY = re.compile(r"\d+(\.\d+)?(Ki|Mi|Gi|Ti|Pi|k|K|M|G|T|P)?")
_K8S_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_K8S_NAME_MAX = 40  # KubeRay derives longer names (cluster, services) from the RayJob's


# -- the options of each renderer (the command line is generated from these) ---------------
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


class K8sOptions(StrictConfig):
    """A ConfigMap with the study config and a KubeRay RayJob that runs the sweep."""

    image: str = Field(description="Container image with eeg2bold and torch.")
    workers: int = Field(ge=1, description="Worker pods.")
    cpu: float = Field(gt=0, description="CPUs per worker pod.")
    memory: str = Field(description="Memory per worker pod, e.g. 32Gi.")
    gpu: int = Field(0, ge=0, description="GPUs per worker pod (nvidia.com/gpu).")
    namespace: str = Field("default", description="Kubernetes namespace.")
    secret_name: str | None = Field(
        None, description="Secret holding the ${NAME} variables of the study config."
    )
    name: str | None = Field(None, description="RayJob name (default eeg2bold-<study name>).")
    head_cpu: float = Field(2, gt=0, description="CPUs of the head pod.")
    head_memory: str = Field("8Gi", description="Memory of the head pod.")
    pvc: str | None = Field(
        None,
        description="ReadWriteMany PersistentVolumeClaim holding file-system dataset/results "
        "paths.",
    )
    pvc_mount: str = Field("/shared", description="Where the claim is mounted.")
    active_deadline_s: int | None = Field(
        None, ge=1, description="Stop the RayJob after this long (s)."
    )
    image_pull_secrets: tuple[str, ...] = Field(
        (), description="Secret for pulling the image from a private registry (repeatable)."
    )
    node_selector: tuple[str, ...] = Field(
        (), description="Node label the pods need, as KEY=VALUE (repeatable)."
    )
    tolerations: tuple[str, ...] = Field(
        (),
        description="Taint the pods tolerate, as KEY[=VALUE]:EFFECT, e.g. "
        "nvidia.com/gpu:NoSchedule (repeatable).",
    )
    service_account: str | None = Field(None, description="Service account of the pods.")
    resume: bool = Field(False, description="The job continues an interrupted sweep.")


_K8S_LABEL_KEY = re.compile(
    r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
)
_K8S_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")
_TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def _node_selector(items: Iterable[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not _K8S_LABEL_KEY.fullmatch(key) or not _K8S_LABEL_VALUE.fullmatch(value):
            raise ConfigError(f"node selector {item!r}: use KEY=VALUE with Kubernetes label syntax")
        out[key] = value
    return out


def _tolerations(items: Iterable[str]) -> list[dict[str, str]]:
    out = []
    for item in items:
        taint, sep, effect = item.rpartition(":")
        key, has_value, value = taint.partition("=")
        if not sep or effect not in _TAINT_EFFECTS or not _K8S_LABEL_KEY.fullmatch(key):
            raise ConfigError(
                f"toleration {item!r}: use KEY[=VALUE]:EFFECT, EFFECT one of "
                f"{', '.join(_TAINT_EFFECTS)}"
            )
        if has_value:
            out.append({"key": key, "operator": "Equal", "value": value, "effect": effect})
        else:
            out.append({"key": key, "operator": "Exists", "effect": effect})
    return out


def _options(model: type[StrictConfig], values: dict[str, Any]) -> Any:
    """Validated renderer options (one line naming the option on error)."""
    try:
        return model(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
    except ValidationError as exc:
        parts = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise ConfigError("invalid option(s): " + "; ".join(parts)) from None


# -- checks shared by both renderers ------------------------------------------------------
def check_cluster_storage(config: StudyConfig) -> None:
    """Refuse storage that not every node of a multi-node sweep can see, or SQLite.

    Results, a journal file and the dataset must be absolute paths on a shared file system
    (not node-local /tmp) or object-store URLs; Optuna storage must be a network database or
    a journal file, because SQLite corrupts on network file systems and cannot live in an
    object store.
    """
    # resolved locations: relative paths were made absolute when the config was read, and the
    # job reads a staged copy holding them so (staged_study_path)
    _require_shared("storage.results", _expand_known(config.results_url))
    dataset = _expand_known(config.dataset)  # run-time expanded
    if not dataset.startswith("${"):  # else unset here: checked when the sweep runs
        _require_shared("dataset", dataset)
    optuna = config.as_written("storage.optuna") or config.storage.optuna
    if optuna is None or optuna.startswith("sqlite:"):
        where = "the default SQLite file" if optuna is None else display_url(optuna)
        raise ConfigError(
            f"storage.optuna is {where}: a multi-node sweep needs PostgreSQL "
            "(postgresql://user:${PGPASSWORD}@host/db) or a journal file on a shared path "
            "(journal:///shared/path/optuna.log); SQLite corrupts on network file systems"
        )
    if optuna.startswith("journal://"):
        _require_shared("storage.optuna (journal file)", optuna[len("journal://") :])
    elif not optuna.startswith(NETWORK_DATABASES):
        raise ConfigError(
            f"unsupported storage.optuna {display_url(optuna)}: use postgresql://… or "
            "journal:///shared/path/optuna.log"
        )


def credential_names(config: StudyConfig, extra: Iterable[str] = ()) -> list[str]:
    """Environment variables the sweep needs at run time (``${NAME}`` in its storage URLs)."""
    urls = [config.dataset, config.storage.results or "", config.storage.optuna or ""]
    names = [n for url in urls for n in ENV_VAR.findall(url)]
    for name in extra:
        if not _ENV_NAME.fullmatch(name):
            raise ConfigError(f"{name!r} is not an environment variable name")
        names.append(name)
    return list(dict.fromkeys(names))


def _require_shared(what: str, location: str) -> None:
    shown = display_url(location)
    if "://" in location and not location.startswith("file://"):
        if location.startswith("memory://"):
            raise ConfigError(f"{what} {shown} is in one process's memory: use a shared location")
        return  # an object store (s3://, gs://, ...): every node sees it
    path = location.removeprefix("file://")
    hint = (
        "a multi-node sweep needs an absolute path on a file system every node mounts "
        "(e.g. NFS) or an object-store URL (s3://…)"
    )
    if not PurePosixPath(path).is_absolute():
        raise ConfigError(f"{what} {shown!r} is a relative path: {hint}")
    normal = PurePosixPath(os.path.normpath(path))
    for local in NODE_LOCAL:
        if normal == PurePosixPath(local) or PurePosixPath(local) in normal.parents:
            raise ConfigError(f"{what} {shown!r} is node-local ({local}): {hint}")


def _expand_known(url: str) -> str:
    """``${NAME}`` replaced where the variable is set (the dataset path is expanded at run time)."""
    return ENV_VAR.sub(lambda m: os.environ.get(m.group(1), m.group(0)), url)


def _check_fits(config: StudyConfig, *, cpus: float, gpus: float, where: str) -> None:
    """One fold actor must fit on one node, or its trial never starts."""
    res = config.resources
    if res.cpu > cpus:
        raise ConfigError(
            f"resources.cpu is {res.cpu:g} per fold but {where} has {cpus:g} CPUs: one fold "
            "must fit on one node"
        )
    if res.gpu > gpus:
        raise ConfigError(
            f"resources.gpu is {res.gpu:g} per fold but {where} has {gpus:g} GPUs: ask for GPUs "
            "or set resources.gpu: 0"
        )


def _template(template: str, /, **values: str) -> str:
    """A file of ``templates/`` with every ``{{key}}`` replaced (all keys must be given)."""
    folder = resources.files("eeg2bold.launch").joinpath("templates")
    text = folder.joinpath(template).read_text(encoding="utf-8")

    def value(match: re.Match[str]) -> str:
        return values[match.group(1)]

    return _PLACEHOLDER.sub(value, text)


def _ray_version() -> str:
    try:
        return metadata.version("ray")
    except metadata.PackageNotFoundError:  # pragma: no cover - Ray is a dependency
        return "unknown"


def _sweep_args(resume: bool) -> list[str]:
    return ["--address", "auto", *(["--resume"] if resume else [])]


def _common_values(config_path: str, config: StudyConfig) -> dict[str, str]:
    """Header values; shown in comments, so kept to one line each."""
    optuna = config.storage.optuna
    values = {
        "name": config.name,
        "version": __version__,
        "ray_version": _ray_version(),
        "config_display": config_path,
        "dataset_display": display_url(config.dataset),
        "results_display": display_url(config.results_url),
        "optuna_display": display_url(optuna) if optuna else "(default SQLite)",
    }
    return {k: re.sub(r"[\x00-\x1f\x7f]", "?", v) for k, v in values.items()}


# -- the study config the job reads -------------------------------------------------------
def staged_study_path(config: StudyConfig, stage_dir: str | None = None) -> str:
    """Where the job reads its study config: a copy in a folder every node reads (the path the
    config was rendered from is usually on the submitting machine only)."""
    if stage_dir is None:
        results = config.results_url
        if "://" in results and not results.startswith("file://"):
            raise ConfigError(
                f"the job needs its study config on a path every node reads, and the results "
                f"location {display_url(results)} is not a file system: give --stage-dir "
                "/shared/folder"
            )
        from eeg2bold.run_folder import RunFolder

        known = _expand_known(results.removeprefix("file://"))  # unset ${VAR}: refused below
        stage_dir = known if "${" in known else RunFolder(known).stage_dir
    folder = _expand_known(stage_dir)
    if "${" in folder:
        raise ConfigError(
            f"stage folder {stage_dir!r} uses an environment variable unset here: give "
            "--stage-dir /shared/folder"
        )
    _require_shared("the staged study config (--stage-dir)", folder)
    return str(PurePosixPath(os.path.normpath(folder)) / f"{config.name}.yaml")


def stage_study(config: StudyConfig, path: str) -> None:
    """Write the resolved study config (absolute paths, ``${NAME}`` kept) for the job."""
    from eeg2bold.run_folder.files import write_bytes

    write_bytes(path, study_yaml(config).encode(), what="the staged study config")


# -- Slurm --------------------------------------------------------------------------------
def render_slurm(
    config_path: str | os.PathLike[str], *, config: StudyConfig, **options: Any
) -> str:
    """A batch script that starts Ray on every node of the job, then runs the sweep driver;
    ``options`` are :class:`SlurmOptions` fields.

    Why one job for the whole cluster: the sweep lives and dies with its allocation, and a
    killed sweep resumes with ``resume=True``. ``exclusive`` (default) keeps other jobs off the
    nodes, so Ray's fixed ``port`` is free and Ray sees whole nodes.
    """
    o: SlurmOptions = _options(SlurmOptions, options)
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
    _check_fits(config, cpus=cpus_per_node, gpus=gpus_per_node, where="a node")
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

    job = job_name or f"eeg2bold-{config.name}"
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
    sweep = shlex.join(["eeg2bold", "sweep", staged, *_sweep_args(resume)])
    runner = _container(o, config, staged)
    values = _common_values(f"{config_abs}, staged for the job as {staged}", config)
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
    return _template("slurm.sh", **values)


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
        local = _expand_known(url).removeprefix("file://")
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


# -- Kubernetes (KubeRay) -----------------------------------------------------------------
class _Dumper(yaml.SafeDumper):
    """Safe YAML, multi-line strings (the embedded study config) as literal blocks, and no
    anchors or aliases (each pod spec spelled out, as people and linters expect)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def k8s_name(config: StudyConfig) -> str:
    """A DNS-1123 name for the RayJob, short enough for the names KubeRay derives from it."""
    name = re.sub(r"[^a-z0-9-]+", "-", f"eeg2bold-{config.name}".lower())
    return name[:_K8S_NAME_MAX].strip("-")


def study_yaml(config: StudyConfig) -> str:
    """The resolved study config as YAML (what the ConfigMap carries; ``${NAME}`` kept)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def render_k8s(config_path: str | os.PathLike[str], *, config: StudyConfig, **options: Any) -> str:
    """A ConfigMap (the study config) plus a RayJob whose cluster runs the sweep and goes away;
    ``options`` are :class:`K8sOptions` fields.

    Why a RayJob: KubeRay creates the cluster, submits ``eeg2bold sweep`` once every pod is
    up, and deletes the cluster when the sweep ends (``shutdownAfterJobFinishes``). The head
    runs only the driver (``num-cpus: 0``); trials run on ``workers`` pods of ``cpu``,
    ``memory`` and ``gpu`` each. Storage credentials come from ``secret_name`` via
    ``envFrom``; a file-system results path needs a ReadWriteMany ``pvc`` mounted at
    ``pvc_mount``.
    """
    o: K8sOptions = _options(K8sOptions, options)
    image, workers, cpu, memory, gpu = o.image, o.workers, o.cpu, o.memory, o.gpu
    namespace, secret_name, name, head_cpu = o.namespace, o.secret_name, o.name, o.head_cpu
    head_memory, pvc, pvc_mount, resume = o.head_memory, o.pvc, o.pvc_mount, o.resume
    active_deadline_s = o.active_deadline_s
    check_cluster_storage(config)
    node_selector, tolerations = _node_selector(o.node_selector), _tolerations(o.tolerations)
    for what, value in [("service account", o.service_account)] + [
        ("image pull secret", v) for v in o.image_pull_secrets
    ]:
        if value is not None and not _K8S_NAME.fullmatch(value):
            raise ConfigError(f"{what} {value!r} is not a valid Kubernetes name")
    inline = config.inline_credentials()
    if inline:
        raise ConfigError(
            f"{', '.join(inline)} holds a literal credential, which a ConfigMap would expose: "
            "write it as ${NAME} (e.g. postgresql://user:${PGPASSWORD}@host/db) and put NAME "
            "in the Secret"
        )
    names = credential_names(config)
    if names and not secret_name:
        raise ConfigError(
            f"the study config uses {', '.join('${' + n + '}' for n in names)}: name the "
            "Kubernetes Secret holding them (secret_name / --secret)"
        )
    for what, value in (("namespace", namespace), ("secret", secret_name), ("pvc", pvc)):
        if value is not None and not _K8S_NAME.fullmatch(value):
            raise ConfigError(f"{what} {value!r} is not a valid Kubernetes name")
    job = name or k8s_name(config)
    if not _K8S_NAME.fullmatch(job) or len(job) > _K8S_NAME_MAX:
        raise ConfigError(
            f"name {job!r}: use at most {_K8S_NAME_MAX} lowercase letters, digits and '-'"
        )
    if not image or any(c.isspace() for c in image):
        raise ConfigError(f"image {image!r} is not a container image reference")
    if workers < 1 or cpu <= 0 or head_cpu <= 0 or gpu < 0:
        raise ConfigError("workers must be at least 1, cpu and head_cpu positive, gpu >= 0")
    for what, value in (("memory", memory), ("head_memory", head_memory)):
        if not _K8S_QUANTITY.fullmatch(value):
            raise ConfigError(f"{what} {value!r} is not a Kubernetes quantity (e.g. 16Gi)")
    _check_fits(config, cpus=cpu, gpus=gpu, where="a worker pod")
    _check_k8s_paths(config, pvc=pvc, mount=pvc_mount)

    config_map = f"{job}-study"
    volumes: list[dict[str, Any]] = [{"name": "study", "configMap": {"name": config_map}}]
    mounts: list[dict[str, Any]] = [{"name": "study", "mountPath": CONFIG_MOUNT, "readOnly": True}]
    if pvc:
        volumes.append({"name": "shared", "persistentVolumeClaim": {"claimName": pvc}})
        mounts.append({"name": "shared", "mountPath": pvc_mount})
    env_from = [{"secretRef": {"name": secret_name}}] if secret_name else []

    def pod(role: str, cpus: float, mem: str, gpus: int) -> dict[str, Any]:
        limits: dict[str, Any] = {"cpu": _quantity(cpus), "memory": mem}
        if gpus:
            limits["nvidia.com/gpu"] = gpus
        container: dict[str, Any] = {
            "name": f"ray-{role}",
            "image": image,
            "resources": {"requests": {"cpu": _quantity(cpus), "memory": mem}, "limits": limits},
            "volumeMounts": mounts,
        }
        container["env"] = [{"name": "RAY_USAGE_STATS_ENABLED", "value": "0"}]
        if env_from:
            container["envFrom"] = env_from
        spec: dict[str, Any] = {"containers": [container], "volumes": volumes}
        if o.image_pull_secrets:
            spec["imagePullSecrets"] = [{"name": n} for n in o.image_pull_secrets]
        if node_selector:
            spec["nodeSelector"] = dict(node_selector)
        if tolerations:
            spec["tolerations"] = [dict(t) for t in tolerations]
        if o.service_account:
            spec["serviceAccountName"] = o.service_account
        return {"spec": spec}

    sweep_label = re.sub(r"[^A-Za-z0-9]+$", "", config.name[:63])
    labels = {"app.kubernetes.io/name": "eeg2bold", "eeg2bold/sweep": sweep_label}
    meta = {"name": job, "namespace": namespace, "labels": labels}
    entrypoint = shlex.join(
        ["eeg2bold", "sweep", f"{CONFIG_MOUNT}/{CONFIG_KEY}", *_sweep_args(resume)]
    )
    rayjob_spec: dict[str, Any] = {
        "entrypoint": entrypoint,
        "shutdownAfterJobFinishes": True,
        "ttlSecondsAfterFinished": 60,
    }
    if active_deadline_s is not None:
        rayjob_spec["activeDeadlineSeconds"] = int(active_deadline_s)
    rayjob_spec["rayClusterSpec"] = {
        "rayVersion": _ray_version(),
        "authOptions": {"mode": "token"},
        "enableInTreeAutoscaling": False,
        "headGroupSpec": {
            "rayStartParams": {"num-cpus": "0"},  # the head runs the driver only
            "template": pod("head", head_cpu, head_memory, 0),
        },
        "workerGroupSpecs": [
            {
                "groupName": "workers",
                "replicas": workers,
                "minReplicas": workers,
                "maxReplicas": workers,
                "rayStartParams": {},
                "template": pod("worker", cpu, memory, gpu),
            }
        ],
    }
    documents = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {**meta, "name": config_map},
            "data": {CONFIG_KEY: study_yaml(config)},
        },
        {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": meta, "spec": rayjob_spec},
    ]
    values = _common_values(str(config_path), config)
    values.update(
        secret_display=secret_name or "(none needed)",
        credentials_display=", ".join(names) or "(none: add the ones your storage needs)",
        namespace=namespace,
        job=job,
    )
    body = yaml.dump_all(documents, Dumper=_Dumper, sort_keys=False, explicit_start=True)
    return _template("rayjob-notes.yaml", **values) + body


def _quantity(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _check_k8s_paths(config: StudyConfig, *, pvc: str | None, mount: str) -> None:
    """File-system storage must lie on the shared volume mounted into every pod."""
    optuna = config.storage.optuna or ""
    paths = [
        ("storage.results", config.results_url),
        ("dataset", config.dataset),
        ("storage.optuna (journal file)", optuna.removeprefix("journal://")),
    ]
    root = PurePosixPath(mount)
    for what, location in paths:
        if not location or "://" in location or location.startswith("${"):
            continue
        path = PurePosixPath(os.path.normpath(location))
        if pvc is None:
            raise ConfigError(
                f"{what} {location!r} is a file path: pods see it only on a shared volume; "
                "pass a ReadWriteMany PersistentVolumeClaim (pvc / --pvc) or use an "
                "object-store URL"
            )
        if path != root and root not in path.parents:
            raise ConfigError(
                f"{what} {location!r} is not under {mount}, where the volume {pvc!r} is mounted"
            )

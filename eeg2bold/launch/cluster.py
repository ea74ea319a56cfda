"""What a sweep on a cluster needs whichever way it starts: storage every node sees, the
credentials it names, one fold fitting a node, and the study config staged for the job. The
two ways are :mod:`.slurm` (a batch script) and :mod:`.k8s` (a KubeRay ``RayJob``), both
running ``eeg2bold sweep CONFIG --address auto``; :mod:`.jobs` writes and submits them.

Rendering is text only (no Ray import, nothing submitted unless asked): the output is meant to
be read, kept next to the study config, and submitted by the user. Three rules hold for both:

* multi-node sweeps need storage every node sees (:func:`check_cluster_storage`);
* credentials are referred to by environment-variable name (``${NAME}`` in storage URLs) and
  supplied at run time (the submitting environment or an env file for Slurm, a Kubernetes
  Secret for KubeRay); every URL shown goes through :func:`display_url`;
* Ray token authentication stays on, and the Slurm head binds its dashboard to 127.0.0.1.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from importlib import metadata, resources
from pathlib import PurePosixPath
from typing import Any

import yaml
from pydantic import ValidationError

from eeg2bold import __version__
from eeg2bold.errors import ConfigError, invalid_options
from eeg2bold.launch.config import StudyConfig
from eeg2bold.storage.location import ENV_VAR, display_url
from eeg2bold.strict_config import StrictConfig

# Node-local folders: each node has its own, so a multi-node sweep cannot share them.
NODE_LOCAL = ("/tmp", "/var/tmp", "/dev/shm", "/run")
NETWORK_DATABASES = ("postgresql://", "postgresql+psycopg2://", "mysql://")

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def parse_options(model: type[StrictConfig], values: dict[str, Any]) -> Any:
    """Validated renderer options (one line naming the option on error)."""
    try:
        return model(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
    except ValidationError as exc:
        raise ConfigError(invalid_options(exc)) from None


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
    _require_shared("storage.results", expand_known(config.results_url))
    dataset = expand_known(config.dataset)  # run-time expanded
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


def expand_known(url: str) -> str:
    """``${NAME}`` replaced where the variable is set (the dataset path is expanded at run time)."""
    return ENV_VAR.sub(lambda m: os.environ.get(m.group(1), m.group(0)), url)


def check_fits(config: StudyConfig, *, cpus: float, gpus: float, where: str) -> None:
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


def render_template(template: str, /, **values: str) -> str:
    """A file of ``templates/`` with every ``{{key}}`` replaced (all keys must be given)."""
    folder = resources.files("eeg2bold.launch").joinpath("templates")
    text = folder.joinpath(template).read_text(encoding="utf-8")

    def value(match: re.Match[str]) -> str:
        return values[match.group(1)]

    return _PLACEHOLDER.sub(value, text)


def ray_version() -> str:
    try:
        return metadata.version("ray")
    except metadata.PackageNotFoundError:  # pragma: no cover - Ray is a dependency
        return "unknown"


def sweep_args(resume: bool) -> list[str]:
    return ["--address", "auto", *(["--resume"] if resume else [])]


def common_values(config_path: str, config: StudyConfig) -> dict[str, str]:
    """Header values; shown in comments, so kept to one line each."""
    optuna = config.storage.optuna
    values = {
        "name": config.name,
        "version": __version__,
        "ray_version": ray_version(),
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

        known = expand_known(results.removeprefix("file://"))  # unset ${VAR}: refused below
        stage_dir = known if "${" in known else RunFolder(known).stage_dir
    folder = expand_known(stage_dir)
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


def study_yaml(config: StudyConfig) -> str:
    """The resolved study config as YAML (what the ConfigMap carries; ``${NAME}`` kept)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)

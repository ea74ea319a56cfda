"""A sweep as a KubeRay ``RayJob``: a ConfigMap with the study config and a RayJob whose
cluster runs the sweep and is deleted when it ends."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterable
from pathlib import PurePosixPath
from typing import Any

import yaml
from pydantic import Field

from eeg2bold.errors import ConfigError
from eeg2bold.launch.cluster import (
    check_cluster_storage,
    check_fits,
    common_values,
    credential_names,
    parse_options,
    ray_version,
    render_template,
    study_yaml,
    sweep_args,
)
from eeg2bold.launch.config import StudyConfig
from eeg2bold.strict_config import StrictConfig

CONFIG_MOUNT = "/config"
CONFIG_KEY = "study.yaml"
_K8S_QUANTITY = re.compile(r"\d+(\.\d+)?(Ki|Mi|Gi|Ti|Pi|k|K|M|G|T|P)?")
_K8S_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_K8S_NAME_MAX = 40  # KubeRay derives longer names (cluster, services) from the RayJob's


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


# -- the manifest -----------------------------------------------------------------
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
    o: K8sOptions = parse_options(K8sOptions, options)
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
    check_fits(config, cpus=cpu, gpus=gpu, where="a worker pod")
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
        ["eeg2bold", "sweep", f"{CONFIG_MOUNT}/{CONFIG_KEY}", *sweep_args(resume)]
    )
    rayjob_spec: dict[str, Any] = {
        "entrypoint": entrypoint,
        "shutdownAfterJobFinishes": True,
        "ttlSecondsAfterFinished": 60,
    }
    if active_deadline_s is not None:
        rayjob_spec["activeDeadlineSeconds"] = int(active_deadline_s)
    rayjob_spec["rayClusterSpec"] = {
        "rayVersion": ray_version(),
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
    values = common_values(str(config_path), config)
    values.update(
        secret_display=secret_name or "(none needed)",
        credentials_display=", ".join(names) or "(none: add the ones your storage needs)",
        namespace=namespace,
        job=job,
    )
    body = yaml.dump_all(documents, Dumper=_Dumper, sort_keys=False, explicit_start=True)
    return render_template("rayjob-notes.yaml", **values) + body


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

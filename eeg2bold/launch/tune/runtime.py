"""Ray itself: starting or joining a cluster, where its console output goes, the nodes' health
and shared paths, one copy of the runs per node and the sweep's pool of fold actors.

Security: Ray's token authentication is left as Ray sets it up (on by default); the dashboard
is not started unless asked for, and then binds to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Sequence
from typing import Any

import fsspec
import ray
from ray.util.scheduling_strategies import (
    NodeAffinitySchedulingStrategy,
)

from eeg2bold.launch.tune.fold_actor import (
    FoldActorPool,
    RunStore,
    fold_pool_name,
    run_store_name,
)

# Our own progress lines replace Tune's tables; these keep Tune's console output quiet. A
# failed trial ends with a result that holds its failure and no metric (never a made-up or
# NaN score), which Tune's strict metric check would refuse.
_QUIET_ENV = {
    "RAY_AIR_NEW_OUTPUT": "0",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",
    # Ray's usage statistics stay off unless the user turns them on (RAY_USAGE_STATS_ENABLED=1),
    # as the Slurm and Kubernetes jobs have them: a sweep sends nothing off its machines
    "RAY_USAGE_STATS_ENABLED": "0",
}


# -- cluster -----------------------------------------------------------------------------
def init_ray(
    *,
    address: str | None = None,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    dashboard: bool = False,
) -> dict[str, float]:
    """Start a local Ray instance or connect to ``address``; returns the cluster resources."""
    for key, value in _QUIET_ENV.items():
        os.environ.setdefault(key, value)
    kwargs: dict[str, Any] = {
        "include_dashboard": dashboard,
        "dashboard_host": "127.0.0.1",
        "logging_level": "WARNING",
        "configure_logging": True,
    }
    if ray.is_initialized():
        return dict(ray.cluster_resources())
    if address:
        # clients of a cluster started with token auth must send the token too
        os.environ.setdefault("RAY_AUTH_MODE", "token")
        ray.init(address=address, **kwargs)
    else:
        if num_cpus is not None:
            kwargs["num_cpus"] = int(math.ceil(num_cpus))
        if num_gpus is not None:
            kwargs["num_gpus"] = int(num_gpus)
        reap_orphaned_agents()
        # "local": always a fresh instance, never silently a cluster `ray start` left running
        ray.init(address="local", **kwargs)
    return dict(ray.cluster_resources())


ORPHAN_AGENTS = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")


def reap_orphaned_agents(proc: str = "/proc") -> list[int]:
    """Stop Ray's per-node agents left by a local instance whose driver was killed; returns
    their pids.

    Why: after a SIGKILL of the driver its raylet and GCS die, but the two agents linger about
    a minute (before exiting they report the raylet's death to the dead GCS, with a 60 s
    timeout inside Ray), so a ``--resume`` right after a kill ran beside them. An agent whose
    raylet is gone has been adopted by init (parent pid 1) and serves nothing; only this
    user's are touched, and only on Linux (``/proc``)."""
    import signal

    if not os.path.isdir(proc):
        return []
    uid, stopped = os.getuid(), []
    with os.scandir(proc) as entries:
        pids = [e for e in entries if e.name.isdigit()]
    for entry in pids:
        try:
            if os.stat(entry.path).st_uid != uid:
                continue
            with open(os.path.join(entry.path, "cmdline"), "rb") as f:
                title = f.read().split(b"\0")[0].decode(errors="replace").strip()
            with open(os.path.join(entry.path, "stat"), encoding="ascii") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid == 1 and title.startswith(ORPHAN_AGENTS):
                os.kill(int(entry.name), signal.SIGKILL)
                stopped.append(int(entry.name))
        except (OSError, ValueError, IndexError):  # gone meanwhile, or not ours to read
            continue
    return stopped


@contextlib.contextmanager
def ray_messages_to(path: str | None, *, debug: bool = False) -> Iterator[str | None]:
    """Ray's own console output during a sweep — Tune's tracebacks of failed trial tasks,
    raylet and GCS messages, worker processes' stderr — goes to the file ``path`` instead of
    the console (eeg2bold's own lines say what happened), unless ``debug``. Yields the file;
    one left empty is removed."""
    import logging

    if debug or path is None:
        yield None
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    log = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed below, after Ray's threads)
    handler = logging.StreamHandler(log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    ray_logger = logging.getLogger("ray")
    consoles = [
        h
        for h in ray_logger.handlers
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
    ]
    for h in consoles:
        ray_logger.removeHandler(h)
    ray_logger.addHandler(handler)
    # every line Ray forwards to the driver's console (worker output, raylet and GCS errors)
    # passes through this one function of Ray's (internal: where it moved, they stay)
    worker = _ray_worker_module()
    printer = getattr(worker, "print_worker_logs", None)
    if printer is not None:
        worker.print_worker_logs = lambda data, *_a, **_k: _write_worker_log(log, data)
    start = log.tell()
    try:
        yield path
    finally:
        if printer is not None:
            worker.print_worker_logs = printer
        ray_logger.removeHandler(handler)
        for h in consoles:
            ray_logger.addHandler(h)
        written = log.tell() > start
        log.close()
        if not written and os.path.getsize(path) == 0:
            os.remove(path)


def _ray_worker_module() -> Any:
    import importlib

    try:
        return importlib.import_module("ray._private.worker")
    except ImportError:
        return None


def _write_worker_log(log: Any, data: dict[str, Any]) -> None:
    lines = data.get("lines", [])
    if data.get("pid") == "autoscaler":  # its status table every few seconds: events only
        events = getattr(_ray_worker_module(), "filter_autoscaler_events", None)
        lines = list(events(lines)) if events is not None else []
    prefix = f"({data.get('actor_name') or data.get('task_name') or 'pid'}={data.get('pid')}"
    prefix += f", ip={data.get('ip')}) " if data.get("ip") else ") "
    with contextlib.suppress(ValueError):  # closed while Ray's thread still ran
        log.writelines(prefix + str(line) + "\n" for line in lines)
        log.flush()


def shutdown_ray() -> None:
    if ray.is_initialized():
        ray.shutdown()


def cluster_nodes() -> list[dict[str, Any]]:
    """Alive nodes with their resources."""
    return [n for n in ray.nodes() if n.get("Alive")]


def check_shared_path(url: str) -> list[str]:
    """Which alive nodes cannot read a marker file written at ``url`` (empty: all can)."""
    import uuid

    fs, root = fsspec.core.url_to_fs(url)
    fs.makedirs(root, exist_ok=True)
    token = uuid.uuid4().hex
    marker = f"{root.rstrip('/')}/.shared-check-{token}"
    with fs.open(marker, "w") as f:
        f.write(token)

    @ray.remote(num_cpus=0)
    def can_read(path: str, expect: str) -> bool:
        try:
            fs2, p = fsspec.core.url_to_fs(path)
            with fs2.open(p, "r") as f2:
                return f2.read() == expect
        except OSError:
            return False

    target = url.rstrip("/") + f"/.shared-check-{token}" if "://" in url else marker
    missing = []
    try:
        for node in cluster_nodes():
            strategy = NodeAffinitySchedulingStrategy(node_id=node["NodeID"], soft=False)
            ok = ray.get(can_read.options(scheduling_strategy=strategy).remote(target, token))
            if not ok:
                missing.append(node.get("NodeManagerAddress", node["NodeID"]))
    finally:
        fs.rm(marker)
    return missing


# -- one copy of the data per node -------------------------------------------------------
def start_run_stores() -> list[Any]:
    """One :class:`RunStore` on every alive node (owned by this driver, so the runs live as
    long as the sweep); nodes that join later read their runs per actor."""
    stores = []
    for node in cluster_nodes():
        strategy = NodeAffinitySchedulingStrategy(node_id=node["NodeID"], soft=False)
        stores.append(
            RunStore.options(  # type: ignore[attr-defined]
                name=run_store_name(node["NodeID"]),
                get_if_exists=True,
                scheduling_strategy=strategy,
            ).remote()
        )
    ray.get([s.stats.remote() for s in stores])  # started before any trial asks
    return stores


def start_fold_pool(
    sweep_id: str, *, bundles: Sequence[dict[str, float]] = (), max_concurrent: int = 1
) -> Any:
    """The sweep's pool of CPU fold actors, on the driver's node (so it lives as long as the
    driver, whatever node is lost). With a trial's ``bundles``, the fold actors of as many
    trials as fit on the driver's node at once (at most ``max_concurrent``) start now, while
    Tune starts, instead of inside the first trials."""
    here = ray.get_runtime_context().get_node_id()
    pool = FoldActorPool.options(  # type: ignore[attr-defined]
        name=fold_pool_name(sweep_id),
        get_if_exists=True,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=here, soft=False),
    ).remote()
    ray.get(pool.stats.remote())
    per_trial = sum(b.get("CPU", 0.0) for b in bundles)
    node_cpu = next(
        (n["Resources"].get("CPU", 0.0) for n in cluster_nodes() if n["NodeID"] == here), 0.0
    )
    if bundles and per_trial > 0:
        trials = min(max_concurrent, int(node_cpu // per_trial + 1e-9))
        # the lease's key: the bundle's node and its torch threads (see _fold_actors)
        threads = [max(1, int(b.get("CPU", 0.0))) for b in bundles[1:]]
        pool.prestart.remote([(here, t) for _ in range(trials) for t in threads])
    return pool


def stop_fold_pool(pool: Any) -> None:
    with contextlib.suppress(Exception):
        ray.get(pool.shutdown.remote(), timeout=30)
    with contextlib.suppress(Exception):
        ray.kill(pool)


class _ActorPool:
    """The :class:`~eeg2bold.training.engine.RunnerPool` of a sweep trial: actor ``a`` (in
    bundle ``a + 1``) runs the folds of ``groups[a]``; calls on different actors run at once,
    the folds of one actor one after another."""

    def __init__(self, actors: list[Any], groups: list[list[int]]):
        self.actors = actors
        self.host = {fold: a for a, group in enumerate(groups) for fold in group}

    def call(self, method: str, calls: Sequence[tuple[int, dict[str, Any]]]) -> list[Any]:
        per_actor: dict[int, list[tuple[int, dict[str, Any]]]] = {}
        for fold, kwargs in calls:
            per_actor.setdefault(self.host[fold], []).append((fold, kwargs))
        refs = {a: self.actors[a].call.remote(method, c) for a, c in per_actor.items()}
        answers = {a: iter(v) for a, v in zip(refs, ray.get(list(refs.values())), strict=True)}
        return [next(answers[self.host[fold]]) for fold, _ in calls]

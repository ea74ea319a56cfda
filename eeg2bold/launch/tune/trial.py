"""A sweep trial: the function Tune runs. It holds a placement group of ``1 + n_actors``
bundles (bundle 0 for itself, one per fold actor), borrows CPU fold actors from the sweep's
pool (or starts GPU ones in its bundles), maps folds to them and reports to Tune; the engine
(:class:`~eeg2bold.training.engine.ProtocolRun`) does the stepping, the rows, files and resume
state. A configuration, data or training failure is recorded and ends the trial (never
retried); a dead worker or node raises, and Tune retries it from the run folder's state.
"""

from __future__ import annotations

import contextlib
import math
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ray
from ray import tune
from ray.exceptions import RayError, RayTaskError
from ray.util.scheduling_strategies import (
    PlacementGroupSchedulingStrategy,
)

from eeg2bold.errors import ConfigError, DatasetError, Eeg2BoldError
from eeg2bold.launch.plan import fold_groups
from eeg2bold.launch.tune.fold_actor import (
    FoldActor,
    fold_pool_name,
)
from eeg2bold.launch.tune.runtime import _ActorPool
from eeg2bold.run_folder import RunFolder
from eeg2bold.storage import open_dataset
from eeg2bold.training.engine import METRIC, ProtocolRun


# -- the trial ---------------------------------------------------------------------------
@dataclass
class TrialContext:
    """Plain data every trial of one arm shares (JSON-able: it travels to workers)."""

    sweep: str
    sweep_id: str
    protocol: str
    model: str
    dataset: str
    results: str
    protocol_options: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    fold_cpu: float = 1.0
    fold_gpu: float = 0.0
    n_folds: int = 1
    folds_per_actor: int = 1

    @property
    def groups(self) -> list[list[int]]:
        return fold_groups(self.n_folds, self.folds_per_actor)


def failure_kind(exc: BaseException) -> str:
    """config (a setting that cannot work), data (a damaged or unsuitable store) or training
    (e.g. a non-finite loss): deterministic failures, recorded and never retried."""
    if isinstance(exc, ConfigError):
        return "config"
    if isinstance(exc, DatasetError):
        return "data"
    if not isinstance(exc, Eeg2BoldError):  # a bug in eeg2bold or a plugin, not the settings
        return "error"
    return "training"


def _fail(folder: RunFolder, trial_id: str, exc: BaseException, trace: str | None = None) -> None:
    """Record a deterministic failure and end the trial normally with it: Tune retries only
    trials that raise (a dead worker or node), and this one would fail again."""
    kind = failure_kind(exc)
    reason = str(exc) if kind == "config" else f"{type(exc).__name__}: {exc}"
    record: dict[str, Any] = {"reason": reason, "kind": kind}
    if kind == "error":  # a bug: whoever fixes it needs the traceback
        record["traceback"] = trace or "".join(traceback.format_exception(exc))
    folder.record_failure(trial_id, record)
    tune.report({"failure": reason, "failure_kind": kind})


UNDEFINED_SCORE = (
    "undefined val r on a fold (a constant prediction or truth on its val split): NaN, so "
    "the configuration cannot be ranked"
)


def run_trial(config: dict[str, Any], contexts: dict[str, dict[str, Any]]) -> None:
    """Ray Tune function trainable: one configuration on every fold of its arm's protocol
    (``config["arm"]`` names the arm), a thin driver of
    :meth:`~eeg2bold.training.engine.ProtocolRun.run_lockstep`."""
    import logging
    import time

    from eeg2bold.search_spaces import experiment_from_sample
    from eeg2bold.storage.location import expand_env

    started = time.time()  # when its work began (which trials ran at once: tests, people)
    for name in ("ray.tune", "ray.train"):
        logging.getLogger(name).setLevel(logging.WARNING)
    ctx = TrialContext(**contexts[config["arm"]])
    trial_id = str(config.get("trial") or tune.get_context().get_trial_id())
    folder = RunFolder(ctx.results)
    previous = folder.read_failure(trial_id)
    if previous is not None:  # failed before a driver restart: the same again
        tune.report({"failure": previous["reason"], "failure_kind": previous.get("kind")})
        return
    try:
        experiment = experiment_from_sample(
            config["sample"],
            model=ctx.model,
            protocol=ctx.protocol,
            protocol_options=ctx.protocol_options,
            data=ctx.data,
            train=ctx.train,
        )
        run = ProtocolRun(
            dataset=open_dataset(expand_env(ctx.dataset)),
            config=experiment,
            folder=folder,
            sweep=ctx.sweep_id,
            trial=trial_id,
        )
    except Eeg2BoldError as exc:
        return _fail(folder, trial_id, exc)
    actors, give_back = _fold_actors(ctx, trial_id)
    nodes = ",".join(_trial_nodes())
    # which processes served it (comma-separated: loggers take scalars and strings)
    pids = ",".join(str(p) for p in ray.get([a.pid.remote() for a in actors]))

    def report(metrics: dict[str, Any]) -> None:
        value = metrics.get(METRIC)
        if metrics.get("finished") and not (value is not None and math.isfinite(value)):
            # an undefined val r (NaN) must not rank: the trial fails, with the reason
            folder.record_failure(trial_id, {"reason": UNDEFINED_SCORE, "kind": "training"})
            tune.report({"failure": UNDEFINED_SCORE, "failure_kind": "training"})
            return
        tune.report(metrics | {"nodes": nodes, "fold_pids": pids, "started_at": started})

    healthy = False
    try:
        run.run_lockstep(pool=_ActorPool(actors, ctx.groups), dataset=ctx.dataset, report=report)
        healthy = True
    except SystemExit:  # Tune stopped the trial (ASHA) inside a report: no call in flight,
        healthy = True  # so its actors are fit to serve the next trial
        raise
    except RayTaskError as exc:
        # a fold raised: NaN loss, damaged data, or a bug — the same again on a retry
        cause = exc.cause if isinstance(exc.cause, BaseException) else exc
        if isinstance(cause, Exception) and not isinstance(cause, RayError):
            return _fail(folder, trial_id, cause, str(exc))  # str: the remote traceback
        raise
    except RayError:  # a dead actor, worker or node: what Tune's retries are for
        raise
    except Exception as exc:  # a bug in this driver: a retry would fail the same way
        return _fail(folder, trial_id, exc)
    finally:  # a failed or stopped trial may leave its actors in a bad state: ended
        give_back(healthy)
    return None


def _trial_nodes() -> list[str]:
    """The Ray node ids that hold this trial's bundles (coordinator and fold actors), so the
    driver can tell a lost node from a lost worker when the trial is retried."""
    pg = ray.util.get_current_placement_group()
    if pg is not None:
        with contextlib.suppress(Exception):  # the table's layout is Ray's, not ours
            table = ray.util.placement_group_table(pg)
            nodes = {str(n) for n in (table.get("bundles_to_node_id") or {}).values() if n}
            if nodes:
                return sorted(nodes)
    return [ray.get_runtime_context().get_node_id()]


# Fold actors outlive a trial. CPU folds borrow them from the sweep's pool
# (:class:`~eeg2bold.launch.tune.fold_actor.FoldActorPool`: they serve every trial of every arm).
# GPU folds, and trials run without a sweep's driver, start theirs in the trial's bundles
# (they need the bundle's GPU share); Tune reuses the trial's process and placement group for
# the next trial of the arm (reuse_actors), so those actors serve the arm's trials.
_FOLD_ACTORS: dict[tuple[Any, ...], list[Any]] = {}


def _fold_actors(ctx: TrialContext, trial: str) -> tuple[list[Any], Callable[[bool], None]]:
    """The trial's fold actors, and how to hand them back (healthy or not) when it ends."""
    pool = _sweep_pool(ctx)
    if pool is not None:
        where = _bundle_nodes()
        wants = [
            (where.get(a + 1) or where.get(0, ""), max(1, int(ctx.fold_cpu * len(group))))
            for a, group in enumerate(ctx.groups)
        ]
        actors = ray.get(pool.lease.remote(trial, wants))

        def give_back(healthy: bool) -> None:
            with contextlib.suppress(Exception):  # the sweep (and its pool) may be ending
                ray.get(pool.give_back.remote(trial, healthy=healthy), timeout=30)

        return actors, give_back
    actors = _bundle_actors(ctx)

    def drop_unless_healthy(healthy: bool) -> None:
        if not healthy:
            _drop_fold_actors(actors)

    return actors, drop_unless_healthy


def _sweep_pool(ctx: TrialContext) -> Any:
    if ctx.fold_gpu > 0:
        return None
    try:
        return ray.get_actor(fold_pool_name(ctx.sweep_id))
    except ValueError:  # no pool: a trial run outside a sweep's driver
        return None


def _bundle_nodes() -> dict[int, str]:
    """Bundle index -> the id of the node Ray placed it on (this trial's placement group)."""
    here = ray.get_runtime_context().get_node_id()
    pg = ray.util.get_current_placement_group()
    if pg is None:
        return {0: here}
    with contextlib.suppress(Exception):  # the table's layout is Ray's, not ours
        table = ray.util.placement_group_table(pg).get("bundles_to_node_id") or {}
        return {int(k): str(v) for k, v in table.items() if v} or {0: here}
    return {0: here}


def _bundle_actors(ctx: TrialContext) -> list[Any]:
    pg = ray.util.get_current_placement_group()
    key = (
        pg.id.hex() if pg is not None else None,
        ctx.n_folds,
        ctx.folds_per_actor,
        ctx.fold_cpu,
        ctx.fold_gpu,
    )
    cached = _FOLD_ACTORS.get(key)
    if cached is not None:
        return cached
    for old_key in list(_FOLD_ACTORS):  # a new placement group: the old actors are gone
        _drop_fold_actors(_FOLD_ACTORS.pop(old_key))
    actors = []
    for a, group in enumerate(ctx.groups):
        cpu, gpu = ctx.fold_cpu * len(group), ctx.fold_gpu * len(group)
        options: dict[str, Any] = {"num_cpus": cpu, "num_gpus": gpu}
        if pg is not None:
            options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                placement_group=pg, placement_group_bundle_index=a + 1
            )
        actors.append(FoldActor.options(**options).remote(threads=max(1, int(cpu)), gpu=gpu > 0))
    _FOLD_ACTORS[key] = actors
    return actors


def _drop_fold_actors(actors: list[Any]) -> None:
    for key, cached in list(_FOLD_ACTORS.items()):
        if cached is actors:
            del _FOLD_ACTORS[key]
    for a in actors:
        with contextlib.suppress(Exception):
            ray.kill(a)

"""The module that knows Ray Tune's API, and with :mod:`eeg2bold.launch.fold_actor` Ray's (Ray
changes across 2.x; everything else sees plain dataclasses and callables).

A trial is a function trainable holding a placement group of ``1 + n_actors`` bundles: bundle 0
for the trial's coordinator, one per :class:`~eeg2bold.launch.fold_actor.FoldActor`, the engine's
:class:`~eeg2bold.training.engine.FoldHost` (one fold by default, ``resources.folds_per_actor``
of them otherwise) in its own process. CPU fold actors are borrowed from the sweep's
:class:`~eeg2bold.launch.fold_actor.FoldActorPool` (one per bundle, on the bundle's node), so
they serve every arm; GPU fold actors are started in the bundles themselves. The trial only
maps folds to actors and reports to Tune; the engine
(:class:`~eeg2bold.training.engine.ProtocolRun`) does the stepping, the metric (mean validation
r per epoch, so ASHA compares trials per epoch), the rows, files and resume state. A trial
whose configuration, data or training fails for good reports its recorded failure and ends
(never retried); one whose worker or node dies raises, and Tune retries it from the run
folder's state.

Security: Ray's token authentication is left as Ray sets it up (on by default); the dashboard
is not started unless asked for, and then binds to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import math
import os
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import fsspec
import ray
from ray import tune
from ray.exceptions import RayError, RayTaskError
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch
from ray.util.scheduling_strategies import (
    NodeAffinitySchedulingStrategy,
    PlacementGroupSchedulingStrategy,
)

from eeg2bold.errors import ConfigError, DatasetError, Eeg2BoldError
from eeg2bold.launch.fold_actor import (
    FoldActor,
    FoldActorPool,
    RunStore,
    fold_pool_name,
    run_store_name,
)
from eeg2bold.launch.plan import fold_groups
from eeg2bold.launch.resume_auth import StateSigner
from eeg2bold.run_folder import RunFolder, optuna_attrs
from eeg2bold.storage import open_dataset
from eeg2bold.training.engine import METRIC, ProtocolRun

# Our own progress lines replace Tune's tables; these keep Tune's console output quiet. A
# failed trial ends with a result that holds its failure and no metric (never a made-up or
# NaN score), which Tune's strict metric check would refuse.
_QUIET_ENV = {
    "RAY_AIR_NEW_OUTPUT": "0",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",
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
        # "local": always a fresh instance, never silently a cluster `ray start` left running
        ray.init(address="local", **kwargs)
    return dict(ray.cluster_resources())


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
# (:class:`~eeg2bold.launch.fold_actor.FoldActorPool`: they serve every trial of every arm).
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


# -- the search --------------------------------------------------------------------------
# What the study's intermediate values are (a study attribute, shown by optuna-dashboard).
INTERMEDIATE = (
    "val_r after each epoch: the Fisher-z mean over folds of each fold's best val r so far "
    "(what ASHA compares; step = epoch)"
)


class _OptunaSearch(OptunaSearch):
    """OptunaSearch that makes its study self-describing (metric name, study and trial
    attributes, intermediate values by epoch) and fails trials that failed, whether they
    raised (a dead worker) or reported a recorded failure (configuration, data, training)."""

    def __init__(
        self,
        *args: Any,
        results: str,
        study_attrs: dict[str, Any],
        start: Sequence[tuple[dict[str, Any], dict[str, Any]]] = (),
        **kwargs: Any,
    ) -> None:
        self._results = results
        self._study_attrs = study_attrs
        self._start = list(start)  # (params, user attrs) enqueued into a new study
        self._identity: dict[str, str] = {}  # Tune's trial id -> the trial's one identity
        super().__init__(*args, **kwargs)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # a sweep resumed from state an older eeg2bold pickled lacks the newer fields
        self.__dict__.update({"_start": []} | state)

    def _setup_study(self, mode: Any) -> None:
        import warnings

        import optuna

        super()._setup_study(mode)
        assert self._ot_study is not None
        with warnings.catch_warnings():  # set_metric_names is "experimental" since Optuna 3.2
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self._ot_study.set_metric_names([METRIC])
        for key, value in {**self._study_attrs, "intermediate_values": INTERMEDIATE}.items():
            self._ot_study.set_user_attr(key, value)
        # the defaults (and warm starts) go first, once: a study that has trials already
        # (a resumed sweep's, whatever Tune restored) has them
        if self._start and not self._ot_study.get_trials(deepcopy=False):
            for params, attrs in self._start:
                self._ot_study.enqueue_trial(params, user_attrs=attrs)

    def suggest(self, trial_id: str) -> dict | None:
        """Adopt an Optuna trial a killed driver left RUNNING before asking for a new one.

        After ``Tuner.restore`` the searcher knows the trials of its last checkpoint; one
        asked later (between checkpoint and kill) is RUNNING in storage but unknown to Tune.
        Reusing it keeps the study at exactly ``num_samples`` trials; re-running the
        define-by-run space on it returns its stored parameters, and the trial keeps its
        identity (``config["trial"]``), so it continues from the state it saved under that
        id in the run folder. Every trial carries its one identity as the Optuna user
        attribute ``trial_id`` from the moment it is asked.
        """
        identity = trial_id
        if trial_id not in self._ot_trials and self._ot_study is not None:
            import optuna

            known = {t.number for t in self._ot_trials.values()}
            running = self._ot_study.get_trials(
                deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)
            )
            orphans = [t for t in running if t.number not in known]
            if orphans:
                storage = self._storage  # the storage object OptunaSearch was given
                study_id = storage.get_study_id_from_name(self._ot_study.study_name)
                internal = storage.get_trial_id_from_study_id_trial_number(
                    study_id, orphans[0].number
                )
                self._ot_trials[trial_id] = optuna.trial.Trial(self._ot_study, internal)
                identity = str(orphans[0].user_attrs.get(optuna_attrs.TRIAL_ID) or trial_id)
        config = super().suggest(trial_id)
        if config is None or trial_id not in self._ot_trials:
            return config
        self._identity[trial_id] = identity
        ot_trial = self._ot_trials[trial_id]
        ot_trial.set_user_attr(optuna_attrs.TRIAL_ID, identity)
        if identity != trial_id:
            ot_trial.set_user_attr(
                optuna_attrs.TUNE_TRIAL_ID, trial_id
            )  # Ray's own id for it this time
        origin = ot_trial.user_attrs.get(
            optuna_attrs.ORIGIN, optuna_attrs.SAMPLED
        )  # set where it was enqueued
        ot_trial.set_user_attr(optuna_attrs.ORIGIN, origin)
        return {**config, "trial": identity, "origin": origin}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Intermediate values by epoch (a resumed trial restarts Tune's iteration count)."""
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None or trial_id in self._completed_trials:
            return
        if METRIC not in result or result.get("finished") or "epoch" not in result:
            return
        _report(ot_trial, result)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        import optuna

        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None or trial_id in self._completed_trials:
            return super().on_trial_complete(trial_id, result=result, error=error)
        try:
            return self._complete(ot_trial, trial_id, result, error)
        except optuna.exceptions.UpdateFinishedTrialError:
            self._completed_trials.add(trial_id)  # already told before a driver restart
            return None

    def _complete(self, ot_trial: Any, trial_id: str, result: dict | None, error: bool) -> None:
        import optuna

        result = result or {}
        identity = self._identity.get(trial_id, trial_id)
        if error or result.get("failure"):
            failure = RunFolder(self._results).read_failure(identity)
            if failure is None:
                failure = {"reason": WORKER_DIED, "kind": "worker"}
            ot_trial.set_user_attr(optuna_attrs.FAILURE_REASON, failure["reason"])
            ot_trial.set_user_attr(optuna_attrs.FAILURE_KIND, failure.get("kind", "worker"))
            assert self._ot_study is not None  # a trial exists only once the study does
            self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.FAIL)
            self._completed_trials.add(trial_id)
            return None
        if METRIC in result and "epoch" in result and not result.get("finished"):
            # Tune does not pass the result that made the scheduler stop a trial to
            # on_trial_result: record it as the trial's last intermediate value here
            _report(ot_trial, result)
        ot_trial.set_user_attr(optuna_attrs.FINISHED, bool(result.get("finished")))
        for key in optuna_attrs.FROM_RESULT:
            if result.get(key) is not None:
                ot_trial.set_user_attr(key, result[key])
        return super().on_trial_complete(trial_id, result=result, error=error)


class _ArmsSearch(Searcher):
    """The sweep's searcher: one :class:`_OptunaSearch` per arm (its own study, sampler and
    seed stream), each giving exactly its arm's number of trials. A new trial goes to the
    open arm with the fewest trials in flight (ties: plan order), so with room for several
    trials the arms run side by side, and with room for one they run in plan order."""

    def __init__(self, arms: dict[str, _OptunaSearch], samples: dict[str, int]) -> None:
        super().__init__(metric=METRIC, mode="max")
        self.arms = arms
        self.left = dict(samples)  # trials each arm has yet to give
        self.owner: dict[str, str] = {}  # Tune's trial id -> arm key
        self.live = dict.fromkeys(arms, 0)

    def set_search_properties(self, metric: Any, mode: Any, config: Any, **spec: Any) -> bool:
        return True  # every arm's searcher was made with its space, metric and mode

    def suggest(self, trial_id: str) -> dict | None:
        open_arms = [key for key in self.arms if self.left[key] > 0]
        if not open_arms:
            return Searcher.FINISHED  # type: ignore[return-value]
        key = min(open_arms, key=lambda k: self.live[k])
        config = self.arms[key].suggest(trial_id)
        if config is None:
            return None
        self.left[key] -= 1
        self.live[key] += 1
        self.owner[trial_id] = key
        return {**config, "arm": key}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        key = self.owner.get(trial_id)
        if key is not None:
            self.arms[key].on_trial_result(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        key = self.owner.get(trial_id)
        if key is None:
            return
        self.live[key] = max(0, self.live[key] - 1)
        self.arms[key].on_trial_complete(trial_id, result=result, error=error)

    def save(self, checkpoint_path: str) -> None:
        import pickle

        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        import pickle

        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))


def _report(ot_trial: Any, result: dict[str, Any]) -> None:
    """One intermediate value (step = epoch); a step already there (a resumed trial re-runs
    the epoch it was killed in) keeps its first value."""
    import warnings

    import optuna

    with warnings.catch_warnings(), contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
        warnings.filterwarnings("ignore", message=".*is already reported")
        ot_trial.report(float(result[METRIC]), step=int(result["epoch"]))


WORKER_DIED = "worker or node died (retries exhausted; see the trial's error.txt)"


class _ArmASHA(ASHAScheduler):
    """ASHA over one arm's trials, with two rules of ours:

    - the defaults trial (``origin == "defaults"``) is the arm's reference: its scores
      enter the rungs, but it is never stopped, so what the search bought is measured
      against a fully trained baseline;
    - a trial at its last epoch is never stopped (Ray's rung at ``max_t`` would cut it
      after all its epochs, before its final scores);
    - a trial that finished before a rung (every fold stopped by patience: a finished fold
      is not a loser) has its final score, the best epoch's, entered in every later rung,
      so trials reaching those rungs are compared with it too.
    """

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        if (trial.config or {}).get("origin") == "defaults":
            return self.CONTINUE
        if result.get(self._time_attr, 0) >= self._max_t:  # its last epoch: let it finish
            return self.CONTINUE
        return action

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        bracket = self._trial_info.get(trial.trial_id)
        super().on_trial_complete(tune_controller, trial, result)
        value = result.get(self._metric)
        if bracket is None or not result.get("finished") or value is None:
            return
        if not math.isfinite(value):
            return
        for milestone, recorded in bracket._rungs:  # Ray's bookkeeping (see test_search.py)
            if milestone > result.get(self._time_attr, 0) and trial.trial_id not in recorded:
                recorded[trial.trial_id] = self._metric_op * value


class _ArmsScheduler(FIFOScheduler):
    """The sweep's scheduler: each arm's trials go to that arm's own scheduler (its ASHA
    rungs), so a ridge trial is never compared with a beira trial."""

    def __init__(self, arms: dict[str, TrialScheduler]) -> None:
        super().__init__()
        self.arms = arms
        self._supports_buffered_results = all(a.supports_buffered_results for a in arms.values())

    def _of(self, trial: Any) -> TrialScheduler:
        return self.arms[(trial.config or {})["arm"]]

    def set_search_properties(self, metric: Any, mode: Any, **spec: Any) -> bool:
        return all(a.set_search_properties(metric, mode, **spec) for a in self.arms.values())

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self._of(trial).on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        self._of(trial).on_trial_error(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        return self._of(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        self._of(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self._of(trial).on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return "; ".join(f"{k}: {a.debug_string()}" for k, a in self.arms.items())


class _Echo:
    """Progress lines to stderr (picklable: Tune saves its callbacks with the experiment)."""

    def __call__(self, message: str) -> None:
        import sys

        print(message, file=sys.stderr, flush=True)


class _Progress(tune.Callback):
    """One line per epoch and per finished trial (Tune's own table is switched off), and one
    line per retry once the retried trial has resumed: which node (or worker) it lost, the
    epoch checkpoint it resumed from and where it runs now. One per arm (``arm``: the key
    its trials carry in their config), counting that arm's trials only."""

    def __init__(
        self,
        label: str,
        total: int,
        echo: Callable[[str], None],
        results: str,
        record: Callable[[str, dict[str, Any]], None] | None = None,
        arm: str | None = None,
    ):
        self.label, self.total, self.echo, self.results = label, total, echo, results
        self.record = record
        self.arm = arm
        self.finished = 0
        self.failed = 0
        self.retried = 0
        self.lost_nodes = 0
        self._pending: dict[str, list[str]] = {}  # Tune trial id -> its nodes before the loss

    def __setstate__(self, state: dict[str, Any]) -> None:
        # a sweep resumed from state an older eeg2bold pickled lacks the newer fields
        self.__dict__.update({"record": None, "lost_nodes": 0, "_pending": {}, "arm": None} | state)

    def _mine(self, trial: Any) -> bool:
        return self.arm is None or (trial.config or {}).get("arm", self.arm) == self.arm

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if not self._mine(trial):
            return
        if trial.trial_id in self._pending:
            self._resumed(trial, result)
        if METRIC in result and not result.get("finished"):
            self.echo(
                f"[{self.label}] trial {_identity(trial)} epoch {result.get('epoch')}: "
                f"val r {_r(result[METRIC])} ({result.get('folds_done', 0)} folds done)"
            )

    def on_trial_complete(self, iteration, trials, trial, **info):
        if not self._mine(trial):
            return
        self.finished += 1
        last = trial.last_result or {}
        if last.get("failure"):
            self.failed += 1
            self.echo(
                f"[{self.label}] trial {_identity(trial)} FAILED ({self.finished}/{self.total}, "
                f"{last.get('failure_kind')}): {last['failure']}"
            )
            return
        self.echo(
            f"[{self.label}] trial {_identity(trial)} finished ({self.finished}/{self.total}): "
            f"val r {_r(last.get(METRIC))}"
            + (f", test r {last['test_r']:.3f}" if "test_r" in last else " (stopped early)")
        )

    def on_trial_recover(self, iteration, trials, trial, **info):
        # told once it has resumed (the epoch it resumes from and its new node are known then)
        if not self._mine(trial):
            return
        self.retried += 1
        self._pending[trial.trial_id] = _nodes_of(trial.last_result)

    def on_trial_error(self, iteration, trials, trial, **info):
        if not self._mine(trial):
            return
        self.finished += 1
        self.failed += 1
        before = self._pending.pop(trial.trial_id, None)
        lost = _dead(before or _nodes_of(trial.last_result))
        self.echo(
            f"[{self.label}] trial {_identity(trial)} FAILED ({self.finished}/{self.total}): "
            + (f"lost its node {_describe(lost)}; " if lost else "")
            + WORKER_DIED
        )

    def _resumed(self, trial: Any, result: dict[str, Any]) -> None:
        before = self._pending.pop(trial.trial_id)
        now = _nodes_of(result)
        lost = _dead(before)
        epoch = int(result.get("resumed_from") or 0)
        start = (
            f"resumed from the epoch {epoch} checkpoint"
            if epoch
            else "restarted from the beginning (it had finished no epoch)"
        )
        where = "another node" if lost and not set(now) & set(lost) else "node"
        if not before:  # it died before reporting where it ran
            what = "lost its worker or node before its first epoch"
        elif lost:
            self.lost_nodes += 1
            what = f"lost its node {_describe(lost)}"
        else:
            what = f"lost its worker process (node {_describe(before)} is still up)"
        self.echo(
            f"[{self.label}] trial {_identity(trial)} {what}; {start} on {where} {_describe(now)}"
        )
        if self.record is not None:
            event = {"lost_node": bool(lost), "resumed_from": epoch, "lost": lost, "on": now}
            try:
                self.record(_identity(trial), event)
            except Exception as exc:  # the count is a courtesy; never let it stop a sweep
                self.echo(f"[{self.label}] (could not record the retry in Optuna: {exc})")


def _r(value: Any) -> str:
    """A val r for people: ``undefined`` where no fold has a defined score yet (the metric
    is then the Fisher mean of -inf, i.e. -1, which ranks last but means nothing)."""
    if value is None or not math.isfinite(value) or value <= -1.0:
        return "undefined"
    return f"{value:.3f}"


def _nodes_of(result: dict[str, Any] | None) -> list[str]:
    """The node ids a trial result names (a comma-separated string: TensorBoard logs scalars
    and strings, not lists)."""
    return [n for n in str((result or {}).get("nodes") or "").split(",") if n]


def _dead(nodes: Sequence[str]) -> list[str]:
    """Which of these Ray node ids are gone: marked dead, or (before Ray's heartbeat timeout
    marks it) a raylet that no longer answers on its port."""
    if not nodes:
        return []
    known = {n["NodeID"]: n for n in ray.nodes()}
    return [n for n in nodes if n not in known or not _answers(known[n])]


def _answers(node: dict[str, Any]) -> bool:
    import socket

    if not node.get("Alive"):
        return False
    address, port = node.get("NodeManagerAddress"), node.get("NodeManagerPort")
    if not address or not port:
        return True  # nothing to probe: trust Ray's view
    try:
        with socket.create_connection((address, int(port)), timeout=2.0):
            return True
    except OSError:
        return False


def _describe(nodes: Sequence[str]) -> str:
    """Node ids as users see them in `ray status`: a short id and the node's address."""
    if not nodes:
        return "(unknown)"
    address = {n["NodeID"]: n.get("NodeManagerAddress", "?") for n in ray.nodes()}
    return ", ".join(f"{n[:8]} ({address.get(n, '?')})" for n in nodes)


class _RetryRecorder:
    """Appends a retry to its Optuna trial (user attribute ``retries``), where `eeg2bold
    trials` and the report count them. Picklable: Tune saves callbacks, so only the storage
    URL travels (its template form: no secrets)."""

    def __init__(self, optuna_url: str, study_name: str):
        self.optuna_url, self.study_name = optuna_url, study_name

    def __call__(self, identity: str, event: dict[str, Any]) -> None:
        import optuna

        from eeg2bold.storage.optuna_db import optuna_storage

        storage = optuna_storage(self.optuna_url)
        study = optuna.load_study(study_name=self.study_name, storage=storage)
        for t in study.get_trials(deepcopy=False):
            if str(t.user_attrs.get(optuna_attrs.TRIAL_ID)) == identity:
                retries = [*t.user_attrs.get(optuna_attrs.RETRIES, []), event]
                storage.set_trial_user_attr(t._trial_id, optuna_attrs.RETRIES, retries)
                return


class _SignState(tune.Callback):
    """Signs Tune's saved state after Tune writes it (see :mod:`eeg2bold.launch.resume_auth`),
    so that ``--resume`` loads only state this user's drivers wrote."""

    def __init__(self, experiment: str):
        self.signer = StateSigner(experiment)
        self._last = 0.0

    def on_step_end(self, iteration, trials, **info):
        import time

        if time.monotonic() - self._last >= 1.0:  # Tune saves at most every few seconds
            self.signer.sign_if_changed()
            self._last = time.monotonic()

    def on_experiment_end(self, trials, **info):
        self.signer.sign_if_changed()


@dataclass
class ArmSearch:
    """One arm inside the sweep's Tuner: its own Optuna study, sampler, trial count and
    scheduler rungs, and the resources of one of its trials."""

    key: str  # the plan's arm key (protocol[@label]/model): trials carry it as config["arm"]
    name: str  # how progress lines name it
    study_name: str
    study_attrs: dict[str, Any]
    space: Callable[[Any], dict[str, Any]]
    context: TrialContext
    bundles: list[dict[str, float]]
    num_samples: int
    sampler: Any  # the arm's Optuna sampler (launch.search.make_sampler)
    start: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)


@dataclass
class SweepSettings:
    """Everything the sweep's one Tuner needs, as plain data: the arms it runs side by side
    and what they share (the cluster, ``max_concurrent`` trials at once, the scheduler's
    settings, failure retries, the time limit)."""

    name: str
    storage_path: str
    optuna_storage: Any
    arms: list[ArmSearch]
    max_concurrent: int
    scheduler: str
    max_epochs: int
    grace_period: int
    reduction_factor: float
    time_limit_s: float | None
    max_failures: int
    optuna_url: str = ""  # template form, for recording retries (see _RetryRecorder)
    tracking: dict[str, Any] = field(default_factory=dict)  # the study's tracking section


@dataclass
class ArmOutcome:
    """What one arm's trials did: those that ended, failed, and were retried (after losing
    their node, or only a worker process)."""

    trials: list[dict[str, Any]]
    failed: int
    retried: int
    lost_nodes: int = 0


def _trial_dirname(trial: Any) -> str:
    """Ray's trial folder (TensorBoard files) carries the trial's one identity."""
    return f"trial_{_identity(trial)}"


def _identity(trial: Any) -> str:
    return str((trial.config or {}).get("trial") or trial.trial_id)


class _ArmResources:
    """A trial's placement group, by its arm (``tune.with_resources`` with a callable)."""

    def __init__(self, factories: dict[str, Any]) -> None:
        self.factories = factories

    def __call__(self, config: dict[str, Any]) -> Any:
        arm = (config or {}).get("arm")
        if arm in self.factories:
            return self.factories[arm]
        # asked before a trial has its arm: the largest, so nothing is under-reserved
        return max(self.factories.values(), key=lambda f: sum(b.get("CPU", 0) for b in f.bundles))


def _trainable(settings: SweepSettings) -> Any:
    contexts = {arm.key: asdict(arm.context) for arm in settings.arms}
    fn = tune.with_parameters(run_trial, contexts=contexts)
    factories = {
        arm.key: tune.PlacementGroupFactory(arm.bundles, strategy="PACK") for arm in settings.arms
    }
    return tune.with_resources(fn, _ArmResources(factories))


def _scheduler(settings: SweepSettings) -> TrialScheduler:
    if settings.scheduler != "asha":
        return FIFOScheduler()
    return _ArmASHA(
        time_attr="epoch",  # epochs trained (a resumed trial continues its count)
        max_t=settings.max_epochs,
        grace_period=min(settings.grace_period, settings.max_epochs),
        reduction_factor=settings.reduction_factor,
        stop_last_trials=False,
    )


def run_arms(
    settings: SweepSettings, *, resume: bool, echo: Callable[[str], None]
) -> dict[str, ArmOutcome]:
    """Fit (or resume) the sweep's one Tuner over all its arms; the outcome of each arm.

    One Tuner, so one trial coordinator process serves trial after trial of every arm
    (``reuse_actors``), the fold actors come from the sweep's pool, and trials of different
    arms run at once whenever ``max_concurrent`` and the cluster's room (Ray's placement
    groups) allow. Each arm keeps its own searcher (:class:`_ArmsSearch`) and its own
    scheduler rungs (:class:`_ArmsScheduler`)."""
    path = f"{settings.storage_path.rstrip('/')}/{settings.name}"
    trainable = _trainable(settings)
    progress = {
        arm.key: _Progress(
            arm.name,
            arm.num_samples,
            _Echo(),
            arm.context.results,
            _RetryRecorder(settings.optuna_url, arm.study_name) if settings.optuna_url else None,
            arm=arm.key,
        )
        for arm in settings.arms
    }
    if resume and tune.Tuner.can_restore(path):
        StateSigner(path).restore_verified()  # or a one-line refusal: nothing unpickled
        tuner = tune.Tuner.restore(
            path, trainable=trainable, resume_unfinished=True, resume_errored=False
        )
    else:
        searchers = {
            arm.key: _OptunaSearch(
                space=arm.space,
                metric=METRIC,
                mode="max",
                sampler=arm.sampler,
                storage=settings.optuna_storage,
                study_name=arm.study_name,
                results=arm.context.results,
                study_attrs=arm.study_attrs,
                start=arm.start,
            )
            for arm in settings.arms
        }
        # a study may hold finished trials already (a resume whose Tune state is gone, or an
        # older eeg2bold's): only the rest of each arm's trials are asked for
        left = {arm.key: still_to_run(searchers[arm.key], arm.num_samples) for arm in settings.arms}
        for arm in settings.arms:
            if left[arm.key] < arm.num_samples:
                echo(
                    f"[{arm.key}] {arm.num_samples - left[arm.key]} trial(s) already finished "
                    f"in its study; {left[arm.key]} to run"
                )
        if not any(left.values()):
            return {arm.key: _finished_outcome(settings, arm) for arm in settings.arms}
        searcher = _ArmsSearch(searchers, left)
        scheduler = _ArmsScheduler({arm.key: _scheduler(settings) for arm in settings.arms})
        trackers = [c for arm in settings.arms for c in _trackers(settings, arm)]
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                scheduler=scheduler,
                metric=METRIC,
                mode="max",
                num_samples=sum(left.values()),
                max_concurrent_trials=settings.max_concurrent,
                time_budget_s=settings.time_limit_s,
                trial_dirname_creator=_trial_dirname,
                reuse_actors=True,  # a trial coordinator process serves many trials
            ),
            run_config=tune.RunConfig(
                name=settings.name,
                storage_path=settings.storage_path,
                failure_config=tune.FailureConfig(max_failures=settings.max_failures),
                callbacks=[*progress.values(), _SignState(path), *trackers],
                verbose=0,
            ),
        )
    import logging

    # after a resume, trials the killed driver had only started have no result files yet
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    grid = tuner.fit()
    trials: dict[str, list[dict[str, Any]]] = {arm.key: [] for arm in settings.arms}
    for index in range(len(grid)):
        result = grid[index]
        metrics = result.metrics or {}
        arm_key = (result.config or {}).get("arm")
        if arm_key not in trials:
            continue
        trials[arm_key].append(
            {
                "trial": metrics.get("trial") or metrics.get("trial_id"),
                "val_r": metrics.get(METRIC),
                "test_r": metrics.get("test_r"),
                "finished": bool(metrics.get("finished")),
                "failure": metrics.get("failure")
                or (str(result.error).splitlines()[0] if result.error else None),
            }
        )
    outcomes = {}
    for arm in settings.arms:
        # a restored Tuner runs the callbacks it pickled, not `progress`: count from Optuna too
        events = _recorded_retries(settings, arm)
        outcomes[arm.key] = ArmOutcome(
            trials=trials[arm.key],
            failed=sum(1 for t in trials[arm.key] if t["failure"]),
            retried=max(progress[arm.key].retried, len(events)),
            lost_nodes=max(
                progress[arm.key].lost_nodes, sum(1 for e in events if e.get("lost_node"))
            ),
        )
    return outcomes


def still_to_run(searcher: _OptunaSearch, num_samples: int) -> int:
    """How many of an arm's ``num_samples`` trials its study has not finished (complete,
    failed or pruned); trials left RUNNING are adopted by the searcher, so they count here."""
    import optuna

    states = (
        optuna.trial.TrialState.COMPLETE,
        optuna.trial.TrialState.FAIL,
        optuna.trial.TrialState.PRUNED,
    )
    assert searcher._ot_study is not None  # made with its space: the study exists
    return max(0, num_samples - len(searcher._ot_study.get_trials(deepcopy=False, states=states)))


def _finished_outcome(settings: SweepSettings, arm: ArmSearch) -> ArmOutcome:
    """An arm whose study already holds all its trials: nothing ran now."""
    return ArmOutcome(trials=[], failed=0, retried=len(_recorded_retries(settings, arm)))


def _trackers(settings: SweepSettings, arm: ArmSearch) -> list[Any]:
    if not any(settings.tracking.values()):
        return []
    from eeg2bold.launch.tracking import tracking_callbacks  # imports MLflow / W&B

    ctx = arm.context
    return tracking_callbacks(
        settings.tracking,
        sweep=ctx.sweep,
        protocol=ctx.protocol,
        model=ctx.model,
        results=ctx.results,
        arm=arm.key,
    )


def _recorded_retries(settings: SweepSettings, arm: ArmSearch) -> list[dict[str, Any]]:
    import optuna

    try:
        study = optuna.load_study(study_name=arm.study_name, storage=settings.optuna_storage)
    except KeyError:
        return []
    return [
        e
        for t in study.get_trials(deepcopy=False)
        for e in t.user_attrs.get(optuna_attrs.RETRIES, [])
    ]

"""The one module that knows Ray's API (Ray changes across 2.x; everything else sees plain
dataclasses and callables).

A trial is a function trainable holding a placement group of ``1 + n_folds`` bundles: bundle 0
for the trial's coordinator, one per fold for a :class:`FoldActor` that wraps a
:class:`~eeg2bold.training.fit.FoldTrainer`. The coordinator steps every fold one epoch, reports
the mean validation r (Fisher z of each fold's best so far) to Tune — so ASHA compares trials
per epoch — writes the per-fold, per-ROI rows to the results table and checkpoints every fold.

Security: Ray's token authentication is left as Ray sets it up (on by default); the dashboard
is not started unless asked for, and then binds to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import fsspec
import numpy as np
import ray
from ray import tune
from ray.exceptions import RayTaskError
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search.optuna import OptunaSearch
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from eeg2bold.errors import Eeg2BoldError
from eeg2bold.launch.fold_worker import FoldWorker

METRIC = "val_r"
# Our own progress lines replace Tune's tables; these keep Tune's console output quiet.
_QUIET_ENV = {
    "RAY_AIR_NEW_OUTPUT": "0",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
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


def shutdown_ray() -> None:
    if ray.is_initialized():
        ray.shutdown()


def cluster_nodes() -> list[dict[str, Any]]:
    """Alive nodes with their resources."""
    return [n for n in ray.nodes() if n.get("Alive")]


def check_shared_path(url: str) -> list[str]:
    """Which alive nodes cannot read a marker file written at ``url`` (empty: all can)."""
    import uuid

    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

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


# -- the fold actor ----------------------------------------------------------------------
# The class lives in a module without Ray/Tune/Optuna imports so actor processes start light.
FoldActor = ray.remote(FoldWorker)


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


class TrialFailure(Eeg2BoldError):
    """A trial that cannot succeed (NaN loss, bad configuration): fails alone, not retried."""


def _failure_path(results: str, trial_id: str) -> tuple[Any, str]:
    fs, root = fsspec.core.url_to_fs(results)
    return fs, f"{root.rstrip('/')}/failures/{trial_id}.json"


def record_failure(results: str, trial_id: str, info: dict[str, Any]) -> None:
    fs, path = _failure_path(results, trial_id)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(path, "w") as f:
        json.dump(info, f)


def read_failure(results: str, trial_id: str) -> dict[str, Any] | None:
    fs, path = _failure_path(results, trial_id)
    if not fs.exists(path):
        return None
    with fs.open(path, "r") as f:
        return json.load(f)


def _fisher(values: list[float]) -> float:
    from eeg2bold.training.metrics import fisher_mean

    return float(fisher_mean(np.asarray(values)))


def run_trial(config: dict[str, Any], context: dict[str, Any]) -> None:
    """Ray Tune function trainable: one configuration on every fold of the arm's protocol."""
    import logging

    from eeg2bold.search_spaces import experiment_from_sample
    from eeg2bold.study.results import ResultsWriter

    started = time.perf_counter()
    for name in ("ray.tune", "ray.train"):
        logging.getLogger(name).setLevel(logging.WARNING)
    ctx = TrialContext(**context)
    trial_id = tune.get_context().get_trial_id()
    previous = read_failure(ctx.results, trial_id)
    if previous is not None:  # a deterministic failure: do not burn a retry on it
        raise TrialFailure(previous["reason"])
    try:
        experiment = experiment_from_sample(
            config["sample"],
            model=ctx.model,
            protocol=ctx.protocol,
            protocol_options=ctx.protocol_options,
            data=ctx.data,
            train=ctx.train,
        )
    except Eeg2BoldError as exc:
        record_failure(ctx.results, trial_id, {"reason": str(exc), "kind": "config"})
        raise TrialFailure(str(exc)) from None
    config_hash = experiment.config_hash()
    writer = ResultsWriter(f"{ctx.results.rstrip('/')}/table")
    done_before = _final_metrics(writer, trial_id)
    if done_before is not None:  # finished before a driver restart: report, don't redo
        tune.report({**done_before, "config_hash": config_hash})
        return
    actors = _fold_actors(ctx)
    base = {"sweep": ctx.sweep, "trial": trial_id, "config_hash": config_hash}
    healthy = False
    try:
        spec = experiment.model_dump_json()
        ray.get([a.setup.remote(ctx.dataset, spec, i) for i, a in enumerate(actors)])
        setup_seconds = time.perf_counter() - started
        checkpoint = tune.get_checkpoint()
        done = [False] * ctx.n_folds
        best = [-1.0] * ctx.n_folds
        states: dict[int, bytes] = {}
        if checkpoint is not None:
            with checkpoint.as_directory() as folder:
                blobs = [
                    _read_bytes(os.path.join(folder, f"fold{i}.pt")) for i in range(ctx.n_folds)
                ]
                meta = json.loads(_read_bytes(os.path.join(folder, "meta.json")))
            ray.get([a.load.remote(b) for a, b in zip(actors, blobs, strict=True)])
            done, best = meta["done"], meta["best"]
            states = dict(enumerate(blobs))
        while not all(done):
            active = [i for i in range(ctx.n_folds) if not done[i]]
            t0 = time.perf_counter()
            reports = ray.get([actors[i].step.remote() for i in active])
            rows = []
            for i, rep in zip(active, reports, strict=True):
                done[i], best[i] = rep["done"], rep["best"]
                rows += _epoch_rows(experiment, base, i, rep)
            writer.write(rows, tag=f"{trial_id}-epoch{reports[0]['epoch']}")
            fresh = ray.get([actors[i].state.remote() for i in active])  # done folds are frozen
            states.update(zip(active, fresh, strict=True))
            blobs = [states[i] for i in range(ctx.n_folds)]
            fold_seconds = max(r["seconds"] for r in reports)
            metrics = {
                METRIC: _fisher(best),
                "val_r_epoch": _fisher([r["val_mean"] for r in reports]),
                "epoch": max(r["epoch"] for r in reports),
                "folds_done": int(sum(done)),
                "epoch_seconds": time.perf_counter() - t0,
                "fold_seconds": fold_seconds,  # the slowest fold's own training + scoring
                "setup_seconds": setup_seconds,
            }
            with tempfile.TemporaryDirectory() as folder:
                for i, blob in enumerate(blobs):
                    with open(os.path.join(folder, f"fold{i}.pt"), "wb") as f:
                        f.write(blob)
                with open(os.path.join(folder, "meta.json"), "w") as meta_file:
                    json.dump({"done": done, "best": best}, meta_file)
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
        finals = ray.get(
            [a.finish.remote(ctx.sweep, trial_id, config_hash, ctx.results) for a in actors]
        )
        writer.write([r for f in finals for r in f["rows"]], tag=f"{trial_id}-final")
        healthy = True
        tune.report(
            {
                METRIC: _fisher([f["val"] for f in finals]),
                "test_r": _fisher([f["test"] for f in finals]),
                "epoch": max(f["best_epoch"] for f in finals),
                "finished": True,
                "config_hash": config_hash,
                "finish_seconds": max(f["seconds"] for f in finals),  # slowest fold's
            }
        )
    except RayTaskError as exc:
        cause = exc.cause if isinstance(exc.cause, BaseException) else exc
        if isinstance(cause, Eeg2BoldError):  # NaN loss and the like: deterministic
            reason = f"{type(cause).__name__}: {cause}"
            record_failure(ctx.results, trial_id, {"reason": reason, "kind": "training"})
            raise TrialFailure(reason) from None
        raise
    finally:
        if not healthy:  # a failed or stopped trial may leave actors in a bad state
            _drop_fold_actors(actors)


# Fold actors outlive a trial: Tune reuses the trial's process and placement group for the
# next trial of the arm (reuse_actors), so the actors in its bundles are reused too — no new
# processes, no repeated imports, and each worker keeps the runs it has read.
_FOLD_ACTORS: dict[tuple[Any, ...], list[Any]] = {}


def _fold_actors(ctx: TrialContext) -> list[Any]:
    pg = ray.util.get_current_placement_group()
    key = (pg.id.hex() if pg is not None else None, ctx.n_folds, ctx.fold_cpu, ctx.fold_gpu)
    cached = _FOLD_ACTORS.get(key)
    if cached is not None:
        return cached
    for old_key in list(_FOLD_ACTORS):  # a new placement group: the old actors are gone
        _drop_fold_actors(_FOLD_ACTORS.pop(old_key))
    threads = max(1, int(ctx.fold_cpu))
    actors = []
    for i in range(ctx.n_folds):
        options: dict[str, Any] = {"num_cpus": ctx.fold_cpu, "num_gpus": ctx.fold_gpu}
        if pg is not None:
            options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                placement_group=pg, placement_group_bundle_index=i + 1
            )
        actors.append(FoldActor.options(**options).remote(threads, ctx.fold_gpu > 0))
    _FOLD_ACTORS[key] = actors
    return actors


def _drop_fold_actors(actors: list[Any]) -> None:
    for key, cached in list(_FOLD_ACTORS.items()):
        if cached is actors:
            del _FOLD_ACTORS[key]
    for a in actors:
        with contextlib.suppress(Exception):
            ray.kill(a)


def _final_metrics(writer: Any, trial_id: str) -> dict[str, Any] | None:
    """The final report of a trial whose final rows are already in the results table."""
    import pyarrow.parquet as pq

    parts = writer.fs.glob(f"{writer.root.rstrip('/')}/{trial_id}-final-*.parquet")
    if not parts:
        return None
    with writer.fs.open(parts[0], "rb") as f:
        rows = pq.read_table(f).to_pandas()
    scores = {}
    for split in ("val", "test"):
        per_fold = (
            rows[rows["split"] == split].groupby("fold")["r"].apply(lambda r: _fisher(list(r)))
        )
        scores[split] = _fisher(list(per_fold))
    return {
        METRIC: scores["val"],
        "test_r": scores["test"],
        "epoch": int(rows["epoch"].max()),
        "finished": True,
    }


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _epoch_rows(
    experiment: Any, base: dict[str, Any], fold: int, rep: dict[str, Any]
) -> list[dict]:
    """Results-table rows of one fold's val scores at one epoch."""
    return [
        {
            **base,
            "model": experiment.model,
            "protocol": experiment.protocol,
            "fold": fold,
            "subject": rep["subject"],
            "roi": roi,
            "split": "val",
            "epoch": rep["epoch"],
            "seed": experiment.train.seed,
            "final": False,
            "r": float(r),
            "n": rep["n_val"],
        }
        for roi, r in zip(rep["outputs"], rep["val_r"], strict=True)
    ]


# -- the search --------------------------------------------------------------------------
class _OptunaSearch(OptunaSearch):
    """OptunaSearch that records each trial's outcome as Optuna user attributes (visible in
    optuna-dashboard) and marks errored trials FAIL even when they reported earlier epochs."""

    def __init__(self, *args: Any, results: str, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._results = results

    def suggest(self, trial_id: str) -> dict | None:
        """Adopt an Optuna trial a killed driver left RUNNING before asking for a new one.

        After ``Tuner.restore`` the searcher knows the trials of its last checkpoint; one
        asked later (between checkpoint and kill) is RUNNING in storage but unknown. Reusing
        it keeps the study at exactly ``num_samples`` trials; re-running the define-by-run
        space on it returns its stored parameters.
        """
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
        return super().suggest(trial_id)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        import optuna

        # a trial finished before a driver restart: Tune replays its end (see run_trial)
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            super().on_trial_result(trial_id, result)

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
        ot_trial.set_user_attr("tune_trial_id", trial_id)
        if error:
            import optuna

            failure = read_failure(self._results, trial_id)
            reason = failure["reason"] if failure else "worker or node died (see error.txt)"
            ot_trial.set_user_attr("failure_reason", reason)
            assert self._ot_study is not None  # a trial exists only once the study does
            self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.FAIL)
            self._completed_trials.add(trial_id)
            return None
        result = result or {}
        ot_trial.set_user_attr("finished", bool(result.get("finished")))
        for key, attr in (
            ("config_hash", "config_hash"),
            ("test_r", "test_r"),
            ("epoch", "epochs"),
        ):
            if result.get(key) is not None:
                ot_trial.set_user_attr(attr, result[key])
        return super().on_trial_complete(trial_id, result=result, error=error)


class _Echo:
    """Progress lines to stderr (picklable: Tune saves its callbacks with the experiment)."""

    def __call__(self, message: str) -> None:
        import sys

        print(message, file=sys.stderr, flush=True)


class _Progress(tune.Callback):
    """One line per epoch and per finished trial (Tune's own table is switched off), and the
    trial's outcome recorded as Optuna user attributes (visible in optuna-dashboard)."""

    def __init__(self, label: str, total: int, echo: Callable[[str], None], results: str):
        self.label, self.total, self.echo, self.results = label, total, echo, results
        self.finished = 0

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if not result.get("finished"):
            self.echo(
                f"[{self.label}] trial {trial.trial_id} epoch {result.get('epoch')}: "
                f"val r {result.get(METRIC, float('nan')):.3f} "
                f"({result.get('folds_done', 0)} folds done)"
            )

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.finished += 1
        last = trial.last_result or {}
        self.echo(
            f"[{self.label}] trial {trial.trial_id} finished ({self.finished}/{self.total}): "
            f"val r {last.get(METRIC, float('nan')):.3f}"
            + (f", test r {last['test_r']:.3f}" if "test_r" in last else " (stopped early)")
        )

    def on_trial_error(self, iteration, trials, trial, **info):
        self.finished += 1
        failure = read_failure(self.results, trial.trial_id)
        reason = failure["reason"] if failure else "worker or node died (see the trial's error.txt)"
        self.echo(
            f"[{self.label}] trial {trial.trial_id} FAILED ({self.finished}/{self.total}): {reason}"
        )


@dataclass
class ArmSettings:
    """Everything the Tuner of one arm needs, as plain data."""

    name: str
    storage_path: str
    study_name: str
    optuna_storage: Any
    space: Callable[[Any], dict[str, Any]]
    context: TrialContext
    bundles: list[dict[str, float]]
    num_samples: int
    max_concurrent: int
    scheduler: str
    max_epochs: int
    grace_period: int
    reduction_factor: float
    time_limit_s: float | None
    max_failures: int
    seed: int


def _trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


def _trainable(settings: ArmSettings) -> Any:
    fn = tune.with_parameters(run_trial, context=asdict(settings.context))
    return tune.with_resources(fn, tune.PlacementGroupFactory(settings.bundles, strategy="PACK"))


def run_arm(settings: ArmSettings, *, resume: bool, echo: Callable[[str], None]) -> list[dict]:
    """Fit (or resume) one arm's Tuner; returns one summary dict per trial."""
    import optuna

    path = f"{settings.storage_path.rstrip('/')}/{settings.name}"
    trainable = _trainable(settings)
    callbacks: list[tune.Callback] = [
        _Progress(settings.name, settings.num_samples, _Echo(), settings.context.results)
    ]
    if resume and tune.Tuner.can_restore(path):
        tuner = tune.Tuner.restore(
            path, trainable=trainable, resume_unfinished=True, resume_errored=False
        )
    else:
        searcher = _OptunaSearch(
            space=settings.space,
            metric=METRIC,
            mode="max",
            sampler=optuna.samplers.TPESampler(seed=settings.seed),
            storage=settings.optuna_storage,
            study_name=settings.study_name,
            results=settings.context.results,
        )
        if settings.scheduler == "asha":
            scheduler: Any = ASHAScheduler(
                time_attr="training_iteration",
                max_t=settings.max_epochs,
                grace_period=min(settings.grace_period, settings.max_epochs),
                reduction_factor=settings.reduction_factor,
                stop_last_trials=False,
            )
        else:
            scheduler = FIFOScheduler()
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                scheduler=scheduler,
                metric=METRIC,
                mode="max",
                num_samples=settings.num_samples,
                max_concurrent_trials=settings.max_concurrent,
                time_budget_s=settings.time_limit_s,
                trial_dirname_creator=_trial_dirname,
                reuse_actors=True,  # a trial coordinator process serves many trials
            ),
            run_config=tune.RunConfig(
                name=settings.name,
                storage_path=settings.storage_path,
                failure_config=tune.FailureConfig(max_failures=settings.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                callbacks=callbacks,
                verbose=0,
            ),
        )
    grid = tuner.fit()
    out = []
    for index in range(len(grid)):
        result = grid[index]
        metrics = result.metrics or {}
        out.append(
            {
                "trial": metrics.get("trial_id"),
                "val_r": metrics.get(METRIC),
                "test_r": metrics.get("test_r"),
                "finished": bool(metrics.get("finished")),
                "error": str(result.error) if result.error else None,
            }
        )
    return out

"""Run a sweep: every arm (protocol × model) a search driven by its own Optuna study, all
arms in one Ray Tune run (side by side where the cluster has room); resumable with
``resume=True`` after the driver is killed.

State lives in ``<results>/sweep.json`` (plan, sweep id, which arms are done), written
atomically after each change; Tune's experiment folder and the Optuna storage hold the rest.
On resume, finished arms are skipped, the interrupted run is restored by Tune (no trial lost
or repeated) and Optuna trials the killed driver left RUNNING are marked FAIL (``orphaned``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from eeg2bold.errors import ConfigError
from eeg2bold.launch.config import (
    StudyConfig,
    WarmStart,
    parse_study_config,
    validate_study,
)
from eeg2bold.launch.plan import Arm, SweepPlan, format_plan, largest_arm, make_plan
from eeg2bold.run_folder import RunFolder, optuna_attrs
from eeg2bold.run_folder.files import is_url
from eeg2bold.search_spaces import space_function
from eeg2bold.storage.location import display_url, expand_env
from eeg2bold.storage.optuna_db import optuna_storage

TUNE_EXPERIMENT = "arms"  # <results>/ray/arms: the one Tuner's experiment (all arms)


@dataclass
class SweepOutcome:
    plan: SweepPlan
    arms: dict[str, Any] = field(default_factory=dict)  # arm key -> tuner.ArmOutcome
    orphans: int = 0
    ray_log: str | None = None  # where Ray's own console output went (None: nothing, or --debug)

    @property
    def n_trials(self) -> int:
        return sum(len(a.trials) for a in self.arms.values())

    @property
    def n_failed(self) -> int:
        return sum(a.failed for a in self.arms.values())

    @property
    def n_retried(self) -> int:
        return sum(a.retried for a in self.arms.values())

    @property
    def n_lost_nodes(self) -> int:
        """Retries whose trial had lost its node (the rest lost only a worker process)."""
        return sum(a.lost_nodes for a in self.arms.values())


def study_attributes(plan: SweepPlan, config: StudyConfig, arm: Arm) -> dict[str, Any]:
    """What an arm's Optuna study says about itself (optuna-dashboard shows these): enough to
    rebuild any trial's configuration from Optuna alone, with the fixed search values."""
    from eeg2bold.search_spaces import fixed_values

    return {
        "sweep": plan.name,
        "sweep_id": plan.sweep_id,
        "protocol": arm.protocol,
        "model": arm.model,
        "dataset": plan.dataset,
        "metric": "val_r: Fisher-z mean over folds of each fold's validation r (selects)",
        "fixed": fixed_values(config.search),
        "protocol_options": arm.options,
        "label": arm.label or arm.protocol,
        "data": config.data_settings(),
        "train": config.train_settings(),
        "results": plan.results,
    }


def results_root(config: StudyConfig) -> str:
    """The results location as Ray needs it: absolute for local folders."""
    url = config.results_url
    return url if "://" in url else str(Path(url).resolve())


def _read_state(root: str) -> dict[str, Any] | None:
    folder = RunFolder(root)
    return folder.read_manifest() if folder.kind == "sweep" else None


def _write_state(root: str, state: dict[str, Any]) -> None:
    RunFolder(root).write_manifest("sweep", state)


def _plan_state(plan: SweepPlan, config: StudyConfig) -> dict[str, Any]:
    from eeg2bold.provenance import environment

    return {
        "plan": plan.to_dict(),
        "config": config.model_dump(mode="json"),
        "provenance": environment(),  # versions and git commit the sweep started with
    }


def prepare(config: StudyConfig, *, resume: bool) -> tuple[SweepPlan, dict[str, Any] | None]:
    """The plan to run: a new one, or the stored one when resuming (config must match)."""
    root = results_root(config)
    state = _read_state(root)
    if state is not None and not resume:
        raise ConfigError(
            f"a sweep already exists in {display_url(config.results_url)} "
            f"(id {state['plan']['sweep_id']}): pass --resume to continue it, or use another "
            "name or results folder"
        )
    if state is None:  # with resume: nothing to resume yet (e.g. a requeued job), so start
        return make_plan(config), None
    stored = parse_study_config(state["config"], where=RunFolder(root).manifest_path)
    # a warm start only matters when an arm's study is made: the one the sweep began with
    # holds, whether or not --warm-start is passed again
    if stored.model_dump(exclude={"warm_start"}) != config.model_dump(exclude={"warm_start"}):
        raise ConfigError(
            "the study config differs from the one the sweep was started with; resume with the "
            f"original config (a copy is in {display_url(RunFolder(root).manifest_path)})"
        )
    plan_dict = state["plan"]
    plan = SweepPlan(**{**plan_dict, "arms": [Arm(**a) for a in plan_dict["arms"]]})
    return plan, state


def run_sweep(
    config: StudyConfig,
    *,
    address: str | None = None,
    resume: bool = False,
    dry_run: bool = False,
    echo: Callable[[str], None] = print,
    num_cpus: float | None = None,
    debug: bool = False,
) -> SweepOutcome | str:
    """Run (or with ``dry_run`` only describe) a sweep; returns its outcome or the plan text.
    Ray's own console output goes to ``<results>/logs/ray.log`` unless ``debug``."""
    validate_study(config)  # before anything runs, dry run or not
    if dry_run:
        existing = _read_state(results_root(config)) is not None
        plan, _ = prepare(config, resume=existing)
        note = "\n\n(an existing sweep: run with --resume to continue it)" if existing else ""
        return format_plan(plan, config) + note
    plan, state = prepare(config, resume=resume)
    if state is not None:  # resuming: the warm start the sweep began with
        stored = state["config"].get("warm_start")
        config = config.model_copy(update={"warm_start": WarmStart(**stored) if stored else None})

    # Ray's modules, imported here only: a dry run never loads Ray
    from eeg2bold.launch.tune import runtime

    root = results_root(config)
    started_here = not runtime.ray.is_initialized()
    resources = runtime.init_ray(address=address, num_cpus=num_cpus)
    try:
        per_trial = sum(b.get("CPU", 0.0) for b in plan.bundles)
        per_trial_gpu = sum(b.get("GPU", 0.0) for b in plan.bundles)
        if (
            per_trial > resources.get("CPU", 0.0) + 1e-9
            or per_trial_gpu > resources.get("GPU", 0.0) + 1e-9
        ):
            raise ConfigError(
                f"one trial needs {per_trial:g} CPU / {per_trial_gpu:g} GPU "
                f"({len(largest_arm(plan).folds)} folds), the cluster has "
                f"{resources.get('CPU', 0):g} CPU / {resources.get('GPU', 0):g} GPU: lower "
                "resources.cpu or resources.gpu"
            )
        nodes = runtime.cluster_nodes()
        if len(nodes) > 1:
            if config.optuna_url.startswith("sqlite:"):
                raise ConfigError(
                    f"multi-node sweep ({len(nodes)} nodes): SQLite Optuna storage corrupts on "
                    "shared file systems; set storage.optuna to postgresql://… or "
                    "journal:///shared/path/optuna.log"
                )
            for what, url in (("results", root), ("dataset", expand_env(config.dataset))):
                missing = runtime.check_shared_path(url)
                if missing:
                    raise ConfigError(
                        f"multi-node sweep: the {what} location {display_url(url)} is not visible "
                        f"from node(s) {', '.join(missing)}; use a shared file system path or an "
                        "object-store URL"
                    )
        if state is None:
            state = _plan_state(plan, config)
            _write_state(root, state)
        echo(format_plan(plan, config, cluster=resources))
        storage = optuna_storage(config.optuna_url)
        outcome = SweepOutcome(plan=plan)
        log = _ray_log_path(root, plan.sweep_id)
        # Ray forwards its workers' last lines (a trial process ended by Tune, actors killed)
        # a moment after they happen: the sweep's end and Ray's shutdown stay inside the log
        with runtime.ray_messages_to(log, debug=debug):
            stores = runtime.start_run_stores()  # one copy of the data per node
            # CPU fold actors live for the sweep: every trial of every arm borrows them
            pool = (
                runtime.start_fold_pool(
                    plan.sweep_id,
                    bundles=plan.bundles,
                    max_concurrent=config.max_concurrent_trials,
                )
                if config.resources.gpu == 0
                else None
            )
            try:
                _run_arms(config, plan, state, root, storage, outcome, echo)
            finally:
                if pool is not None:
                    runtime.stop_fold_pool(pool)
                for store in stores:
                    runtime.ray.kill(store)
                if started_here:
                    runtime.shutdown_ray()
                    started_here = False
        outcome.ray_log = log if not debug and os.path.exists(log) else None
        return outcome
    finally:
        if started_here:
            runtime.shutdown_ray()


def _ray_log_path(root: str, sweep_id: str) -> str:
    """A local file beside the run folder's other files (a temporary one for object stores)."""
    if is_url(root):
        return os.path.join(tempfile.gettempdir(), f"eeg2bold-{sweep_id}-ray.log")
    return RunFolder(root).ray_log


def _run_arms(
    config: StudyConfig,
    plan: SweepPlan,
    state: dict[str, Any],
    root: str,
    storage: Any,
    outcome: SweepOutcome,
    echo: Callable[[str], None],
) -> None:
    from eeg2bold.launch.search import make_sampler, start_points
    from eeg2bold.launch.tune import tuner
    from eeg2bold.launch.tune.trial import TrialContext

    budget = config.epoch_budget()
    pending = []
    for i, arm in enumerate(plan.arms):
        if arm.status == "done":
            echo(f"[{arm.key}] already done")
        else:
            pending.append((i, arm))
    if not pending:
        return
    # one Tuner runs every arm not yet done: resumed when the killed driver had started it
    resuming = any(arm.status == "running" for _, arm in pending)
    searches = []
    for i, arm in pending:
        verb = "resuming" if arm.status == "running" else "starting"
        echo(f"[{arm.key}] {verb} ({arm.study_name})")
        arm.status = "running"
        state["plan"]["arms"][i] = asdict(arm)
        searches.append(
            tuner.ArmSearch(
                key=arm.key,
                name=arm.key.replace("/", "-").replace("@", "-"),
                study_name=arm.study_name,
                study_attrs=study_attributes(plan, config, arm),
                space=space_function(model=arm.model, constraints=config.search),
                context=TrialContext(
                    sweep=plan.name,
                    sweep_id=plan.sweep_id,
                    protocol=arm.protocol,
                    model=arm.model,
                    dataset=config.dataset,
                    results=root,
                    protocol_options=arm.options,
                    data=config.data_settings(),
                    train=config.train_settings(),
                    fold_cpu=config.resources.cpu,
                    fold_gpu=config.resources.gpu,
                    n_folds=len(arm.folds),
                    folds_per_actor=config.resources.folds_per_actor,
                ),
                bundles=arm.bundles or plan.bundles,
                num_samples=config.budget.num_samples,
                sampler=make_sampler(
                    num_samples=config.budget.num_samples,
                    seed=config.seed,
                    concurrent=config.max_concurrent_trials,
                ),
                start=[
                    (p.params, p.user_attrs())
                    for p in start_points(
                        model=arm.model,
                        protocol_label=arm.label or arm.protocol,
                        constraints=config.search,
                        warm_start=config.warm_start,
                        echo=echo,
                    )
                ],  # enqueued only into a study that has no trial yet
            )
        )
    _write_state(root, state)
    settings = tuner.SweepSettings(
        name=TUNE_EXPERIMENT,
        storage_path=RunFolder(root).ray_dir,
        optuna_storage=storage,
        arms=searches,
        max_concurrent=config.max_concurrent_trials,
        scheduler=config.scheduler.type,
        max_epochs=budget.max_epochs,
        grace_period=budget.grace_period,
        reduction_factor=config.scheduler.reduction_factor,
        time_limit_s=config.budget.time_limit_s,
        max_failures=config.failure.max_failures,
        optuna_url=config.optuna_url,
        tracking=config.tracking.model_dump(),
    )
    outcome.arms.update(tuner.run_arms(settings, resume=resuming, echo=echo))
    for i, arm in pending:
        outcome.orphans += _fail_orphans(storage, arm.study_name)
        arm.status = "done"
        state["plan"]["arms"][i] = asdict(arm)
    _write_state(root, state)


def _fail_orphans(storage: Any, study_name: str) -> int:
    """Mark trials left RUNNING by a killed driver as FAIL (attribute ``orphaned``)."""
    import optuna

    study = optuna.load_study(study_name=study_name, storage=storage)
    study_id = storage.get_study_id_from_name(study_name)
    count = 0
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        storage.set_trial_user_attr(trial_id, optuna_attrs.ORPHANED, True)
        storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
        count += 1
    return count

"""The one Tuner of a sweep: every arm's trials in one Tune run (:func:`run_arms`).

The modules that know Ray's API (Ray changes across 2.x; everything else sees plain dataclasses
and callables): :mod:`.ray_runtime` (the cluster, the pool of fold actors), :mod:`.trial` (the
trainable), :mod:`.arms_search` (per-arm Optuna searchers and ASHA schedulers),
:mod:`.progress` (callbacks), :mod:`.fold_actor` (the actors), and this module.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ray import tune
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from eeg2bold.launch.resume_auth import StateSigner
from eeg2bold.launch.tune.arms import _ArmASHA, _ArmsScheduler, _ArmsSearch, _OptunaSearch
from eeg2bold.launch.tune.progress import _Echo, _Progress, _RetryRecorder, _SignState, identity
from eeg2bold.launch.tune.trial import TrialContext, run_trial
from eeg2bold.run_folder import optuna_attrs
from eeg2bold.training.engine import METRIC


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


def skip_callback_census() -> None:
    """With Ray's usage statistics off, skip Tune's count of the callbacks' classes for them.

    Tune counts them on every fit, and imports its W&B, MLflow, Comet and Aim integrations
    (the ``wandb`` package among them) to do so even when nothing will be reported: 1.6 s of
    the driver's time before the first trial, on 2 cores. Where Ray's module or function is
    not there (another Ray version), nothing changes."""
    if os.environ.get("RAY_USAGE_STATS_ENABLED") != "0":
        return  # Ray may report usage: its census stays
    try:
        from ray.air._internal import usage
    except ImportError:
        return
    if hasattr(usage, "tag_callbacks"):
        usage.tag_callbacks = _no_census


def _no_census(callbacks: Any) -> bool:
    return False


def _trial_dirname(trial: Any) -> str:
    """Ray's trial folder (TensorBoard files) carries the trial's one identity."""
    return f"trial_{identity(trial)}"


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
    skip_callback_census()
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
    from eeg2bold.launch.tune.tracking import tracking_callbacks  # imports MLflow / W&B

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

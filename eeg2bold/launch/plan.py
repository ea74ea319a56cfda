"""The resolved plan of a sweep (what ``--dry-run`` prints): arms, folds, resources, storage.

An *arm* is one (protocol, model) pair with its own Optuna study of ``num_samples`` trials. A
trial evaluates one configuration on every fold of its protocol; it holds one placement-group
bundle for its coordinator plus one bundle per fold.
"""

from __future__ import annotations

import uuid
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

from eeg2bold.errors import Eeg2BoldWarning
from eeg2bold.launch.config import StudyConfig
from eeg2bold.storage import Dataset, open_dataset
from eeg2bold.storage.location import display_url, expand_env, mask_url


def fold_groups(n_folds: int, folds_per_actor: int) -> list[list[int]]:
    """Which folds each actor of a trial runs: ``ceil(n / k)`` actors, folds dealt round-robin
    so that the actors' loads differ by at most one fold."""
    n_actors = max(1, -(-n_folds // max(1, folds_per_actor)))
    return [list(range(a, n_folds, n_actors)) for a in range(n_actors)]


@dataclass
class Arm:
    protocol: str
    model: str
    study_name: str
    folds: list[str]
    status: str = "pending"  # pending | running | done
    options: dict[str, Any] = field(default_factory=dict)  # the protocol's splitter options
    label: str = ""  # the protocol as results name it (a calibration amount included)
    bundles: list[dict[str, float]] = field(default_factory=list)  # one trial's resources

    @property
    def key(self) -> str:
        return f"{self.label or self.protocol}/{self.model}"


@dataclass
class SweepPlan:
    name: str
    sweep_id: str
    dataset: str
    subjects: list[str]
    arms: list[Arm]
    trials_per_arm: int
    bundles: list[dict[str, float]] = field(default_factory=list)
    results: str = ""
    optuna: str = ""

    def trial_bundles(self, n_folds: int, config: StudyConfig) -> list[dict[str, float]]:
        """The coordinator's bundle, then one per fold actor holding its folds' resources."""
        res = config.resources
        bundles = [{"CPU": res.trial_cpu}]
        for group in fold_groups(n_folds, res.folds_per_actor):
            bundle = {"CPU": res.cpu * len(group)}
            if res.gpu:
                bundle["GPU"] = res.gpu * len(group)
            bundles.append(bundle)
        return bundles

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fold_labels(
    dataset: Dataset, protocol: str, options: dict[str, Any], *, footprint_s: float | None = None
) -> list[str]:
    """The folds a protocol makes of a dataset (one per subject, held-out run or group),
    from the volume times and run attributes only; the window does not change them. With the
    sweep's common ``footprint_s``, a fold left without train, val or test samples is a
    one-line error here, before anything runs (not a failure of every trial)."""
    from eeg2bold.protocols import build_sample_table, get_protocol

    window_s = min(dataset.info.min_window_s, footprint_s or dataset.info.min_window_s)
    samples = build_sample_table(dataset, window_s=window_s, footprint_s=footprint_s)
    splitter = get_protocol(protocol, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Eeg2BoldWarning)  # the trial says it again
        folds = splitter.folds(samples) if footprint_s else list(splitter.split(samples))
    return [f.label for f in folds]


def make_plan(config: StudyConfig, *, sweep_id: str | None = None) -> SweepPlan:
    """Resolve a study config against its dataset (reads metadata only)."""
    dataset = open_dataset(expand_env(config.dataset))
    subjects = dataset.subjects()
    sweep_id = sweep_id or uuid.uuid4().hex[:8]
    from eeg2bold.protocols import protocol_label

    arms = []
    footprint_s = config.data_settings().get("footprint_s")
    for p, options in config.protocol_arms():
        label = protocol_label(p, options)
        folds = fold_labels(dataset, p, options, footprint_s=footprint_s)
        for m in config.models:
            arms.append(
                Arm(
                    protocol=p,
                    model=m,
                    study_name=f"{config.name}.{label}.{m}.{sweep_id}",
                    folds=folds,
                    options=options,
                    label=label,
                )
            )
    plan = SweepPlan(
        name=config.name,
        sweep_id=sweep_id,
        dataset=mask_url(config.dataset),
        subjects=list(subjects),
        arms=arms,
        trials_per_arm=config.budget.num_samples,
        results=display_url(config.results_url),
        optuna=display_url(config.optuna_url),
    )
    for arm in arms:
        arm.bundles = plan.trial_bundles(len(arm.folds), config)
    # the largest trial: what the cluster must hold at least
    plan.bundles = max((a.bundles for a in arms), key=lambda b: sum(x["CPU"] for x in b))
    return plan


def largest_arm(plan: SweepPlan) -> Arm:
    return max(plan.arms, key=lambda a: len(a.folds))


def format_plan(
    plan: SweepPlan, config: StudyConfig, *, cluster: dict[str, float] | None = None
) -> str:
    """The plan as text: what will run, on what, and where results go."""
    from eeg2bold.launch.search import startup_trials

    budget = config.epoch_budget()
    per_trial_cpu = sum(b.get("CPU", 0.0) for b in plan.bundles)
    per_trial_gpu = sum(b.get("GPU", 0.0) for b in plan.bundles)
    lines = [
        f"sweep     {plan.name} (id {plan.sweep_id})",
        f"dataset   {plan.dataset}: {len(plan.subjects)} subjects",
        f"arms      {len(plan.arms)} (protocol × model), {plan.trials_per_arm} trials each, "
        f"{len(plan.arms) * plan.trials_per_arm} trials in all",
        f"scheduler {config.scheduler.type}, {budget.describe()}"
        + (
            f" (reduction {config.scheduler.reduction_factor:g})"
            if config.scheduler.type == "asha"
            else ""
        ),
        "search    trial 0 of every arm: the models' defaults (never stopped early)"
        + (
            f", then up to {config.warm_start.top_k} best of {config.warm_start.sweep}"
            if config.warm_start
            else ""
        )
        + (
            f"; TPE after {startup_trials(plan.trials_per_arm)} start-up trials"
            if plan.trials_per_arm > 1
            else ""
        ),
        f"trial     {len(largest_arm(plan).folds)} folds on {len(plan.bundles) - 1} "
        + ("actor" if len(plan.bundles) == 2 else "actors")
        + (
            f" ({config.resources.folds_per_actor} per actor)"
            if config.resources.folds_per_actor > 1
            else ""
        )
        + f"; bundles: coordinator {config.resources.trial_cpu:g} CPU + per fold "
        f"({config.resources.cpu:g} CPU"
        + (f", {config.resources.gpu:g} GPU" if config.resources.gpu else "")
        + f") = {per_trial_cpu:g} CPU"
        + (f", {per_trial_gpu:g} GPU" if per_trial_gpu else ""),
        f"parallel  at most {config.max_concurrent_trials} trials at once",
        f"results   {plan.results}",
        f"optuna    {plan.optuna}",
        "",
        f"{'arm':<28}{'folds':>6}  {'study name'}",
    ]
    for arm in plan.arms:
        lines.append(f"{arm.key:<28}{len(arm.folds):>6}  {arm.study_name}")
    if config.search:
        lines += ["", "search constraints:"]
        lines += [f"  {k} = {v}" for k, v in sorted(config.search.items())]
    if cluster is not None:
        fits = int(
            min(
                cluster.get("CPU", 0.0) // max(per_trial_cpu, 1e-9),
                cluster.get("GPU", 0.0) // per_trial_gpu if per_trial_gpu else 1e9,
            )
        )
        lines += [
            "",
            f"cluster   {cluster.get('CPU', 0):g} CPU, {cluster.get('GPU', 0):g} GPU → "
            f"{min(fits, config.max_concurrent_trials)} trial(s) at once",
        ]
    return "\n".join(lines)

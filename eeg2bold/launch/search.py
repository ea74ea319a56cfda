"""How each arm's Optuna search starts and samples (no Ray here: the adapter in
:mod:`eeg2bold.launch.tune.tuner` hands these to ``OptunaSearch``).

A sweep must buy something over ``eeg2bold train`` with the models' defaults, at the budgets
people run (8–64 trials per arm). So every arm's study:

1. begins with the defaults (trial 0, Optuna user attribute ``origin = "defaults"``), moved to
   the nearest allowed value where the study narrows a parameter; the selected configuration
   is then never worse on validation than the defaults under the same protocol and epochs;
2. continues with an earlier sweep's best configurations of the same arm when asked
   (``warm_start``; ``origin = "warm_start"``);
3. samples with TPE whose random start-up is scaled to the budget (:func:`startup_trials`:
   Optuna's fixed 10 would make every search of 10 trials or fewer pure random search),
   ``multivariate`` (the parameters' joint density, which beats independent TPE on
   interacting parameters such as learning rate and batch size), ``group`` (the space is
   define-by-run: conditional parameters are modelled within the trials that have them) and
   ``constant_liar`` when several trials of an arm run at once (running trials count as bad
   so that concurrent trials do not all sample the same region).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from eeg2bold.errors import ConfigError
from eeg2bold.run_folder import optuna_attrs
from eeg2bold.search_spaces import StartPoint, default_point, project_point

# the random start-up share of an arm's budget, and its bounds (in trials, counting the
# enqueued ones: TPE counts every finished trial as start-up until it has this many)
STARTUP_SHARE = 0.25
MIN_STARTUP = 3
MAX_STARTUP = 10  # Optuna's default: beyond this TPE has enough to model


def startup_trials(num_samples: int) -> int:
    """Trials before TPE models (the enqueued defaults and warm starts count): a quarter of
    the budget within [3, 10], e.g. 3 of 8, 4 of 16, 10 of 64."""
    return min(MAX_STARTUP, max(MIN_STARTUP, math.ceil(STARTUP_SHARE * num_samples)))


def make_sampler(*, num_samples: int, seed: int, concurrent: int) -> Any:
    """The TPE sampler of one arm (see the module docstring for each choice). Equal seeds
    give equal suggestions for equal histories."""
    import optuna

    with warnings.catch_warnings():  # multivariate/group/constant_liar are "experimental"
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=seed,
            n_startup_trials=startup_trials(num_samples),
            multivariate=True,
            group=True,
            constant_liar=concurrent > 1,
        )


def start_points(
    *,
    model: str,
    protocol_label: str,
    constraints: Mapping[str, Any],
    warm_start: Any = None,
    echo: Callable[[str], None] = lambda _line: None,
) -> list[StartPoint]:
    """What an arm enqueues before sampling: the defaults, then (``warm_start``: a
    :class:`~eeg2bold.launch.config.WarmStart`) the earlier sweep's best configurations of
    the same arm, each moved into today's space; duplicates are enqueued once."""
    points = [default_point(model, constraints)]
    if points[0].changes:
        echo(
            f"[{protocol_label}/{model}] defaults moved into the narrowed space: "
            + "; ".join(points[0].changes)
        )
    if warm_start is not None:
        for point in warm_start_points(
            warm_start.sweep,
            model=model,
            protocol_label=protocol_label,
            constraints=constraints,
            top_k=warm_start.top_k,
        ):
            if any(point.params == p.params for p in points):
                echo(f"[{protocol_label}/{model}] warm start: {point.source} is already queued")
                continue
            note = f" ({'; '.join(point.changes)})" if point.changes else ""
            echo(f"[{protocol_label}/{model}] warm start: {point.source}{note}")
            points.append(point)
    return points


def warm_start_points(
    sweep: str,
    *,
    model: str,
    protocol_label: str,
    constraints: Mapping[str, Any],
    top_k: int,
) -> list[StartPoint]:
    """The ``top_k`` finished trials of ``sweep``'s arm (protocol label, model) by val r,
    projected onto today's space. An earlier sweep without that arm gives none."""
    import optuna

    from eeg2bold.launch.config import load_study_config, parse_study_config
    from eeg2bold.run_folder import RunFolder
    from eeg2bold.storage.optuna_db import optuna_storage

    if sweep.endswith((".yaml", ".yml")):
        sweep = load_study_config(sweep).results_url
    manifest = RunFolder(sweep).read_manifest()  # one-line error if not a run folder
    if manifest.get("kind") == "train":
        raise ConfigError(f"warm_start.sweep: {sweep} is a train run, not a sweep")
    earlier = parse_study_config(manifest["config"], where=f"{sweep} (sweep.json)")
    arms = [
        a
        for a in manifest["plan"]["arms"]
        if (a.get("label") or a["protocol"]) == protocol_label and a["model"] == model
    ]
    if not arms:
        return []
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(
            study_name=arms[0]["study_name"], storage=optuna_storage(earlier.optuna_url)
        )
    except KeyError:  # the arm never started
        return []
    done = [
        t
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if t.value is not None and math.isfinite(t.value)
    ]
    # trials that ran to the end first (as `eeg2bold best` ranks), then by val r
    done.sort(
        key=lambda t: (not t.user_attrs.get(optuna_attrs.FINISHED, False), -float(t.value or 0.0))
    )
    name = earlier.name
    return [
        project_point(
            dict(t.params),
            model=model,
            constraints=constraints,
            source=f"{name} trial {_trial_id(t)} (val r {t.value:.3f})",
        )
        for t in done[:top_k]
    ]


def _trial_id(trial: Any) -> str:
    return str(trial.user_attrs.get(optuna_attrs.TRIAL_ID, trial.number))

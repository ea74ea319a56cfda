"""Per-arm search behind one Tuner: each arm's own Optuna study and sampler (the searcher that
owns trial identity: ``trial_id`` stays the same across retries and resumes), and each arm's
own ASHA rungs, so a ridge trial is never compared with a beira trial.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import Any

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from eeg2bold.run_folder import RunFolder, optuna_attrs
from eeg2bold.training.engine import METRIC

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
        # whether the study may hold RUNNING trials Tune does not know (see suggest)
        self._orphans_possible = True
        super().__init__(*args, **kwargs)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # a sweep resumed from state an older eeg2bold pickled lacks the newer fields; a
        # restored searcher looks for orphans again (its driver was killed)
        self.__dict__.update({"_start": []} | state | {"_orphans_possible": True})

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

        Orphans exist only from before this searcher was made or restored: once a look finds
        none, later trials skip it (a read of the study per trial, 10-15 ms on SQLite).
        """
        identity = trial_id
        study = self._ot_study
        if self._orphans_possible and trial_id not in self._ot_trials and study is not None:
            import optuna

            known = {t.number for t in self._ot_trials.values()}
            running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
            orphans = [t for t in running if t.number not in known]
            self._orphans_possible = bool(orphans)
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

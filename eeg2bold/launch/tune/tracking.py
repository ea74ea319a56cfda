"""Experiment trackers, optional: MLflow and Weights & Biases through Ray Tune's own logger
callbacks, configured by the study config's ``tracking:`` section.

MLflow gets one run per trial, named after the trial's one identity, tagged with the sweep,
protocol and model; its parameters are the sampled values and the trial's resolved
configuration (``config.*``, read from the run folder by its hash); its metrics are every
epoch's val r (step = epoch, so a resumed trial continues its curve) and, at the end, the
trial's test r and each fold's val and test r (``fold.<subject>.val_r``); ``eeg2bold report``
attaches the report to a run named ``report`` (:mod:`eeg2bold.study.tracking`, without Ray).
Tracking URIs may hold ``${NAME}``: expanded
only when connecting, so Tune's saved state never holds a token.
"""

from __future__ import annotations

import math
import os
from typing import Any

from ray.air.integrations.mlflow import MLflowLoggerCallback

from eeg2bold.errors import ConfigError
from eeg2bold.storage.location import expand_env


def tracking_callbacks(
    tracking: dict[str, Any],
    *,
    sweep: str,
    protocol: str,
    model: str,
    results: str,
    arm: str | None = None,
) -> list[Any]:
    """The Tune callbacks the ``tracking`` section asks for (none by default), for the trials
    of one arm (``arm``: the key its trials carry as ``config["arm"]``; None: every trial)."""
    callbacks: list[Any] = []
    mlflow = tracking.get("mlflow")
    if mlflow:
        callbacks.append(
            TrialRuns(
                tracking_uri=mlflow["tracking_uri"],
                experiment_name=mlflow.get("experiment") or sweep,
                tags={"eeg2bold.sweep": sweep, "eeg2bold.protocol": protocol}
                | {"eeg2bold.model": model},
                results=results,
                arm=arm,
            )
        )
    wandb = tracking.get("wandb")
    if wandb:
        try:
            from ray.air.integrations.wandb import WandbLoggerCallback
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ConfigError(f"tracking.wandb needs the wandb package ({exc})") from None
        mode = wandb.get("mode", "offline")

        class _Wandb(_OneArm, WandbLoggerCallback):
            """Offline runs need no API key: Ray looks for WANDB_MODE while it sets up."""

            def setup(self, *args: Any, **kwargs: Any) -> None:
                if mode != "offline":
                    return super().setup(*args, **kwargs)
                saved = os.environ.get("WANDB_MODE")
                os.environ["WANDB_MODE"] = "offline"
                try:
                    return super().setup(*args, **kwargs)
                finally:
                    if saved is None:
                        os.environ.pop("WANDB_MODE", None)
                    else:
                        os.environ["WANDB_MODE"] = saved

        # the runs go to SWEEP/wandb (not Ray's temporary session folder, whose copy in the
        # sweep folder is taken before the runs are complete); object-store results: Ray's
        local: dict[str, Any] = {} if "://" in results else {"dir": f"{results.rstrip('/')}/wandb"}
        if local:
            os.makedirs(local["dir"], exist_ok=True)
        callbacks.append(
            _Wandb(
                project=wandb["project"],
                group=f"{sweep}.{protocol}.{model}",
                mode=mode,
                excludes=["nodes"],
                **local,
            )
        )
        callbacks[-1].arm = arm
    return callbacks


class _OneArm:
    """A logger callback that logs the trials of one arm only (the sweep's one Tuner runs
    every arm; each arm has its own tags and group)."""

    arm: str | None = None

    def _mine(self, trial: Any) -> bool:
        return self.arm is None or (trial.config or {}).get("arm", self.arm) == self.arm

    def log_trial_start(self, trial: Any) -> None:
        if self._mine(trial):
            super().log_trial_start(trial)  # type: ignore[misc]

    def log_trial_result(self, iteration: int, trial: Any, result: dict[str, Any]) -> None:
        if self._mine(trial):
            super().log_trial_result(iteration, trial, result)  # type: ignore[misc]

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        if self._mine(trial):
            super().log_trial_end(trial, failed)  # type: ignore[misc]


class TrialRuns(_OneArm, MLflowLoggerCallback):
    """MLflowLoggerCallback with eeg2bold's trial identity, resolved configs and epoch steps."""

    def __init__(
        self, *, tracking_uri: str, results: str, arm: str | None = None, **kwargs: Any
    ) -> None:
        self.template_uri = tracking_uri
        self.results = results
        self.arm = arm
        self._logged_config: set[str] = set()
        super().__init__(tracking_uri=None, **kwargs)

    def setup(self, *args: Any, **kwargs: Any) -> None:
        self.tracking_uri = expand_env(self.template_uri)  # at run time only
        super().setup(*args, **kwargs)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["tracking_uri"] = None  # the expanded URI never lands in Tune's saved state
        return state

    def log_trial_start(self, trial: Any) -> None:
        if self._mine(trial) and trial not in self._trial_runs:
            identity = str((trial.config or {}).get("trial") or trial.trial_id)
            tags = dict(self.tags or {}) | {"trial_name": identity, "eeg2bold.trial": identity}
            run = self.mlflow_util.start_run(tags=tags, run_name=f"trial {identity}")
            self._trial_runs[trial] = run.info.run_id
            sample = dict((trial.config or {}).get("sample") or {})
            self.mlflow_util.log_params(
                run_id=self._trial_runs[trial], params_to_log=sample | {"trial": identity}
            )

    def log_trial_result(self, iteration: int, trial: Any, result: dict[str, Any]) -> None:
        run_id = self._trial_runs.get(trial)
        if run_id is None or not self._mine(trial):
            return
        config_hash = result.get("config_hash")
        if config_hash and run_id not in self._logged_config:
            self._logged_config.add(run_id)
            self.mlflow_util.log_params(
                run_id=run_id, params_to_log=_resolved(self.results, str(config_hash))
            )
        metrics = {
            k: float(v)
            for k, v in result.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        }
        step = int(result.get("epoch") or result.get("training_iteration") or 0)
        self.mlflow_util.log_metrics(run_id=run_id, metrics_to_log=metrics, step=step)


def _resolved(results: str, config_hash: str) -> dict[str, Any]:
    """The trial's resolved experiment config, flattened as ``config.section.key``."""
    from eeg2bold.run_folder import RunFolder

    try:
        config = RunFolder(results).read_config(config_hash)
    except Exception:  # the params are a courtesy: a missing file must not stop a sweep
        return {"config_hash": config_hash}
    flat: dict[str, Any] = {"config_hash": config_hash}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}", v)
        else:
            flat[prefix] = value

    walk("config", config)
    return flat

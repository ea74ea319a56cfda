"""Tune callbacks: the progress lines (per arm), node health and retries recorded on the Optuna
trial, and the signature of Tune's saved state (:mod:`~eeg2bold.launch.resume_auth`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import ray
from ray import tune

from eeg2bold.launch.resume_auth import StateSigner
from eeg2bold.launch.tune.arms import WORKER_DIED
from eeg2bold.run_folder import optuna_attrs
from eeg2bold.training.engine import METRIC


def identity(trial: Any) -> str:
    return str((trial.config or {}).get("trial") or trial.trial_id)


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
                f"[{self.label}] trial {identity(trial)} epoch {result.get('epoch')}: "
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
                f"[{self.label}] trial {identity(trial)} FAILED ({self.finished}/{self.total}, "
                f"{last.get('failure_kind')}): {last['failure']}"
            )
            return
        self.echo(
            f"[{self.label}] trial {identity(trial)} finished ({self.finished}/{self.total}): "
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
            f"[{self.label}] trial {identity(trial)} FAILED ({self.finished}/{self.total}): "
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
            f"[{self.label}] trial {identity(trial)} {what}; {start} on {where} {_describe(now)}"
        )
        if self.record is not None:
            event = {"lost_node": bool(lost), "resumed_from": epoch, "lost": lost, "on": now}
            try:
                self.record(identity(trial), event)
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

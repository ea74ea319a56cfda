"""The fold engine: one configuration on the folds of its protocol, in any process.

A :class:`FoldRunner` is one fold: ``setup`` → ``step`` (one epoch) … → ``finish``, with
``state`` / ``load`` for resume, each returning a typed outcome (:class:`FoldSetup`,
:class:`EpochOutcome`, :class:`FoldOutcome`). The runner is the only writer of a fold's
records in its run folder: the val rows of every epoch (rewritten, never duplicated, when an
epoch is re-run), the resume state after every epoch, and, when it finishes, the final rows,
model file, predictions and the done marker, in that order.

A :class:`ProtocolRun` asks the splitter for the folds and drives one runner per fold through a
:class:`RunnerPool`. Two drivers exist and differ only in who calls ``step``: ``eeg2bold train``
runs the folds one after another in this process (:meth:`ProtocolRun.run_sequential`); a sweep
trial runs them in lockstep as Ray actors (:meth:`ProtocolRun.run_lockstep`, the pool maps
calls to actors). Each runner keeps its own random stream, so the same config and seed give
the same numbers whichever driver runs it and in whatever order.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from eeg2bold.errors import ConfigError, did_you_mean
from eeg2bold.jsonsafe import json_safe
from eeg2bold.protocols import (
    Fold,
    SampleTable,
    build_sample_table,
    get_protocol,
    protocol_label,
)
from eeg2bold.run_folder import RunFolder
from eeg2bold.run_folder.folder import train_trial_id
from eeg2bold.run_folder.table import score_rows
from eeg2bold.storage import Dataset, RunData, RunKey, open_dataset
from eeg2bold.training import checkpoint
from eeg2bold.training.config import ExperimentConfig
from eeg2bold.training.data import FoldData
from eeg2bold.training.fit import FoldTrainer, resolve_device
from eeg2bold.training.metrics import fisher_mean
from eeg2bold.training.outputs import model_card, prediction_arrays

METRIC = "val_r"  # what selects, everywhere: the Fisher-z mean over folds of each fold's best


@dataclass(frozen=True)
class FoldSetup:
    fold: int
    subject: str
    outputs: tuple[str, ...]
    n_train: int
    n_val: int
    n_test: int
    epoch: int  # epochs already trained (resumed from the run folder's state)
    finished: FoldOutcome | None = None  # the fold finished earlier: nothing left to do
    # the resumed fit had trained to its end (last epoch, or stopped early) but was killed
    # before finish(): no epoch left to step, only the final scoring
    stopped: bool = False


@dataclass(frozen=True)
class EpochOutcome:
    fold: int
    subject: str
    epoch: int
    val_r: tuple[float, ...]
    val_mean: float
    n_val: int
    improved: bool
    best: float  # the fold's best val mean so far (what the trial metric averages)
    best_epoch: int
    done: bool
    train_loss: float
    has_loss: bool
    seconds: float
    data_seconds: float
    lr: float


@dataclass(frozen=True)
class FoldOutcome:
    fold: int
    subject: str
    outputs: tuple[str, ...]
    best_epoch: int
    epochs: int  # epochs trained
    val_r: tuple[float, ...]
    val_mean: float
    n_val: int
    test_r: tuple[float, ...]
    test_mean: float
    n_test: int
    n_train: int
    model_file: str | None
    seconds: float  # final scoring and files
    history: tuple[dict[str, Any], ...] = ()
    resumed: bool = False
    held_out: str = ""  # what the fold holds out when a subject has several (its run)
    data_path: str = ""  # "memory" or "stream": where its windows came from (changes the order)

    @property
    def label(self) -> str:
        return f"{self.subject}~{self.held_out}" if self.held_out else self.subject

    def to_json(self) -> dict[str, Any]:
        """Strict JSON: an undefined r (NaN) is written as null."""
        return {k: json_safe(v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> FoldOutcome:
        tuples = ("outputs", "val_r", "test_r", "history")
        scores = ("val_r", "test_r", "val_mean", "test_mean")
        fields: dict[str, Any] = {}
        for k, v in value.items():
            if k in scores:
                v = _nan_for_null(v)
            fields[k] = tuple(v) if k in tuples else v
        return cls(**fields)


def _nan_for_null(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [math.nan if v is None else v for v in value]
    return math.nan if value is None else value


class RunCache:
    """Datasets by URL and the runs read from them, kept for every fold this process runs
    (a Ray actor serves many trials; ``train`` serves every fold). A sweep's fold actors
    pass ``read``, which gets each run from their node's shared copy (:meth:`read`)."""

    def __init__(self, read: Callable[[Dataset, RunKey], RunData] | None = None) -> None:
        self.datasets: dict[str, Dataset] = {}
        self.runs: dict[tuple[str, RunKey], RunData] = {}
        self._read = read

    def dataset(self, url: str) -> Dataset:
        from eeg2bold.storage.location import expand_env

        if url not in self.datasets:
            self.datasets[url] = open_dataset(expand_env(url))
        return self.datasets[url]

    def reader(self, dataset: Dataset) -> Callable[[RunKey], RunData]:
        def read(key: RunKey) -> RunData:
            if (dataset.url, key) not in self.runs:
                self.runs[(dataset.url, key)] = self.read(dataset, key)
            return self.runs[(dataset.url, key)]

        return read

    def read(self, dataset: Dataset, key: RunKey) -> RunData:
        """One run, the first time this process needs it."""
        return self._read(dataset, key) if self._read is not None else dataset.read_run(key)


def protocol_folds(dataset: Dataset, config: ExperimentConfig) -> tuple[SampleTable, list[Fold]]:
    """The sample table and the folds the protocol's splitter yields for ``config``."""
    data = config.data
    samples = build_sample_table(
        dataset, window_s=data.window_s, delay_s=data.delay_s, footprint_s=data.footprint_s
    )
    return samples, get_protocol(config.protocol, **config.protocol_options).folds(samples)


class FoldRunner:
    """One fold of one configuration (see the module docstring). Reusable: ``setup`` again for
    the next fold or trial keeps the datasets and runs already read."""

    def __init__(self, *, threads: int | None = None, gpu: bool = True):
        if threads is not None:
            torch.set_num_threads(max(1, threads))
        self.gpu = gpu
        self.cache = RunCache()
        self.trainer: FoldTrainer | None = None
        self._rng: torch.Tensor | None = None

    @contextlib.contextmanager
    def _own_rng(self) -> Iterator[None]:
        """Run with this runner's random stream, whatever other runners in the process do."""
        with torch.random.fork_rng(devices=[]):
            if self._rng is not None:
                torch.set_rng_state(self._rng)
            yield
            self._rng = torch.get_rng_state()

    def setup(
        self,
        *,
        dataset: str | Dataset,
        config: ExperimentConfig | str,
        fold: int,
        folder: str | None = None,
        sweep: str = "",
        trial: str,
        resume: bool = True,
    ) -> FoldSetup:
        """Build the fold's data and trainer; continue from the run folder's state if there is
        one (``resume``), or report the fold as finished if its done marker exists."""
        if isinstance(config, str):
            config = ExperimentConfig.model_validate_json(config)
        self.config = config.resolved()
        self.config_hash = self.config.config_hash()
        self.dataset = self.cache.dataset(dataset) if isinstance(dataset, str) else dataset
        self.folder = RunFolder(folder) if folder is not None else None
        self.sweep, self.trial = sweep, trial  # the ProtocolRun's: one identity per run
        self.trainer, self._rng = None, None
        samples, folds = protocol_folds(self.dataset, self.config)
        if not 0 <= fold < len(folds):
            raise ConfigError(f"{self.config.protocol} has {len(folds)} folds, not fold {fold}")
        self.fold: Fold = folds[fold]
        done = self.folder.done(self.trial, fold) if self.folder is not None and resume else None
        if done is not None:
            outcome = FoldOutcome.from_json(done)
            return FoldSetup(
                fold=fold,
                subject=self.fold.subject,
                outputs=outcome.outputs,
                n_train=int(self.fold.train.size),
                n_val=int(self.fold.val.size),
                n_test=int(self.fold.test.size),
                epoch=outcome.epochs,
                finished=outcome,
            )
        device_name = self.config.train.device
        if device_name == "auto" and not self.gpu:
            device_name = "cpu"
        with self._own_rng():
            data = FoldData(
                self.dataset,
                samples,
                self.fold,
                config=self.config.data,
                device=resolve_device(device_name),
                read_run=self.cache.reader(self.dataset),
            )
            self.trainer = FoldTrainer(
                data=data,
                model_name=self.config.model,
                model_params=self.config.model_params,
                config=self.config.train,
            )
        self.resumed = False
        blob = self.folder.load_state(self.trial, fold) if self.folder and resume else None
        if blob is not None:
            assert self.folder is not None
            self.load(blob, where=self.folder.state_path(self.trial, fold))
            self.resumed = True
        return FoldSetup(
            fold=fold,
            subject=self.fold.subject,
            outputs=tuple(data.outputs),
            n_train=int(self.fold.train.size),
            n_val=int(self.fold.val.size),
            n_test=int(self.fold.test.size),
            epoch=self.trainer.epoch,
            stopped=self.trainer.done,
        )

    def _trainer(self) -> FoldTrainer:
        if self.trainer is None:
            raise RuntimeError("call setup() first (or the fold had already finished)")
        return self.trainer

    def _row_base(self) -> dict[str, Any]:
        return {
            "sweep": self.sweep,
            "trial": self.trial,
            "config_hash": self.config_hash,
            "model": self.config.model,
            "protocol": protocol_label(self.config.protocol, self.config.protocol_options),
            "fold": self.fold.index,
            "subject": self.fold.subject,
            "seed": self.config.train.seed,
            "window_s": self.config.data.window_s,
            "delay_s": self.config.data.delay_s,
        }

    def step(self) -> EpochOutcome:
        """Train one epoch, score val, publish the epoch's val rows and the resume state."""
        trainer = self._trainer()
        with self._own_rng():
            report = trainer.step()
        outputs = tuple(trainer.data.outputs)
        if self.folder is not None:
            rows = score_rows(
                self._row_base(),
                outputs=outputs,
                r=report.val.r,
                split="val",
                epoch=report.epoch,
                final=False,
                n=report.val.n,
            )
            self.folder.write_rows(
                rows, self.trial, f"fold{self.fold.index}", f"epoch{report.epoch}"
            )
            self.folder.save_state(self.trial, self.fold.index, self.state())
        return EpochOutcome(
            fold=self.fold.index,
            subject=self.fold.subject,
            epoch=report.epoch,
            val_r=tuple(float(v) for v in report.val.r),
            val_mean=report.val.mean,
            n_val=report.val.n,
            improved=report.improved,
            best=trainer.best_score,
            best_epoch=trainer.best_epoch,
            done=report.stop,
            train_loss=report.train_loss,
            has_loss=bool(report.loss_parts),
            seconds=report.seconds,
            data_seconds=report.data_seconds,
            lr=report.lr,
        )

    def state(self) -> bytes:
        """The exact resume state (loads with ``torch.load(weights_only=True)``)."""
        state = self._trainer().state_dict()
        if self._rng is not None:
            state["torch_rng"] = self._rng
        return checkpoint.dumps(state)

    def load(self, blob: bytes, *, where: str | None = None) -> int:
        """Continue from :meth:`state`'s bytes (read from ``where``); returns the epochs
        already trained."""
        trainer = self._trainer()
        state = checkpoint.loads(blob, where=where or f"{self.fold.name} resume state")
        with self._own_rng():
            trainer.load_state_dict(state)
        return trainer.epoch

    def finish(self) -> FoldOutcome:
        """Best-val weights scored on val and test; final rows, model file, predictions and the
        done marker published (in that order) when the runner has a run folder."""
        trainer = self._trainer()
        started = time.perf_counter()
        with self._own_rng():
            final = trainer.finish()
        outputs = tuple(trainer.data.outputs)
        model_file = None
        if self.folder is not None:
            rows = []  # the whole val curve (from the history) and the final scores
            for h in trainer.history:
                rows += score_rows(
                    self._row_base(),
                    outputs=outputs,
                    r=h["val_r"],
                    split="val",
                    epoch=h["epoch"],
                    final=False,
                    n=final["val"].n,
                )
            for split, score in final.items():
                rows += score_rows(
                    self._row_base(),
                    outputs=outputs,
                    r=score.r,
                    split=split,
                    epoch=trainer.best_epoch,
                    final=True,
                    n=score.n,
                )
            self.folder.replace_epoch_parts(rows, self.trial, self.fold.index)
            card = model_card(trainer, self.dataset, self.config)
            model_file = self.folder.write_model(self.trial, self.fold.index, card)
            self.folder.write_predictions(self.trial, self.fold.index, prediction_arrays(trainer))
        outcome = FoldOutcome(
            fold=self.fold.index,
            subject=self.fold.subject,
            held_out=self.fold.held_out,
            outputs=outputs,
            best_epoch=trainer.best_epoch,
            epochs=trainer.epoch,
            val_r=tuple(float(v) for v in final["val"].r),
            val_mean=final["val"].mean,
            n_val=final["val"].n,
            test_r=tuple(float(v) for v in final["test"].r),
            test_mean=final["test"].mean,
            n_test=final["test"].n,
            n_train=int(self.fold.train.size),
            model_file=model_file,
            seconds=time.perf_counter() - started,
            history=tuple(trainer.history),
            resumed=self.resumed,
            data_path=trainer.data.path,
        )
        if self.folder is not None:
            self.folder.mark_done(self.trial, self.fold.index, outcome.to_json())
        self.trainer = None  # the fold's data and model are freed; setup() starts another
        return outcome


class RunnerPool(Protocol):
    """Calls one method on several fold runners at once; results in the order of ``calls``
    (a list of (fold, keyword arguments))."""

    def call(self, method: str, calls: Sequence[tuple[int, dict[str, Any]]]) -> list[Any]: ...


class LocalPool:
    """Fold runners in this process, called one after another."""

    def __init__(self, make: Callable[[], FoldRunner] = FoldRunner):
        self.make = make
        self.runners: dict[int, FoldRunner] = {}

    def call(self, method: str, calls: Sequence[tuple[int, dict[str, Any]]]) -> list[Any]:
        out = []
        for fold, kwargs in calls:
            if fold not in self.runners:
                self.runners[fold] = self.make()
            out.append(getattr(self.runners[fold], method)(**kwargs))
        return out


class FoldHost(LocalPool):
    """Several fold runners in one process (a sweep's fold actor when
    ``resources.folds_per_actor`` > 1): fewer processes start, and the runners share one
    cache, so each run is read once per actor."""

    def __init__(
        self, *, threads: int | None = None, gpu: bool = True, cache: RunCache | None = None
    ):
        cache = cache or RunCache()

        def make() -> FoldRunner:
            runner = FoldRunner(threads=threads, gpu=gpu)
            runner.cache = cache
            return runner

        super().__init__(make)


@dataclass
class ProtocolResult:
    """Every fold's outcome of one configuration."""

    config: ExperimentConfig
    config_hash: str
    trial: str
    outputs: tuple[str, ...] = ()
    folds: list[FoldOutcome] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Per-output and overall val/test r across folds (Fisher-z means)."""
        out: dict[str, Any] = {
            "config_hash": self.config_hash,
            "trial": self.trial,
            "outputs": list(self.outputs),
        }
        for split in ("val", "test"):
            per_fold = np.array([getattr(f, f"{split}_r") for f in self.folds])
            means = np.atleast_1d(fisher_mean(per_fold, axis=0)).tolist()
            out[f"{split}_r_per_output"] = dict(zip(self.outputs, means, strict=True))
            out[f"{split}_r_mean"] = float(fisher_mean(per_fold))
        out["folds"] = [
            {
                "fold": f.fold,
                "subject": f.subject,
                "held_out": f.held_out,
                "best_epoch": f.best_epoch,
                "epochs": f.epochs,
                "n_train": f.n_train,
                "n_val": f.n_val,
                "n_test": f.n_test,
                "val_r": dict(zip(self.outputs, f.val_r, strict=True)),
                "test_r": dict(zip(self.outputs, f.test_r, strict=True)),
                "val_r_mean": f.val_mean,
                "test_r_mean": f.test_mean,
                "model_file": f.model_file,
                "data_path": f.data_path,
            }
            for f in self.folds
        ]
        return out


def _fisher(values: Sequence[float]) -> float:
    return float(fisher_mean(np.asarray(values, dtype=np.float64)))


class ProtocolRun:
    """One configuration on the folds of its protocol, with its identity and run folder."""

    def __init__(
        self,
        *,
        dataset: Dataset,
        config: ExperimentConfig,
        folder: str | RunFolder | None = None,
        sweep: str = "",
        trial: str | None = None,
        subjects: Sequence[str] | None = None,
    ):
        self.dataset = dataset
        self.config = config.resolved()
        self.config_hash = self.config.config_hash()
        self.folder = RunFolder(folder) if isinstance(folder, str) else folder
        self.sweep = sweep
        self.trial = trial or train_trial_id(self.config_hash)
        samples, folds = protocol_folds(dataset, self.config)
        if subjects:
            unknown = sorted(set(subjects) - set(samples.subjects))
            if unknown:  # named with the store and the nearest name, as every unknown name
                have = list(samples.subjects)
                raise ConfigError(
                    f"{getattr(dataset, 'url', dataset)}: unknown subject(s) {unknown}"
                    f"{did_you_mean(unknown[0], have)}; the dataset has {have}"
                )
            folds = [f for f in folds if f.subject in subjects]
        self.folds = folds
        if self.folder is not None:
            self.folder.write_config(self.config_hash, self.config.model_dump(mode="json"))

    def refuse_existing(self, *, resume: bool) -> None:
        """Starting afresh where this configuration already left records is an error (it
        would mix two runs' rows); resuming continues them."""
        if not resume and self.folder is not None and self.folder.has_records(self.trial):
            raise ConfigError(
                f"{self.folder.url} already holds {self.trial} (this configuration): pass "
                "--resume to continue it (finished folds are kept), or choose another --out"
            )

    def _setup_calls(self, *, dataset: str | Dataset, resume: bool) -> list[tuple[int, dict]]:
        folder = self.folder.url if self.folder is not None else None
        spec = self.config.model_dump_json()
        return [
            (
                f.index,
                {
                    "dataset": dataset,
                    "config": spec,
                    "fold": f.index,
                    "folder": folder,
                    "sweep": self.sweep,
                    "trial": self.trial,
                    "resume": resume,
                },
            )
            for f in self.folds
        ]

    def run_sequential(
        self,
        *,
        pool: RunnerPool | None = None,
        resume: bool = False,
        on_epoch: Callable[[EpochOutcome], None] | None = None,
        on_fold: Callable[[FoldOutcome], None] | None = None,
    ) -> ProtocolResult:
        """Each fold from start to end before the next (one fold's data in memory at a time);
        ``resume`` continues from the run folder's states and done markers."""
        self.refuse_existing(resume=resume)
        pool = pool or FoldHost()  # one cache: each run is read once for every fold
        result = ProtocolResult(config=self.config, config_hash=self.config_hash, trial=self.trial)
        for fold, kwargs in self._setup_calls(dataset=self.dataset, resume=resume):
            (setup,) = pool.call("setup", [(fold, kwargs)])
            result.outputs = setup.outputs
            outcome = setup.finished
            if outcome is None:
                done = setup.stopped
                while not done:
                    (epoch,) = pool.call("step", [(fold, {})])
                    done = epoch.done
                    if on_epoch is not None:
                        on_epoch(epoch)
                (outcome,) = pool.call("finish", [(fold, {})])
            result.folds.append(outcome)
            if on_fold is not None:
                on_fold(outcome)
        return result

    def run_lockstep(
        self,
        *,
        pool: RunnerPool,
        dataset: str,
        report: Callable[[dict[str, Any]], None],
    ) -> ProtocolResult:
        """All folds advance one epoch at a time (a scheduler compares trials per epoch):
        after each round ``report`` gets :meth:`epoch_metrics`; at the end
        :meth:`final_metrics`. Always resumes from the run folder."""
        result = ProtocolResult(config=self.config, config_hash=self.config_hash, trial=self.trial)
        started = time.perf_counter()
        setups: list[FoldSetup] = pool.call(
            "setup", self._setup_calls(dataset=dataset, resume=True)
        )
        setup_seconds = time.perf_counter() - started
        result.outputs = setups[0].outputs
        finished = {s.fold: s.finished for s in setups if s.finished is not None}
        best = {s.fold: (s.finished.val_mean if s.finished else -math.inf) for s in setups}
        best_epoch = {s.fold: (s.finished.best_epoch if s.finished else 0) for s in setups}
        stopped = [s.fold for s in setups if s.finished is None and s.stopped]
        if stopped:  # killed between their last epoch and finish(): finish them now
            for outcome in pool.call("finish", [(i, {}) for i in stopped]):
                finished[outcome.fold] = outcome
                best[outcome.fold], best_epoch[outcome.fold] = outcome.val_mean, outcome.best_epoch
        active = [s.fold for s in setups if s.finished is None and not s.stopped]
        # the epoch this attempt starts from (a resumed trial: the oldest fold state it loaded)
        resumed_from = min((s.epoch for s in setups if s.finished is None), default=0)
        while active:
            t0 = time.perf_counter()
            epochs: list[EpochOutcome] = pool.call("step", [(i, {}) for i in active])
            for e in epochs:
                best[e.fold], best_epoch[e.fold] = e.best, e.best_epoch
            done = [e.fold for e in epochs if e.done]
            metrics = self.epoch_metrics(epochs, best, len(finished) + len(done))
            metrics["epoch_seconds"] = time.perf_counter() - t0
            metrics["best_epoch"] = max(best_epoch.values())
            metrics["setup_seconds"] = setup_seconds  # building the folds' data and models
            metrics["resumed_from"] = resumed_from
            report(metrics)
            if done:
                for outcome in pool.call("finish", [(i, {}) for i in done]):
                    finished[outcome.fold] = outcome
            active = [i for i in active if i not in done]
        result.folds = [finished[s.fold] for s in setups]
        report(self.final_metrics(result.folds) | {"resumed_from": resumed_from})
        return result

    def epoch_metrics(
        self, epochs: Sequence[EpochOutcome], best: Mapping[int, float], folds_done: int
    ) -> dict[str, Any]:
        """What a scheduler compares after an epoch: :data:`METRIC` is the Fisher-z mean over
        folds of each fold's best val r so far (never a test score)."""
        epoch = max(e.epoch for e in epochs)
        return {
            METRIC: _fisher([best[f.index] for f in self.folds]),
            "val_r_epoch": _fisher([e.val_mean for e in epochs]),
            "epoch": epoch,
            "epochs_trained": epoch,
            "folds_done": folds_done,
            "fold_seconds": max(e.seconds for e in epochs),  # the slowest fold's own work
            "config_hash": self.config_hash,
            "trial": self.trial,
        }

    def final_metrics(self, outcomes: Sequence[FoldOutcome]) -> dict[str, Any]:
        """The trial's end: val r (selects) and test r (reported only) with the best weights,
        overall and per fold (``fold.<subject>.val_r``: what a tracker shows per fold)."""
        per_fold = {
            f"fold.{o.label}.{split}_r": getattr(o, f"{split}_mean")
            for o in outcomes
            for split in ("val", "test")
        }
        return per_fold | {
            METRIC: _fisher([o.val_mean for o in outcomes]),
            "test_r": _fisher([o.test_mean for o in outcomes]),
            "epoch": max(o.epochs for o in outcomes),
            "epochs_trained": max(o.epochs for o in outcomes),
            "best_epoch": max(o.best_epoch for o in outcomes),
            "finished": True,
            "config_hash": self.config_hash,
            "trial": self.trial,
            "finish_seconds": max(o.seconds for o in outcomes),
        }

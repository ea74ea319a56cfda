"""The study config: one YAML file naming the dataset, targets, protocols, models, search
budget, scheduler, resources and storage of a sweep. Validated strictly: an unknown key is an
error that names the nearest valid key.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

import yaml
from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from eeg2bold.errors import ConfigError, did_you_mean
from eeg2bold.model_names import BUILTIN_MODELS
from eeg2bold.protocols import get_protocol
from eeg2bold.strict_config import StrictConfig

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SECRET_KEY = re.compile(r"(?i)password|secret|token|key|signature|credential")


class Targets(StrictConfig):
    """What the models predict (shared by every trial)."""

    rois: list[str] | None = Field(None, description="ROIs to predict (default: all).")
    common_mode: bool = Field(
        False, description="Remove the mean over ROIs and predict it as its own output."
    )
    target: Literal["seq2one", "seq2seq"] = Field("seq2one", description="Target form.")
    target_hz: float = Field(0.5, gt=0, description="seq2seq only: rate of the BOLD trace.")
    common_footprint: bool = Field(
        True,
        description="Score every trial on the volumes of the largest window + delay the "
        "search allows (data.footprint_s), so configurations are ranked on the same data.",
    )


class Budget(StrictConfig):
    """How many configurations each (protocol, model) pair gets, and an optional time limit."""

    num_samples: int = Field(8, ge=1, description="Trials per (protocol, model).")
    time_limit_s: float | None = Field(
        None,
        gt=0,
        description="Wall-clock limit of the whole search, seconds (the arms run in one Tune "
        "run, side by side where the cluster has room); trials still running then are ended.",
    )


class Scheduler(StrictConfig):
    """Trial scheduler over epochs (ASHA stops poor trials early; fifo never stops them).
    The epoch budget has one owner, ``train.epochs``: see :meth:`StudyConfig.epoch_budget`."""

    type: Literal["asha", "fifo"] = Field("asha", description="asha or fifo.")
    max_epochs: int | None = Field(
        None,
        ge=1,
        description="Epochs per trial at most. Default: train.epochs (search.train.epochs "
        "where the study fixes it, else the training default, 30); set one, not both.",
    )
    grace_period: int | None = Field(
        None,
        ge=1,
        description="ASHA: epochs before a trial can be stopped (its first rung). Default: "
        "the warm-up (train.warmup_epochs) plus 3 epochs, or max_epochs / reduction_factor², "
        "whichever is later.",
    )
    reduction_factor: float = Field(3.0, gt=1, description="ASHA: keep 1/factor per rung.")


# epochs after the learning-rate warm-up before ASHA may judge a trial (by default)
EPOCHS_AFTER_WARMUP = 3


@dataclass(frozen=True)
class EpochBudget:
    """A trial's epochs and ASHA's rungs, resolved from the study config (one owner)."""

    max_epochs: int
    grace_period: int
    rungs: tuple[int, ...]  # epochs at which ASHA compares trials (empty for fifo)
    source: str  # which setting gave max_epochs

    def describe(self) -> str:
        text = f"{self.max_epochs} epochs per trial ({self.source})"
        if not self.rungs:
            return text + ", none stopped early"
        return text + f"; ASHA compares trials at epoch {', '.join(map(str, self.rungs))}"


class WarmStart(StrictConfig):
    """Start every arm where an earlier sweep's same arm (protocol and model) ended: its best
    configurations are enqueued after the defaults, moved into this sweep's space."""

    sweep: str = Field(description="The earlier sweep's folder (or its study config).")
    top_k: int = Field(3, ge=1, le=64, description="Best configurations taken per arm.")

    @field_validator("sweep")
    @classmethod
    def _sweep(cls, value: str) -> str:
        return _absolute(value)


class Resources(StrictConfig):
    """Resources per fold (a trial holds one bundle per fold actor plus its own)."""

    cpu: float = Field(1.0, gt=0, description="CPUs per fold (fractions allowed).")
    gpu: float = Field(0.0, ge=0, description="GPUs per fold (fractions share a GPU).")
    trial_cpu: float = Field(0.1, ge=0, description="CPUs of the trial's own coordinator.")
    folds_per_actor: int = Field(
        1,
        ge=1,
        description=(
            "Folds one actor runs one after another (its bundle holds their CPUs and GPUs): "
            "fewer processes to start and one copy of the runs per actor, less parallelism."
        ),
    )
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        "auto", description="Training device inside a fold (auto: cuda if the fold has a GPU)."
    )


def _absolute(location: str) -> str:
    """A local path made absolute when the config is read, so that what a sweep records means
    the same from any working folder (URLs and ``${VAR}`` templates are kept as written)."""
    if "://" in location or "${" in location:
        return location
    return str(Path(location).expanduser().resolve())


class Storage(StrictConfig):
    """Where results go. Multi-node sweeps need a path every node sees (NFS) or an object store.

    URLs may reference environment variables as ``${NAME}`` (e.g. a database password), which
    are expanded only when connecting and never printed.
    """

    results: str | None = Field(None, description="Results folder or URL (default sweeps/<name>).")
    optuna: str | None = Field(
        None,
        description=(
            "Optuna storage: sqlite:///file.db (default: <results>/optuna.db), "
            "journal:///path/file.log, or postgresql://user@host/db; a bare file path, as "
            "optuna-dashboard takes it, is a journal file (an SQLite file if it ends in .db, "
            ".sqlite or .sqlite3)."
        ),
    )

    @field_validator("results")
    @classmethod
    def _results(cls, value: str | None) -> str | None:
        return None if value is None else _absolute(value)

    @field_validator("optuna")
    @classmethod
    def _optuna(cls, value: str | None) -> str | None:
        if value is None:
            return None
        for scheme in ("sqlite:///", "journal://"):
            if value.startswith(scheme):
                return scheme + _absolute(value[len(scheme) :])
        if "://" not in value:  # a file path, the form optuna-dashboard and `optuna` take
            sqlite = Path(value).suffix.lower() in (".db", ".sqlite", ".sqlite3")
            return ("sqlite:///" if sqlite else "journal://") + _absolute(value)
        return value


class Failure(StrictConfig):
    max_failures: int = Field(
        2, ge=0, description="Retries of a trial whose worker or node died (Ray FailureConfig)."
    )


class MLflowTracking(StrictConfig):
    """One MLflow run per trial (Ray Tune's MLflow logger): the resolved configuration as
    parameters, val r per epoch, fold results; the report attached when it is built."""

    tracking_uri: str = Field(
        description="MLflow tracking server, e.g. http://127.0.0.1:5000 (${NAME} allowed: "
        "expanded when connecting, never written)."
    )
    experiment: str | None = Field(None, description="Experiment name (default: the sweep's).")


class WandbTracking(StrictConfig):
    """One W&B run per trial (Ray Tune's W&B logger); offline by default (`wandb sync` later)."""

    project: str = Field(description="W&B project.")
    mode: Literal["offline", "online"] = Field("offline", description="offline or online.")


class Tracking(StrictConfig):
    """Optional experiment trackers; results stay in the run folder either way."""

    mlflow: MLflowTracking | None = Field(None, description="One MLflow run per trial.")
    wandb: WandbTracking | None = Field(None, description="One W&B run per trial.")


class StudyConfig(StrictConfig):
    """A sweep: every (protocol, model) pair gets its own Optuna study of ``num_samples``."""

    name: str = Field(description="Sweep name (letters, digits, -, _).")
    dataset: str = Field(description="Dataset store path or URL.")
    targets: Targets = Field(default_factory=Targets, description="What the models predict.")
    protocols: list[str] = Field(
        default_factory=lambda: ["within", "loso"],
        description="Evaluation protocols; each is crossed with every model (an arm).",
    )
    protocol_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per protocol: splitter options (val_fraction, ...)."
    )
    calibration_minutes: list[float] = Field(
        default_factory=list,
        description="The calibration curve: loso_calibrated once per amount of the held-out "
        "subject's data (minutes; 0 = LOSO on the same fixed test block), each its own arm.",
    )
    models: list[str] = Field(
        default_factory=lambda: ["ridge"], description="Registered models (`eeg2bold models`)."
    )
    search: dict[str, Any] = Field(
        default_factory=dict,
        description="Fixed values, choices or {low, high, log} ranges by parameter name.",
    )
    budget: Budget = Field(default_factory=Budget, description="Trials per arm, time limit.")
    scheduler: Scheduler = Field(
        default_factory=Scheduler, description="Early stopping of trials (ASHA or fifo)."
    )
    resources: Resources = Field(
        default_factory=Resources, description="CPUs, GPUs and memory per fold and trial."
    )
    max_concurrent_trials: int = Field(2, ge=1, description="Trials running at once.")
    storage: Storage = Field(
        default_factory=Storage, description="Where the run folder and Optuna's database go."
    )
    failure: Failure = Field(default_factory=Failure, description="Retries of lost trials.")
    tracking: Tracking = Field(
        default_factory=Tracking, description="Optional experiment trackers (MLflow, W&B)."
    )
    warm_start: WarmStart | None = Field(
        None, description="Enqueue an earlier sweep's best configurations (sweep --warm-start)."
    )
    seed: int = Field(0, ge=0, description="Seed of the samplers and of every trial's fit.")
    _as_written: dict[str, str | None] = PrivateAttr(default_factory=dict)
    _where: str = PrivateAttr(default="study config")

    @model_validator(mode="wrap")
    @classmethod
    def _remember_locations(cls, data: Any, handler: Any) -> StudyConfig:
        """Local paths are resolved when read; keep them as written too, for checks that
        care (a relative path in a cluster job means another folder on every node)."""
        config = handler(data)
        if isinstance(data, dict):
            storage = data.get("storage") or {}
            storage = storage if isinstance(storage, dict) else {}
            config._as_written = {
                "dataset": data.get("dataset"),
                "storage.results": storage.get("results"),
                "storage.optuna": storage.get("optuna"),
            }
        return config

    def as_written(self, key: str) -> str | None:
        """``dataset``, ``storage.results`` or ``storage.optuna`` as the config file wrote it."""
        return self._as_written.get(key)

    @model_validator(mode="after")
    def _one_epoch_owner(self) -> StudyConfig:
        fixed = self.search.get("train.epochs")
        if isinstance(fixed, dict | list):
            raise ValueError(
                "search.train.epochs: the epoch budget is not searched (ASHA decides how many "
                "epochs a trial gets); fix it to one value"
            )
        ours = self.scheduler.max_epochs
        if fixed is not None and ours is not None and int(fixed) != ours:
            raise ValueError(
                f"scheduler.max_epochs ({ours}) and search.train.epochs ({fixed}) disagree: "
                "they are one setting (a trial's epochs); keep one"
            )
        return self

    def with_warm_start(self, sweep: str, *, top_k: int | None = None) -> StudyConfig:
        """This config with ``warm_start`` set (``sweep --warm-start``), validated."""
        values = {"sweep": sweep} | ({"top_k": top_k} if top_k is not None else {})
        try:
            warm = WarmStart(**values)
        except ValidationError as exc:
            raise ConfigError(f"--warm-start: {_explain(exc)}") from None
        copy = self.model_copy(update={"warm_start": warm})
        copy._as_written, copy._where = self._as_written, self._where
        return copy

    def epoch_budget(self) -> EpochBudget:
        """A trial's maximum epochs (``train.epochs``: the study's fixed value, else
        ``scheduler.max_epochs``, else the training default) and ASHA's rungs relative to it:
        the first rung after the warm-up plus :data:`EPOCHS_AFTER_WARMUP` epochs, or at
        ``max_epochs / reduction_factor²`` for long budgets, then every ``reduction_factor``
        times as many epochs. E.g. 30 epochs, warm-up 1, factor 3: rungs at 4 and 12."""
        from eeg2bold.training.fit import TrainConfig

        fixed = self.search.get("train.epochs")
        if fixed is not None:
            epochs, source = int(fixed), "search.train.epochs"
        elif self.scheduler.max_epochs is not None:
            epochs, source = self.scheduler.max_epochs, "scheduler.max_epochs"
        else:
            epochs, source = TrainConfig().epochs, "train.epochs default"
        s = self.scheduler
        warmup = float(self.search.get("train.warmup_epochs", TrainConfig().warmup_epochs))
        grace = s.grace_period or max(
            math.ceil(warmup) + EPOCHS_AFTER_WARMUP, math.ceil(epochs / s.reduction_factor**2)
        )
        grace = min(grace, epochs)
        rungs: list[int] = []
        if s.type == "asha":
            # as Ray's ASHA places them (grace · factor^k below max_epochs)
            n = int(math.log(epochs / grace) / math.log(s.reduction_factor) + 1)
            rungs = [int(grace * s.reduction_factor**k) for k in range(n)]
            rungs = [r for r in rungs if r < epochs]  # at the last epoch nothing is cut
        return EpochBudget(epochs, grace, tuple(rungs), source)

    @field_validator("calibration_minutes")
    @classmethod
    def _amounts(cls, value: list[float]) -> list[float]:
        if any(m < 0 for m in value) or len(set(value)) != len(value):
            raise ValueError("use distinct amounts >= 0 (minutes)")
        return sorted(float(m) for m in value)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", value):
            raise ValueError("use letters, digits, '-' and '_' (start with a letter or digit)")
        return value

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, value: str) -> str:
        return _absolute(value)

    @field_validator("models")
    @classmethod
    def _models(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("name at least one model")
        unknown = [m for m in value if m not in BUILTIN_MODELS]
        if unknown:  # a plugin, or a typo: only then is the registry (and torch) imported
            from eeg2bold.models import get_model_class

            for m in unknown:
                get_model_class(m)
        return value

    @field_validator("protocols")
    @classmethod
    def _protocols(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("name at least one protocol")
        for p in value:
            get_protocol(p)
        return value

    def protocol_arms(self) -> list[tuple[str, dict[str, Any]]]:
        """(protocol, splitter options) of every arm's protocol: a calibration curve expands
        ``loso_calibrated`` into one entry per amount."""
        out = []
        for p in self.protocols:
            options = dict(self.protocol_options.get(p, {}))
            if p == "loso_calibrated" and self.calibration_minutes:
                out += [
                    (p, options | {"calibration_s": 60.0 * m}) for m in self.calibration_minutes
                ]
            else:
                out.append((p, options))
        return out

    @property
    def results_url(self) -> str:
        """The run folder of the sweep (local paths absolute)."""
        from eeg2bold.run_folder.folder import default_sweep_folder

        return _absolute(self.storage.results or default_sweep_folder(self.name))

    @property
    def optuna_url(self) -> str:
        if self.storage.optuna:
            return self.storage.optuna
        results = self.results_url
        if "://" in results:
            raise ConfigError(
                "storage.optuna must be given when results live in an object store "
                "(SQLite cannot live there): use postgresql://… or journal:///shared/path"
            )
        from eeg2bold.run_folder import RunFolder

        return RunFolder(results).optuna_url

    def inline_credentials(self) -> list[str]:
        """Locations holding a literal password or secret query value (not ``${NAME}``):
        whatever a sweep records (sweep.json, reports, Ray's files) would carry it."""
        found = []
        for what, url in (
            ("dataset", self.dataset),
            ("storage.results", self.storage.results or ""),
            ("storage.optuna", self.storage.optuna or ""),
            ("tracking.mlflow.tracking_uri", getattr(self.tracking.mlflow, "tracking_uri", "")),
        ):
            if "://" not in url:
                continue
            probe = urlsplit(_VAR.sub("", url))
            query = parse_qsl(probe.query, keep_blank_values=True)
            if probe.password or any(v and _SECRET_KEY.search(k) for k, v in query):
                found.append(what)
        return found

    def refuse_inline_credentials(self, *, where: str) -> None:
        inline = self.inline_credentials()
        if inline:
            raise ConfigError(
                f"{', '.join(inline)} holds a literal credential, which {where} would write "
                "down: write it as ${NAME} (e.g. postgresql://user:${PGPASSWORD}@host/db) with "
                "NAME set in the environment, or leave the password out and set PGPASSWORD"
            )

    def data_settings(self) -> dict[str, Any]:
        """SampleConfig fields every trial shares: the targets, and one footprint for every
        window and delay the search may try (the same volumes for every trial)."""
        from eeg2bold.search_spaces import common_footprint

        out = self.targets.model_dump(exclude_none=True, exclude={"common_footprint"})
        if self.targets.common_footprint:
            out["footprint_s"] = common_footprint(self.search)
        return out

    def train_settings(self) -> dict[str, Any]:
        """TrainConfig fields every trial shares (the rest is searched)."""
        return {
            "epochs": self.epoch_budget().max_epochs,
            "seed": self.seed,
            "device": self.resources.device,
        }


def load_study_config(path: str | os.PathLike[str]) -> StudyConfig:
    """Read and validate a study YAML; errors are one line naming the file and the key."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such study config") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a study config is a mapping of keys to values")
    return parse_study_config(data, where=str(path))


def parse_study_config(data: dict[str, Any], *, where: str = "study config") -> StudyConfig:
    """The config's schema, checked without torch or the models (fast: renderers, queries).
    :func:`validate_study` checks the search values too, before anything runs."""
    try:
        config = StudyConfig(**data)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {_explain(exc)}") from None
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    config._where = where
    return config


def validate_study(config: StudyConfig) -> None:
    """Everything checkable before a sweep runs (``sweep --dry-run`` and sweep start): every
    search name, range, fixed value and choice against the models' spaces and typed configs;
    credentials that would be written down."""
    from eeg2bold.search_spaces import check_constraints

    where = config._where
    try:
        check_constraints(config.models, config.search)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    config.refuse_inline_credentials(where="the sweep folder (sweep.json), reports and Ray")
    if config.warm_start is not None:  # an earlier sweep that is not there fails now, not later
        from eeg2bold.errors import Eeg2BoldError
        from eeg2bold.run_folder import RunFolder

        source = config.warm_start.sweep
        try:
            if not source.endswith((".yaml", ".yml")):
                RunFolder(source).read_manifest()
        except Eeg2BoldError as exc:
            raise ConfigError(f"{where}: warm_start.sweep: {exc}") from None


def _explain(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        key = ".".join(loc)
        if err["type"] == "extra_forbidden":
            model: type[BaseModel] = StudyConfig
            for part in loc[:-1]:
                field = model.model_fields.get(part)
                ann = getattr(field, "annotation", None)
                if isinstance(ann, type) and issubclass(ann, BaseModel):
                    model = ann
            hint = did_you_mean(str(loc[-1]), model.model_fields)
            parts.append(f"unknown key {key!r}{hint}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            parts.append(f"{key}: {msg}" if key else msg)
    return "; ".join(parts)


class SweepOptions(StrictConfig):
    """How a sweep runs (the ``eeg2bold sweep`` options; what it searches is the study
    config)."""

    address: str | None = Field(
        None,
        description="An existing Ray cluster, 'auto' or HOST:PORT; by default Ray starts here.",
    )
    resume: bool = Field(False, description="Continue an interrupted sweep.")
    dry_run: bool = Field(False, description="Validate and print the resolved plan only.")
    num_cpus: float | None = Field(
        None, gt=0, description="CPUs of a local Ray instance; by default all."
    )
    warm_start: str | None = Field(
        None,
        description="Enqueue the best configurations of each arm of an earlier sweep (its "
        "folder or study config) after the defaults: the study config's warm_start, given here.",
    )
    warm_start_k: int | None = Field(
        None,
        ge=1,
        description="How many of each arm's best; by default warm_start.top_k's default.",
    )

    def study(self, config: StudyConfig) -> StudyConfig:
        """The study config with the warm start given here, if any."""
        if self.warm_start is None:
            return config
        return config.with_warm_start(self.warm_start, top_k=self.warm_start_k)

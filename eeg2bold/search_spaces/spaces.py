"""Define-by-run search spaces: each model's own space plus shared window, optimiser and loss
spaces, with fixed values and narrowed ranges taken from the study config.

Parameter names are qualified by section — ``data.window_s``, ``train.lr``, ``loss.clip``,
``model.n_branches`` — so they never collide and map one-to-one onto
:class:`~eeg2bold.training.config.ExperimentConfig`. A *constraint* for a name is either a
fixed value, a list of choices, or ``{low, high, log, step}`` narrowing a numeric range; the
wrapped trial applies it wherever the space asks for that name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from eeg2bold.errors import ConfigError, did_you_mean, invalid_options
from eeg2bold.models import get_model_class
from eeg2bold.run_folder import optuna_attrs

if TYPE_CHECKING:
    import optuna

    from eeg2bold.training.config import ExperimentConfig

Constraint = Any  # a fixed value, a list of choices, or a dict {low, high, log, step}


def data_space(trial: Any) -> dict[str, Any]:
    """Window length and EEG→BOLD delay (DESIGN.md: both are hyperparameters); subject
    alignment only where the study asks (``data.align: euclidean`` or ``[none, euclidean]``)."""
    out = {
        "window_s": trial.suggest_categorical("window_s", [10.0, 15.0, 20.0]),
        "delay_s": trial.suggest_float("delay_s", 0.0, 6.0, step=1.0),
    }
    if getattr(trial, "constrains", lambda _: False)("align"):
        out["align"] = trial.suggest_categorical("align", ["none", "euclidean"])
    return out


def optimiser_space(trial: Any) -> dict[str, Any]:
    """AdamW learning rate, weight decay and batch size (gradient-trained models only)."""
    return {
        "lr": trial.suggest_float("lr", 1e-4, 3e-3, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 1e-4, 1e-1, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [16, 32, 64]),
    }


def loss_space(trial: Any, *, contrastive: bool) -> dict[str, Any]:
    """Weights of (1 − r), MSE and — for models with embeddings — the CLIP term (other models
    keep the training default, which they ignore, so their configurations hash as `train`'s)."""
    out = {
        "r": trial.suggest_float("r", 0.5, 1.0),
        "mse": trial.suggest_float("mse", 0.0, 1.0),
    }
    if contrastive:
        out["clip"] = trial.suggest_float("clip", 0.0, 0.5)
    return out


class ConstrainedTrial:
    """Wraps an Optuna trial: prefixes names and applies the study config's constraints."""

    def __init__(self, trial: Any, constraints: Mapping[str, Constraint], prefix: str = ""):
        self._trial = trial
        self._constraints = constraints
        self._prefix = prefix
        self.fixed: dict[str, Any] = {}
        self.used: set[str] = set()

    def section(self, prefix: str) -> ConstrainedTrial:
        child = ConstrainedTrial(self._trial, self._constraints, prefix)
        child.fixed, child.used = self.fixed, self.used
        return child

    def constrains(self, name: str) -> bool:
        """Whether the study config constrains ``name`` (in this section)."""
        return (f"{self._prefix}.{name}" if self._prefix else name) in self._constraints

    def __getattr__(self, item: str) -> Any:  # number, user attrs, ... of the real trial
        return getattr(self._trial, item)

    def _name(self, name: str) -> str:
        full = f"{self._prefix}.{name}" if self._prefix else name
        self.used.add(full)
        return full

    def suggest_float(self, name: str, low: float, high: float, **kw: Any) -> float:
        full = self._name(name)
        c = self._constraints.get(full)
        if c is None:
            return self._trial.suggest_float(full, low, high, **kw)
        if isinstance(c, dict):
            lo, hi = float(c.get("low", low)), float(c.get("high", high))
            _check_range(full, lo, hi, low, high)
            opts = {"log": c.get("log", kw.get("log", False))}
            if c.get("step", kw.get("step")) is not None and not opts["log"]:
                opts["step"] = c.get("step", kw.get("step"))
            return self._trial.suggest_float(full, lo, hi, **opts)
        if isinstance(c, list):
            return self._trial.suggest_categorical(full, c)
        self.fixed[full] = c
        return c

    def suggest_int(self, name: str, low: int, high: int, **kw: Any) -> int:
        full = self._name(name)
        c = self._constraints.get(full)
        if c is None:
            return self._trial.suggest_int(full, low, high, **kw)
        if isinstance(c, dict):
            lo, hi = int(c.get("low", low)), int(c.get("high", high))
            _check_range(full, lo, hi, low, high)
            return self._trial.suggest_int(
                full, lo, hi, log=c.get("log", kw.get("log", False)), step=c.get("step", 1)
            )
        if isinstance(c, list):
            return self._trial.suggest_categorical(full, c)
        self.fixed[full] = c
        return c

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        full = self._name(name)
        c = self._constraints.get(full)
        if c is None:
            return self._trial.suggest_categorical(full, list(choices))
        if isinstance(c, list):
            return self._trial.suggest_categorical(full, c)
        if isinstance(c, dict):
            raise ConfigError(f"search.{full}: a categorical parameter takes a value or a list")
        self.fixed[full] = c
        return c


def _check_range(name: str, lo: float, hi: float, low: float, high: float) -> None:
    if not lo <= hi:
        raise ConfigError(f"search.{name}: low {lo} is above high {hi}")
    if lo < low or hi > high:
        raise ConfigError(f"search.{name}: range [{lo}, {hi}] leaves the allowed [{low}, {high}]")


def define_space(
    trial: Any, *, model: str, constraints: Mapping[str, Constraint] | None = None
) -> dict[str, Any]:
    """Sample one configuration for ``model``: ``{data, train, loss, model_params}``.

    ``trial`` is an Optuna trial (or Ray's capturing proxy of one); the returned sections
    feed :func:`experiment_from_sample`.
    """
    cls = get_model_class(model)
    t = ConstrainedTrial(trial, constraints or {})
    sample: dict[str, Any] = {"data": data_space(t.section("data"))}
    if cls.closed_form:
        sample["train"], sample["loss"] = {}, {}
    else:
        sample["train"] = optimiser_space(t.section("train"))
        sample["loss"] = loss_space(t.section("loss"), contrastive=cls.contrastive)
    sample["model_params"] = cls.search_space(t.section("model"))
    # constraints on names no space asks for (e.g. train.epochs) are fixed settings
    for name, value in (constraints or {}).items():
        if name not in t.used and not isinstance(value, dict | list):
            section, _, key = name.partition(".")
            target = {"model": "model_params"}.get(section, section)
            if target in sample:
                sample[target][key] = value
    return sample


@dataclass
class ParamInfo:
    """One searchable parameter as seen by a recording trial."""

    name: str
    kind: str
    low: Any = None
    high: Any = None
    log: bool = False
    step: Any = None
    choices: list[Any] = field(default_factory=list)
    default: Any = None  # the value `eeg2bold train` uses (where a sweep starts)

    def describe(self) -> str:
        if self.kind == "categorical":
            text = f"one of {self.choices}"
        else:
            scale = ", log" if self.log else (f", step {self.step}" if self.step else "")
            text = f"{self.kind} in [{self.low}, {self.high}{scale}]"
        return text if self.default is None else f"{text:<36} default {self.default!r}"

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is one this parameter can take."""
        if self.kind == "categorical":
            return any(_same(value, c) for c in self.choices)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        return self.low <= value <= self.high


class RecordingTrial:
    """A stand-in trial that returns the first choice / lower bound and records each call."""

    def __init__(self) -> None:
        self.params: dict[str, ParamInfo] = {}
        self.number = 0

    def suggest_float(self, name: str, low: float, high: float, **kw: Any) -> float:
        self.params.setdefault(
            name, ParamInfo(name, "float", low, high, kw.get("log", False), kw.get("step"))
        )
        return low

    def suggest_int(self, name: str, low: int, high: int, **kw: Any) -> int:
        self.params.setdefault(
            name, ParamInfo(name, "int", low, high, kw.get("log", False), kw.get("step"))
        )
        return low

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        self.params.setdefault(name, ParamInfo(name, "categorical", choices=list(choices)))
        return next(iter(choices))


def describe_space(model: str, *, samples: int = 16, seed: int = 0) -> list[ParamInfo]:
    """Every parameter the space of ``model`` can ask for (conditional ones included), each
    with the value ``eeg2bold train`` uses for it (``default``)."""
    import optuna

    recorder = RecordingTrial()
    define_space(recorder, model=model)
    found = dict(recorder.params)
    defaults = search_defaults(model)
    for name, info in found.items():
        info.default = defaults.get(name)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for _ in range(samples):  # conditional branches show up under random sampling
        trial = study.ask()
        define_space(trial, model=model)
        for name, dist in trial.distributions.items():
            if name not in found:
                found[name] = _info_from_distribution(name, dist)
                found[name].default = defaults.get(name)
        study.tell(trial, 0.0)
    return [found[k] for k in sorted(found)]


def _info_from_distribution(name: str, dist: Any) -> ParamInfo:
    import optuna

    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        return ParamInfo(name, "categorical", choices=list(dist.choices))
    kind = "int" if isinstance(dist, optuna.distributions.IntDistribution) else "float"
    return ParamInfo(name, kind, dist.low, dist.high, dist.log, getattr(dist, "step", None))


class _LargestTrial:
    """Answers every suggestion with the largest value it allows (a non-numeric choice: the
    first)."""

    number = 0

    def suggest_float(self, name: str, low: float, high: float, **kw: Any) -> float:
        return high

    def suggest_int(self, name: str, low: int, high: int, **kw: Any) -> int:
        return high

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        choices = list(choices)
        numeric = all(isinstance(c, int | float) and not isinstance(c, bool) for c in choices)
        return max(choices) if numeric else choices[0]


def common_footprint(constraints: Mapping[str, Constraint] | None = None) -> float:
    """The footprint every trial of a sweep shares (``data.footprint_s``): the largest
    ``window_s + delay_s`` the space allows under the study's constraints, so that trials
    differing in window or delay are scored on the same volumes; a fixed
    ``data.footprint_s`` is taken as it is."""
    constraints = constraints or {}
    fixed = constraints.get("data.footprint_s")
    if fixed is not None and not isinstance(fixed, dict | list):
        return float(fixed)
    data = data_space(ConstrainedTrial(_LargestTrial(), constraints).section("data"))
    return float(data["window_s"]) + float(data["delay_s"])


# -- where a search starts: the defaults, or an earlier sweep's best -------------------------
def search_defaults(model: str) -> dict[str, Any]:
    """The configuration ``eeg2bold train`` uses for ``model``, by search parameter name
    (``data.window_s``, ``train.lr``, ``loss.r``, ``model.width``, ...)."""
    from eeg2bold.training.config import build_config

    config = build_config(model=model)
    train = config.train.model_dump(exclude={"loss"})
    out = {f"data.{k}": v for k, v in config.data.model_dump().items()}
    out |= {f"train.{k}": v for k, v in train.items()}
    out |= {f"loss.{k}": v for k, v in config.train.loss.model_dump().items()}
    out |= {f"model.{k}": v for k, v in get_model_class(model).search_defaults().items()}
    return out


@dataclass
class StartPoint:
    """A configuration enqueued before a search samples: Optuna parameter values of the
    space's own names, where they came from, and what had to change to fit the space."""

    params: dict[str, Any]
    origin: str  # "defaults" or "warm_start"
    source: str = ""  # e.g. the earlier sweep and trial a warm start came from
    changes: list[str] = field(default_factory=list)

    def user_attrs(self) -> dict[str, Any]:
        out: dict[str, Any] = {optuna_attrs.ORIGIN: self.origin}
        if self.source:
            out[optuna_attrs.ORIGIN_SOURCE] = self.source
        return out


def default_point(model: str, constraints: Mapping[str, Constraint] | None = None) -> StartPoint:
    """The defaults of ``model`` as a point of its space under the study's constraints: a
    fixed parameter is not a parameter, a narrowed one takes its nearest allowed value."""
    trial = _NearestTrial({}, search_defaults(model))
    define_space(trial, model=model, constraints=constraints)
    return StartPoint(params=trial.params, origin="defaults", changes=trial.changes)


def project_point(
    values: Mapping[str, Any],
    *,
    model: str,
    constraints: Mapping[str, Constraint] | None = None,
    origin: str = "warm_start",
    source: str = "",
) -> StartPoint:
    """Earlier parameter values as a point of today's space: values outside it are moved to
    the nearest allowed one, names it no longer asks for are dropped, and names it asks for
    that ``values`` lacks take the defaults (each change said in ``changes``)."""
    trial = _NearestTrial(values, search_defaults(model))
    define_space(trial, model=model, constraints=constraints)
    dropped = sorted(set(values) - set(trial.params))
    changes = trial.changes + ([f"dropped {', '.join(dropped)}"] if dropped else [])
    changes += [f"new, at the default: {', '.join(trial.new)}"] if trial.new else []
    return StartPoint(params=trial.params, origin=origin, source=source, changes=changes)


def _same(a: Any, b: Any) -> bool:
    """Equal, without taking True for 1 or "1" for 1 (a choice is the value it names)."""
    if isinstance(a, bool | str) or isinstance(b, bool | str):
        return type(a) is type(b) and a == b
    return bool(a == b)


class _NearestTrial:
    """Answers every suggestion with a given value (else the fallback, else the range's low
    end or first choice), moved to the nearest value the distribution allows."""

    def __init__(self, values: Mapping[str, Any], fallback: Mapping[str, Any]):
        self.values, self.fallback = values, fallback
        self.params: dict[str, Any] = {}
        self.changes: list[str] = []
        self.new: list[str] = []
        self.number = 0

    def _wanted(self, name: str, first: Any) -> Any:
        if name in self.values:
            return self.values[name]
        if self.values:  # projecting an earlier point: it lacked this one
            self.new.append(name)
        return self.fallback.get(name, first)

    def _keep(self, name: str, wanted: Any, value: Any) -> Any:
        if not _same(wanted, value):
            self.changes.append(f"{name} {wanted!r} -> {value!r}")
        self.params[name] = value
        return value

    def suggest_float(self, name: str, low: float, high: float, **kw: Any) -> float:
        wanted = self._wanted(name, low)
        try:
            value = min(max(float(wanted), low), high)
        except (TypeError, ValueError):
            value = float(low)
        step = kw.get("step")
        if step and not kw.get("log"):
            value = min(low + round((value - low) / step) * step, high)
        return self._keep(name, wanted, value)

    def suggest_int(self, name: str, low: int, high: int, **kw: Any) -> int:
        wanted = self._wanted(name, low)
        try:
            value = min(max(round(float(wanted)), low), high)
        except (TypeError, ValueError):
            value = int(low)
        step = kw.get("step") or 1
        value = min(low + round((value - low) / step) * step, high)
        return self._keep(name, wanted, int(value))

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        choices = list(choices)
        wanted = self._wanted(name, choices[0])
        value = next((c for c in choices if _same(c, wanted)), None)
        if value is None:
            numeric = [c for c in choices if isinstance(c, int | float) and not isinstance(c, bool)]
            if numeric and isinstance(wanted, int | float) and not isinstance(wanted, bool):
                value = min(numeric, key=lambda c: abs(c - wanted))
            else:
                value = choices[0]
        return self._keep(name, wanted, value)


def check_constraints(models: list[str], constraints: Mapping[str, Constraint]) -> None:
    """Refuse constraint names no space knows (nearest valid name suggested) and bad ranges."""
    from eeg2bold.training.config import settable_keys

    known: set[str] = set()
    for model in models:
        known |= {p.name for p in describe_space(model)}
        for section, keys in settable_keys(model, "within").items():
            if section != "protocol":
                known |= {f"{section}.{k}" for k in keys}
    for name in constraints:
        if name not in known:
            hint = did_you_mean(name, sorted(known))
            raise ConfigError(f"search: unknown parameter {name!r}{hint}")
    import optuna

    searched = {k: v for k, v in constraints.items() if isinstance(v, dict | list)}
    for model in models:  # the narrowed ranges must build; one study per model, as in a sweep
        # (models may share a parameter name with different distributions)
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        trial = study.ask()
        sample = define_space(trial, model=model, constraints=constraints)
        study.tell(trial, 0.0)
        # each value alone on the defaults (so an error names the key that breaks the rule),
        # then all fixed values together (rules between keys)
        clean = define_space(
            _NearestTrial({}, search_defaults(model)), model=model, constraints=searched
        )
        _check_values(model, clean, constraints)
        _check_together(model, sample, constraints)


def fixed_values(constraints: Mapping[str, Constraint]) -> dict[str, Any]:
    """The constraints that fix a value (not a list of choices, not a range)."""
    return {k: v for k, v in constraints.items() if not isinstance(v, dict | list)}


def _check_values(model: str, sample: dict[str, Any], constraints: Mapping[str, Any]) -> None:
    """Every fixed value and every listed choice must pass the typed configs, so a sweep never
    starts trials that can only fail. Errors name the search key and the rule it breaks."""
    candidates: list[tuple[str, Any]] = [(k, v) for k, v in fixed_values(constraints).items()]
    candidates += [(k, c) for k, v in constraints.items() if isinstance(v, list) for c in v]
    section_of = {"model": "model_params"}
    for name, value in candidates:
        section, _, key = name.partition(".")
        target = section_of.get(section, section)
        trial_sample = {k: dict(v) for k, v in sample.items()}
        if target not in trial_sample:  # e.g. train.* of a closed-form model: unused
            continue
        trial_sample[target][key] = value
        try:
            experiment_from_sample(trial_sample, model=model, protocol="within")
        except ConfigError as exc:
            text = str(exc).removeprefix("invalid setting(s): ")
            raise ConfigError(
                f"search.{name} = {value!r} is not valid for {model}: {text}"
            ) from None


def _check_together(model: str, sample: dict[str, Any], constraints: Mapping[str, Any]) -> None:
    try:
        experiment_from_sample(sample, model=model, protocol="within")
    except ConfigError as exc:
        text = str(exc).removeprefix("invalid setting(s): ")
        names = ", ".join(f"search.{k}" for k in fixed_values(constraints))
        raise ConfigError(f"{names}: together not valid for {model}: {text}") from None


class SpaceFunction:
    """A picklable define-by-run function for a searcher (searchers save their state with
    pickle); returns the sample and the Optuna trial number as constants."""

    def __init__(self, *, model: str, constraints: Mapping[str, Constraint] | None = None):
        self.model = model
        self.constraints = dict(constraints or {})

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        sample = define_space(trial, model=self.model, constraints=self.constraints)
        return {"sample": sample, "optuna_number": trial.number}


def space_function(
    *, model: str, constraints: Mapping[str, Constraint] | None = None
) -> Callable[[optuna.Trial], dict[str, Any]]:
    """A define-by-run function for ``model`` under the sweep's constraints."""
    return SpaceFunction(model=model, constraints=constraints)


def experiment_from_sample(
    sample: Mapping[str, Any],
    *,
    model: str,
    protocol: str,
    protocol_options: Mapping[str, Any] | None = None,
    data: Mapping[str, Any] | None = None,
    train: Mapping[str, Any] | None = None,
) -> ExperimentConfig:
    """The experiment a sampled configuration stands for; ``data``/``train`` are the sweep's
    fixed settings (targets, epochs, device, seed) under the sample."""
    from pydantic import ValidationError

    from eeg2bold.training.config import ExperimentConfig

    train_values = {**(train or {}), **sample.get("train", {})}
    loss = {**train_values.pop("loss", {}), **sample.get("loss", {})}
    try:
        return ExperimentConfig(
            model=model,
            model_params=dict(sample.get("model_params", {})),
            protocol=protocol,
            protocol_options=dict(protocol_options or {}),
            data={**(data or {}), **sample.get("data", {})},
            train={**train_values, "loss": loss},
        ).resolved()
    except ValidationError as exc:  # a configuration failure, named, never a crash
        names = {"train.loss": "loss"}  # the loss weights are their own section to the user
        raise ConfigError(
            invalid_options(exc, names=names, prefix="invalid setting(s): ")
        ) from None

"""Search spaces: every model's samples build; constraints fix, narrow and are checked."""

from __future__ import annotations

import optuna
import pytest

from eeg2bold.errors import ConfigError
from eeg2bold.models import build_model, get_model_class, model_names
from eeg2bold.models.base import DataSpec
from eeg2bold.search_spaces import (
    check_constraints,
    common_footprint,
    define_space,
    describe_space,
    experiment_from_sample,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.mark.parametrize("model", model_names())
def test_every_sample_is_a_valid_experiment_that_builds(model):
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    for _ in range(4):
        trial = study.ask()
        sample = define_space(trial, model=model)
        config = experiment_from_sample(sample, model=model, protocol="loso")
        assert config.model == model
        spec = DataSpec(n_channels=6, n_rois=2, sfreq=100.0, window_s=config.data.window_s, n_out=1)
        build_model(model, spec, config.model_params)
        names = set(trial.params)
        assert all(n.split(".")[0] in {"data", "train", "loss", "model"} for n in names)
        if get_model_class(model).closed_form:
            assert not any(n.startswith("train.") for n in names)
        study.tell(trial, 0.0)


def test_only_contrastive_models_search_the_clip_weight():
    assert "loss.clip" in {p.name for p in describe_space("twin")}
    assert "loss.clip" not in {p.name for p in describe_space("beira")}


def test_constraints_fix_narrow_and_choose():
    constraints = {
        "train.lr": {"low": 1e-3, "high": 2e-3, "log": True},
        "data.window_s": 20.0,
        "model.n_branches": [8, 16],
        "train.epochs": 3,
    }
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(10):
        trial = study.ask()
        sample = define_space(trial, model="beira", constraints=constraints)
        assert 1e-3 <= sample["train"]["lr"] <= 2e-3
        assert sample["data"]["window_s"] == 20.0
        assert "data.window_s" not in trial.params  # fixed: not searched
        assert sample["model_params"]["n_branches"] in (8, 16)
        assert sample["train"]["epochs"] == 3
        config = experiment_from_sample(
            sample, model="beira", protocol="within", data={"common_mode": True}
        )
        assert config.train.epochs == 3
        assert config.data.common_mode
        study.tell(trial, 0.0)


def test_bad_constraints_are_refused_with_suggestions():
    with pytest.raises(ConfigError, match=r"unknown parameter 'model.n_branchs' \(did you mean"):
        check_constraints(["beira"], {"model.n_branchs": 8})
    with pytest.raises(ConfigError, match="leaves the allowed"):
        check_constraints(["beira"], {"train.lr": {"low": 1e-6, "high": 1e-3}})
    with pytest.raises(ConfigError, match=r"low .* is above high"):
        check_constraints(["beira"], {"train.lr": {"low": 1e-3, "high": 1e-4}})
    check_constraints(["ridge", "beira"], {"train.epochs": 5, "data.delay_s": [0.0, 4.0]})


def test_constraints_check_models_whose_spaces_share_a_name():
    """beira samples n_branches on a log scale, twin in steps of 8: a study may hold both."""
    beira = {p.name: p for p in describe_space("beira")}["model.n_branches"]
    twin = {p.name: p for p in describe_space("twin")}["model.n_branches"]
    assert (beira.log, twin.log) == (True, False)  # the clash this test is about
    check_constraints(["beira", "twin", "ridge"], {"data.window_s": 10.0})


def test_subject_alignment_is_searched_only_where_the_study_asks():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    seen = set()
    for _ in range(8):
        trial = study.ask()
        sample = define_space(
            trial, model="ridge", constraints={"data.align": ["none", "euclidean"]}
        )
        seen.add(sample["data"]["align"])
        assert trial.params["data.align"] == sample["data"]["align"]
        config = experiment_from_sample(sample, model="ridge", protocol="loso")
        assert config.data.align == sample["data"]["align"]
        study.tell(trial, 0.0)
    assert seen == {"none", "euclidean"}
    trial = study.ask()
    fixed = define_space(trial, model="ridge", constraints={"data.align": "euclidean"})
    assert fixed["data"]["align"] == "euclidean" and "data.align" not in trial.params
    plain = define_space(study.ask(), model="ridge")
    assert "align" not in plain["data"]
    assert experiment_from_sample(plain, model="ridge", protocol="loso").data.align == "none"
    check_constraints(["ridge"], {"data.align": ["none", "euclidean"]})
    with pytest.raises(ConfigError, match=r"data\.align"):
        experiment_from_sample({"data": {"align": "riemann"}}, model="ridge", protocol="loso")


# -- where a search starts -------------------------------------------------------------------
@pytest.mark.parametrize("model", model_names())
def test_every_default_lies_inside_its_models_space(model):
    """A default outside its range would make trial 0 something `train` never runs."""
    for param in describe_space(model):
        assert param.default is not None, f"{model}: {param.name} has no default"
        assert param.contains(param.default), f"{model}: {param.name} = {param.default!r}"


@pytest.mark.parametrize("model", model_names())
def test_the_default_point_is_the_configuration_train_uses(model):
    """Trial 0 of every arm, replayed through the space, is `build_config`'s experiment."""
    from eeg2bold.search_spaces import default_point
    from eeg2bold.training.config import build_config

    point = default_point(model)
    assert point.changes == [] and point.origin == "defaults"
    trial = optuna.trial.FixedTrial(point.params)
    sample = define_space(trial, model=model)
    replayed = experiment_from_sample(sample, model=model, protocol="within")
    assert replayed == build_config(model=model)


def test_a_default_outside_a_narrowed_space_takes_the_nearest_allowed_value():
    from eeg2bold.search_spaces import default_point

    point = default_point(
        "beira",
        {
            "train.lr": {"low": 2e-3, "high": 3e-3, "log": True},
            "data.window_s": [15.0, 20.0],
            "model.norm": ["layer", "batch"],
            "data.delay_s": {"low": 2.0, "high": 4.0},
            "train.batch_size": 64,  # fixed: not a parameter
        },
    )
    assert point.params["train.lr"] == 2e-3
    assert point.params["data.window_s"] == 15.0
    assert point.params["model.norm"] == "layer"
    assert point.params["data.delay_s"] == 2.0
    assert "train.batch_size" not in point.params
    assert point.params["model.width"] == 32  # untouched: beira's default
    assert len(point.changes) == 4


def test_an_earlier_point_is_projected_onto_todays_space():
    from eeg2bold.search_spaces import project_point, search_defaults

    earlier = {
        "train.lr": 1e-2,  # above today's high (3e-3)
        "data.delay_s": 2.4,  # off the 1 s grid
        "model.n_branches": 12,
        "model.kernel_size": 4,  # not a choice: the nearest is 3 or 5
        "model.gone": 1.0,  # no longer in the space
    }
    point = project_point(earlier, model="beira", source="old trial x")
    assert point.params["train.lr"] == 3e-3
    assert point.params["data.delay_s"] == 2.0
    assert point.params["model.n_branches"] == 12
    assert point.params["model.kernel_size"] in (3, 5)
    assert "model.gone" not in point.params
    defaults = search_defaults("beira")
    assert point.params["model.width"] == defaults["model.width"]  # new here: the default
    text = "; ".join(point.changes)
    assert "train.lr 0.01 -> 0.003" in text and "dropped model.gone" in text
    assert "new, at the default" in text and "model.width" in text
    assert point.user_attrs() == {"origin": "warm_start", "origin_source": "old trial x"}


def test_the_common_footprint_is_the_largest_window_plus_delay_the_space_allows():
    assert common_footprint() == 20.0 + 6.0  # window choices up to 20 s, delay up to 6 s
    assert common_footprint({"data.window_s": 10.0}) == 16.0
    narrowed = {"data.window_s": [10.0, 15.0], "data.delay_s": {"low": 1.0, "high": 3.0}}
    assert common_footprint(narrowed) == 18.0
    assert common_footprint({"data.window_s": 10.0, "data.delay_s": 2.0}) == 12.0
    assert common_footprint({"data.footprint_s": 40.0}) == 40.0
    with pytest.raises(ConfigError, match="footprint_s"):
        check_constraints(["ridge"], {"data.window_s": 20.0, "data.footprint_s": 12.0})


def test_a_sampled_configuration_that_fails_validation_names_each_setting_as_users_write_it():
    """The loss weights are the user's ``loss`` section, though they live in ``train``."""
    from eeg2bold.search_spaces.spaces import experiment_from_sample

    with pytest.raises(ConfigError) as err:
        experiment_from_sample(
            {"loss": {"r": -1}, "train": {"lr": -2}}, model="beira", protocol="within"
        )
    message = str(err.value)
    assert message.startswith("invalid setting(s): ")
    assert "train.lr: Input should be greater than 0" in message
    assert "; loss.r: Input should be greater than or equal to 0" in message
    assert "Value error" not in message and "\n" not in message

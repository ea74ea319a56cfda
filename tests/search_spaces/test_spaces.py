"""Search spaces: every model's samples build; constraints fix, narrow and are checked."""

from __future__ import annotations

import optuna
import pytest

from eeg2bold.errors import ConfigError
from eeg2bold.models import build_model, get_model_class, model_names
from eeg2bold.models.base import DataSpec
from eeg2bold.search_spaces import (
    check_constraints,
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

"""Sweeps for real: Ray Tune + Optuna on a tiny simulated dataset."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from eeg2bold.cli import main
from eeg2bold.errors import ConfigError
from eeg2bold.launch.config import load_study_config, parse_study_config
from eeg2bold.launch.optuna_storage import optuna_storage
from eeg2bold.study.queries import best_trials, load_sweep, trials_table
from eeg2bold.study.results import read_results

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _studies(sweep_folder):
    sweep = load_sweep(sweep_folder)
    storage = optuna_storage(sweep.optuna_url)
    return {
        (a["protocol"], a["model"]): optuna.load_study(study_name=a["study_name"], storage=storage)
        for a in sweep.arms()
    }


# -- no Ray needed -----------------------------------------------------------------------
def test_dry_run_prints_the_plan_and_starts_nothing(write_study, capsys, tmp_path):
    path = write_study("plan", models=["ridge", "beira"], protocols=["within", "loso"])
    assert main(["sweep", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "4 (protocol × model), 2 trials each, 8 trials in all" in out
    assert "2 folds as actors" in out
    assert "loso/beira" in out
    assert not (tmp_path / "sweep-plan").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"modles": ["ridge"]}, "unknown key 'modles' (did you mean 'models'?)"),
        ({"budget": {"num_sample": 3}}, "unknown key 'budget.num_sample' (did you mean"),
        ({"models": ["ridgee"]}, "unknown model 'ridgee' (did you mean 'ridge'?)"),
        ({"protocols": ["loos"]}, "unknown protocol 'loos'"),
        ({"search": {"train.lrr": 1e-3}}, "unknown parameter 'train.lrr' (did you mean"),
        ({"name": "bad name"}, "name: use letters"),
        ({"storage": {"results": "s3://bucket/x"}}, None),
    ],
)
def test_config_validation_errors_name_the_key(write_study, change, message):
    path = write_study("cfg", **change)
    if message is None:  # object-store results need an explicit Optuna storage
        config = load_study_config(path)
        with pytest.raises(ConfigError, match=r"storage\.optuna must be given"):
            _ = config.optuna_url
        return
    with pytest.raises(ConfigError) as err:
        load_study_config(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such study config"):
        load_study_config(tmp_path / "none.yaml")
    (tmp_path / "bad.yaml").write_text("name: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_study_config(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="dataset: Field required"):
        parse_study_config({"name": "x"})


# -- with Ray ----------------------------------------------------------------------------
def test_small_sweep_with_asha_through_the_cli(ray_cluster, write_study, capsys, tmp_path):
    path = write_study(
        "small",
        models=["ridge", "linker"],
        budget={"num_samples": 3},
        scheduler={"max_epochs": 2, "grace_period": 1, "reduction_factor": 2},
    )
    assert main(["sweep", str(path)]) == 0
    out = capsys.readouterr().out
    assert "best configuration per protocol and model" in out
    folder = tmp_path / "sweep-small"
    studies = _studies(folder)
    for study in studies.values():
        states = [t.state for t in study.trials]
        assert len(states) == 3
        assert optuna.trial.TrialState.RUNNING not in states
        assert all(t.value is not None for t in study.trials)
    results = read_results(folder / "table")
    final = results[results["final"]]
    assert set(final["model"]) == {"ridge", "linker"}
    assert set(final["split"]) == {"val", "test"}
    assert set(final["subject"]) == {"sub-01", "sub-02"}
    curve = results[~results["final"]]
    assert (curve["split"] == "val").all()
    # every finished Optuna trial has its per-fold, per-ROI rows
    table = trials_table(load_sweep(folder))
    finished = table[table["finished"].astype(bool)]
    assert len(finished) >= 2
    assert set(finished["config_hash"]) <= set(final["config_hash"])
    best = best_trials(load_sweep(folder))
    assert len(best) == 2
    # the storage stays readable by Optuna's own CLI
    sweep = load_sweep(folder)
    cli = subprocess.run(
        [str(Path(sys.executable).parent / "optuna"), "trials", "--storage", sweep.optuna_url]
        + ["--study-name", sweep.arms()[0]["study_name"], "-f", "json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 0, cli.stderr
    assert len(json.loads(cli.stdout)) == 3
    # and through our queries
    assert main(["trials", str(folder), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 6
    assert main(["best", str(folder), "--model", "ridge"]) == 0
    assert "ridge" in capsys.readouterr().out


def test_a_nan_trial_fails_alone(ray_cluster, exploding_model, write_study, tmp_path):
    path = write_study(
        "nan",
        models=["exploding"],
        budget={"num_samples": 4},
        scheduler={"type": "fifo", "max_epochs": 2},
        failure={"max_failures": 2},
    )
    assert main(["sweep", str(path)]) == 0
    study = next(iter(_studies(tmp_path / "sweep-nan").values()))
    assert len(study.trials) == 4
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert failed, "no exploding trial was sampled: choose another seed"
    assert complete, "every trial exploded: choose another seed"
    for t in failed:
        assert t.params["model.explode"] is True
        assert "non-finite training loss" in t.user_attrs["failure_reason"]
        assert t.value is None
    for t in complete:
        assert t.params["model.explode"] is False
        assert t.value is not None
    failures = list((tmp_path / "sweep-nan" / "failures").glob("*.json"))
    assert len(failures) == len(failed)  # a deterministic failure is not retried

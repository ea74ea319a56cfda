"""Sweeps for real: Ray Tune + Optuna on a tiny simulated dataset."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
from trial_results import arm_spans, longest_overlap, trial_rows

from eeg2bold.cli import main
from eeg2bold.errors import ConfigError
from eeg2bold.launch.config import load_study_config, parse_study_config, validate_study
from eeg2bold.run_folder import ROW_KEY, RunFolder, read_results
from eeg2bold.search_spaces import default_point
from eeg2bold.storage.optuna_db import optuna_storage
from eeg2bold.study.queries import best_trials, format_trials, load_sweep, trials_table
from eeg2bold.training.metrics import fisher_mean

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
    assert "2 folds on 2 actors" in out
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
        ({"search": {"train.lr": 0}}, "search.train.lr = 0 is not valid for ridge"),
        (  # the key that breaks the rule, not the first fixed one (issue 26, item 5)
            {"models": ["beira"], "search": {"data.window_s": 20.0, "train.lr": 0}},
            "search.train.lr = 0 is not valid for beira",
        ),
        (
            {"models": ["beira"], "search": {"model.n_branches": 0}},
            "search.model.n_branches = 0 is not valid for beira",
        ),
        ({"search": {"data.window_s": "ten"}}, "search.data.window_s = 'ten' is not valid"),
        ({"models": ["beira"], "search": {"train.lr": "1e3"}}, "less than or equal to 1"),
        ({"search": {"data.window_s": [10.0, -1.0]}}, "search.data.window_s = -1.0 is not valid"),
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
        validate_study(load_study_config(path))  # the schema, then the search values
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_invalid_fixed_value_fails_the_dry_run_in_one_line(write_study, capsys):
    path = write_study("badlr", models=["beira"], search={"train.lr": 0})
    assert main(["sweep", str(path), "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "search.train.lr = 0" in err and "greater than 0" in err


def test_a_literal_password_is_refused_before_anything_is_written(write_study, capsys, tmp_path):
    url = "postgresql://eeg:hunter2@127.0.0.1:5432/optuna"
    path = write_study("literal", storage={"results": str(tmp_path / "lit"), "optuna": url})
    for extra in (["--dry-run"], []):
        assert main(["sweep", str(path), *extra]) == 1
        err = capsys.readouterr().err
        assert "storage.optuna holds a literal credential" in err and "hunter2" not in err
    assert not (tmp_path / "lit").exists()


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
    assert "what the search bought over the defaults (trial 0): test r " in out
    folder = tmp_path / "sweep-small"
    studies = _studies(folder)
    constraints = load_study_config(path).search
    for (_, model), study in studies.items():
        states = [t.state for t in study.trials]
        assert len(states) == 3
        # the search starts where `train` would: trial 0 is the defaults, trained to the end
        first = study.trials[0]
        assert first.user_attrs["origin"] == "defaults"
        assert first.params == default_point(model, constraints).params
        assert first.user_attrs["finished"]
        assert [t.user_attrs["origin"] for t in study.trials[1:]] == ["sampled"] * 2
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
    # a mistyped arm is one line naming the nearest and what the sweep has, not "(no trials)"
    assert main(["best", str(folder), "--model", "rigde"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no model 'rigde' (did you mean 'ridge'? it has" in err
    _check_output_for_scripts_and_people(folder, capsys)
    _check_one_identity_and_self_describing_studies(folder)
    _check_the_objective_is_val_r(folder)
    _check_fold_actors_live_for_the_sweep(folder)
    _check_two_arms_ran_at_once(folder)


def _fold_pids(folder) -> dict[str, set[int]]:
    """Per arm, the process ids of the fold actors that served its trials (Ray's results)."""
    out: dict[str, set[int]] = {}
    for rows in trial_rows(folder).values():
        pids = {int(p) for r in rows for p in str(r.get("fold_pids") or "").split(",") if p}
        out.setdefault(rows[-1]["config"]["arm"], set()).update(pids)
    return out


def _check_fold_actors_live_for_the_sweep(folder):
    """Both arms' trials ran on the same fold actor processes: 2 trials at once × 2 folds,
    started once for the sweep (issue 23), not once per arm."""
    pids = _fold_pids(folder)
    assert set(pids) == {"within/ridge", "within/linker"}
    assert pids["within/ridge"] & pids["within/linker"], pids
    assert len(pids["within/ridge"] | pids["within/linker"]) <= 4, pids


def _check_two_arms_ran_at_once(folder):
    """With room for two trials, a ridge and a linker trial ran at the same time (one Tuner
    for every arm), not one arm after the other."""
    spans = arm_spans(folder)
    overlap = longest_overlap(spans["within/ridge"], spans["within/linker"])
    assert overlap > 0, spans


@pytest.mark.slow
def test_a_second_sweep_starts_where_the_first_ended(ray_cluster, write_study, tmp_path, capsys):
    """`sweep --warm-start FIRST`: after the defaults, the first sweep's best configuration
    of the same arm is trial 1 (moved into the narrowed space, and said so)."""
    first = write_study("first", budget={"num_samples": 3}, scheduler={"type": "fifo"})
    assert main(["sweep", str(first)]) == 0
    capsys.readouterr()
    (best,) = best_trials(load_sweep(tmp_path / "sweep-first")).itertuples()
    narrowed = {"data.window_s": 10.0, "train.steps_per_epoch": 3}
    narrowed["model.lag_s"] = {"low": 4.0, "high": 12.0}
    second = write_study(
        "second", budget={"num_samples": 2}, scheduler={"type": "fifo"}, search=narrowed
    )
    folder = str(tmp_path / "sweep-first")
    assert main(["sweep", str(second), "--warm-start", folder, "--warm-start-k", "1"]) == 0
    err = capsys.readouterr().err
    assert f"[within/ridge] warm start: first trial {best.trial}" in err
    (study,) = _studies(tmp_path / "sweep-second").values()
    trials = sorted(study.trials, key=lambda t: t.number)
    assert [t.user_attrs["origin"] for t in trials] == ["defaults", "warm_start"]
    expected = dict(best.params) | {"model.lag_s": min(best.params["model.lag_s"], 12.0)}
    assert trials[1].params == expected
    assert trials[0].params["model.lag_s"] == 12.0  # the default 20 s, moved into the range


def _check_output_for_scripts_and_people(folder, capsys):
    """`--json` has native types and only each trial's own parameters; `best` ranks each
    protocol × model on its own; `trials --params` fits a 100-column terminal."""
    by_id = {
        str(t.user_attrs["trial_id"]): t
        for study in _studies(folder).values()
        for t in study.trials
    }
    assert main(["trials", str(folder), "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    for record in records:
        trial = by_id[record["trial"]]
        assert record["params"] == trial.params  # this model's parameters, no one else's
        assert {k: type(v) for k, v in record["params"].items()} == {
            k: type(v) for k, v in trial.params.items()
        }  # an integer parameter stays an integer
        assert not any(k.startswith("param.") for k in record)
        assert isinstance(record["number"], int) and isinstance(record["finished"], bool)
    models = {r["model"]: set(r["params"]) for r in records}
    assert models["ridge"] != models["linker"]
    assert main(["best", str(folder), "--top", "2", "--json"]) == 0
    best = json.loads(capsys.readouterr().out)
    # one ranking per arm, arms in order (ASHA-stopped trials rank only where none finished)
    assert [b["model"] for b in best] == sorted(b["model"] for b in best)
    assert {b["model"] for b in best} == {"linker", "ridge"}
    for model in ("linker", "ridge"):
        mine = [b for b in best if b["model"] == model]
        assert [b["rank"] for b in mine] == list(range(1, len(mine) + 1))
        assert [b["val_r"] for b in mine] == sorted((b["val_r"] for b in mine), reverse=True)
    assert len([b for b in best if b["model"] == "ridge"]) == 2  # closed form: all finish
    assert main(["best", str(folder), "--overall", "--top", "3", "--json"]) == 0
    overall = json.loads(capsys.readouterr().out)
    assert [b["rank"] for b in overall] == [1, 2, 3]
    assert [b["val_r"] for b in overall] == sorted((b["val_r"] for b in overall), reverse=True)
    text = format_trials(trials_table(load_sweep(folder)), params=True, width=100)
    assert max(len(line) for line in text.splitlines()) <= 100, text
    assert text.count("\ntrial ") == 6  # one parameter block per trial


def test_a_closed_pipe_ends_quietly():
    """`eeg2bold … | head`: the reader left before the output came; no "internal error",
    the status a shell gives a process ended by SIGPIPE."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "eeg2bold.cli", "spaces"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before anything is written
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 141, err
    assert err == ""


def _check_one_identity_and_self_describing_studies(folder):
    """One trial id in the Optuna attributes, `trials`, the results table, model files and
    Ray's trial folders; studies that say what they measure and how each trial was built."""
    sweep = load_sweep(folder)
    run_folder = RunFolder(folder)
    results = run_folder.results()
    assert not results.duplicated(ROW_KEY).any()
    table = trials_table(sweep)
    ids = set(table["trial"])
    assert ids == set(results["trial"])  # every trial wrote rows (ridge: one epoch each)
    assert set(results["sweep"]) == {sweep.plan["sweep_id"]}
    for trial_id in table[table["finished"].astype(bool)]["trial"]:
        assert len(run_folder.model_files(trial_id)) == 2
    ray_dirs = {p.name.removeprefix("trial_") for p in (folder / "ray").glob("*/trial_*")}
    assert ray_dirs == ids  # TensorBoard event files live in these folders
    for arm, study in _studies(folder).items():
        assert study.metric_names == ["val_r"]
        attrs = study.user_attrs
        assert (attrs["protocol"], attrs["model"]) == arm
        assert attrs["sweep_id"] == sweep.plan["sweep_id"] and attrs["dataset"] == sweep.dataset
        assert attrs["fixed"] == {"data.window_s": 10.0, "train.steps_per_epoch": 3}
        assert "ASHA" in attrs["intermediate_values"]
        for t in study.trials:
            assert t.user_attrs["trial_id"] in ids
            assert t.user_attrs["epochs_trained"] >= 1 and t.user_attrs["best_epoch"] >= 1
            # the config hash resolves to the resolved config the trial trained
            config = run_folder.read_config(t.user_attrs["config_hash"])
            assert config["model"] == arm[1] and config["data"]["window_s"] == 10.0
            # window 10 s fixed, delay up to 6 s: one footprint for every trial
            assert config["data"]["footprint_s"] == 16.0
    # ... so every trial of an arm is scored on the same volumes, whatever its delay
    final = results[results["final"]]
    counts = final.groupby(["protocol", "model", "fold", "roi", "split"])["n"].nunique()
    assert (counts == 1).all(), counts[counts > 1]
    assert final.groupby(["protocol", "model"])["delay_s"].nunique().max() > 1
    rows = results.drop_duplicates("config_hash")
    for _, row in rows.iterrows():
        saved = run_folder.read_config(row["config_hash"])
        assert (row["window_s"], row["delay_s"]) == (
            saved["data"]["window_s"],
            saved["data"]["delay_s"],
        )


def _fold_val_means(results, trial, *, final: bool):
    rows = results[(results["trial"] == trial) & (results["split"] == "val")]
    rows = rows[rows["final"] == final]
    return rows.groupby(["fold", "epoch"])["r"].agg(lambda r: float(fisher_mean(r.to_numpy())))


def _check_the_objective_is_val_r(folder):
    """What Optuna stores and ASHA compares is the mean over folds of val r, never test r:
    recomputed here from the results table, row by row."""
    results = RunFolder(folder).results()
    for study in _studies(folder).values():
        for t in study.trials:
            trial = t.user_attrs["trial_id"]
            curve = _fold_val_means(results, trial, final=False)
            best: dict[int, float] = {}
            for epoch in sorted({e for _, e in curve.index}):
                for (fold, e), value in curve.items():
                    if e == epoch and value > best.get(fold, -np.inf) + 1e-4:
                        best[fold] = value
                expected = float(fisher_mean(np.array(list(best.values()))))
                assert t.intermediate_values[epoch] == pytest.approx(expected, abs=1e-9)
            if t.user_attrs.get("finished"):
                final = _fold_val_means(results, trial, final=True)
                test = results[(results["trial"] == trial) & (results["split"] == "test")]
                test_mean = test.groupby("fold")["r"].agg(
                    lambda r: float(fisher_mean(r.to_numpy()))
                )
                assert t.value == pytest.approx(float(fisher_mean(final.to_numpy())), abs=1e-9)
                assert t.user_attrs["test_r"] == pytest.approx(
                    float(fisher_mean(test_mean.to_numpy())), abs=1e-9
                )
                assert t.value != pytest.approx(t.user_attrs["test_r"], abs=1e-9)


def test_asha_stops_a_poor_trial(ray_cluster, planted_model, write_study, tmp_path, capsys):
    """With one trial at a time, a noise-predicting trial that reaches the first rung after a
    learning one is stopped there: fewer epochs, no test score, no model files."""
    path = write_study(
        "asha",
        models=["planted"],
        budget={"num_samples": 4},
        max_concurrent_trials=1,
        search={"data.window_s": 10.0, "train.steps_per_epoch": 3, "train.patience": 0},
        scheduler={"type": "asha", "max_epochs": 3, "grace_period": 1, "reduction_factor": 2},
        # each trial's own footprint: the tiny store's val blocks under a common 16 s one hold
        # too few volumes for the planted signal to lead at the first rung
        targets={"common_footprint": False},
        seed=6,  # signal True (trial 0: the defaults), then samples False, True, True
    )
    assert main(["sweep", str(path)]) == 0
    study = next(iter(_studies(tmp_path / "sweep-asha").values()))
    trials = sorted(study.trials, key=lambda t: t.number)
    first = trials[0]
    assert first.params["model.signal"] is True, "the first trial predicts noise: another seed"
    assert first.user_attrs["finished"] and first.user_attrs["epochs_trained"] == 3
    noise = trials[1]
    assert noise.params["model.signal"] is False, "the second trial learns: another seed"
    stopped = [t for t in trials if not t.user_attrs.get("finished")]
    assert noise in stopped, "ASHA did not stop the noise trial"
    folder = RunFolder(tmp_path / "sweep-asha")
    for t in stopped:
        assert t.state == optuna.trial.TrialState.COMPLETE  # ASHA-stopped trials are COMPLETE
        assert t.user_attrs["epochs_trained"] < 3 and "test_r" not in t.user_attrs
        assert folder.model_files(t.user_attrs["trial_id"]) == []
    assert "(stopped early)" in capsys.readouterr().err


def test_a_configuration_failure_is_recorded_once_and_fails_the_sweep(
    ray_cluster, write_study, tmp_path, capsys
):
    """Windows too long for the recordings' blocks: every trial fails its configuration
    check — recorded with the reason, never retried, and the sweep exits non-zero. (Without
    the common footprint, which the plan checks before anything runs, only a trial finds it.)"""
    path = write_study(
        "toolong",
        search={"data.window_s": [100.0], "train.steps_per_epoch": 3},
        targets={"common_footprint": False},
        failure={"max_failures": 2},
    )
    assert main(["sweep", str(path)]) == 1
    captured = capsys.readouterr()
    assert "all 2 trial(s) failed" in captured.err
    assert "retrying" not in captured.err and "worker or node died" not in captured.err
    study = next(iter(_studies(tmp_path / "sweep-toolong").values()))
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL] * 2
    for t in study.trials:
        assert t.user_attrs["failure_kind"] == "config"
        assert "no val samples" in t.user_attrs["failure_reason"]
    assert not list((tmp_path / "sweep-toolong" / "ray").glob("*/trial_*/error.txt"))


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
    assert len(failures) == len(failed)
    # a deterministic failure is not retried: Tune saw no error (none would need a retry)
    assert not list((tmp_path / "sweep-nan" / "ray").glob("*/trial_*/error.txt"))
    for t in failed:
        assert t.user_attrs["failure_kind"] == "training"


def test_an_undefined_val_r_fails_the_trial_and_never_ranks(
    ray_cluster, test_plugins, write_study, tmp_path, capsys
):
    """A model that predicts a constant on val: its r is undefined. It is stored as NaN (not
    0.000), and the trial fails with that reason instead of ranking with a made-up score."""
    path = write_study(
        "flat",
        models=["flat"],
        budget={"num_samples": 1},
        scheduler={"type": "fifo", "max_epochs": 1},
    )
    assert main(["sweep", str(path)]) == 1  # its only trial failed
    (trial,) = next(iter(_studies(tmp_path / "sweep-flat").values())).trials
    assert trial.state == optuna.trial.TrialState.FAIL and trial.value is None
    assert trial.user_attrs["failure_reason"].startswith("undefined val r on a fold")
    assert best_trials(load_sweep(tmp_path / "sweep-flat")).empty
    rows = read_results(tmp_path / "sweep-flat" / "table")
    assert len(rows) and rows["r"].isna().all()  # NaN, never 0.000


def test_a_bug_fails_its_trial_once_with_the_traceback_not_as_a_dead_worker(
    ray_cluster, test_plugins, write_study, tmp_path, capsys
):
    """A plain Python error in a fold (a bug in a model, a plugin or eeg2bold) would raise the
    same on every retry: the trial fails at once, kind "error", with the traceback kept in
    its failure record — never told as a worker or node that died."""
    path = write_study(
        "buggy",
        models=["buggy"],
        budget={"num_samples": 1},
        scheduler={"type": "fifo", "max_epochs": 1},
        failure={"max_failures": 2},
    )
    assert main(["sweep", str(path)]) == 1
    err = capsys.readouterr().err
    assert "worker or node died" not in err and "retrying" not in err
    (trial,) = next(iter(_studies(tmp_path / "sweep-buggy").values())).trials
    assert trial.state == optuna.trial.TrialState.FAIL
    assert trial.user_attrs["failure_kind"] == "error"
    assert trial.user_attrs["failure_reason"] == "KeyError: 'a bug in the buggy model'"
    (record,) = (tmp_path / "sweep-buggy" / "failures").glob("*.json")
    assert (
        'raise KeyError("a bug in the buggy model")' in json.loads(record.read_text())["traceback"]
    )
    assert not list((tmp_path / "sweep-buggy" / "ray").glob("*/trial_*/error.txt"))


def test_train_says_an_undefined_r_in_one_line_and_writes_null(
    test_plugins, tiny_store, tmp_path, capsys
):
    summary = tmp_path / "flat.json"
    args = ["train", str(tiny_store), "--model", "flat", "--protocol", "within"]
    args += ["--set", "epochs=1", "--set", "steps_per_epoch=3", "--set", "window_s=10"]
    assert main([*args, "--out", str(tmp_path / "out"), "--json", str(summary)]) == 0
    err = capsys.readouterr().err
    warning = [line for line in err.splitlines() if line.startswith("eeg2bold: warning:")]
    assert warning and all("r is undefined on" in line for line in warning), err
    assert "UndefinedScoreWarning" not in err  # our one line, not Python's two
    loaded = json.loads(summary.read_text(), parse_constant=lambda c: pytest.fail(c))
    assert loaded["val_r_mean"] is None and loaded["test_r_mean"] is None


@pytest.mark.slow
def test_time_limit_ends_the_search_early_and_leaves_nothing_running(
    ray_cluster, write_study, tmp_path, capsys
):
    # ridge: trials of about a second once the fold actors are up (their start, a few
    # seconds on a loaded machine, is inside the limit too), so the clock ends it long before
    # the budget, and at least one trial finishes first
    path = write_study(
        "timed",
        models=["ridge"],
        budget={"num_samples": 400, "time_limit_s": 30},
        search={"data.window_s": 10.0},
        scheduler={"type": "fifo", "max_epochs": 1},
        max_concurrent_trials=1,
    )
    assert main(["sweep", str(path)]) == 0
    study = next(iter(_studies(tmp_path / "sweep-timed").values()))
    states = [t.state for t in study.trials]
    assert 1 <= len(states) < 400  # the clock, not the budget, ended it
    assert optuna.trial.TrialState.RUNNING not in states
    assert optuna.trial.TrialState.COMPLETE in states


def test_spaces_command_lists_every_searchable_parameter(capsys):
    assert main(["spaces", "beira", "ridge"]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0] == "beira" and "\nridge\n" in text
    for name in ("data.window_s", "data.delay_s", "train.lr", "loss.r", "model.n_branches"):
        assert f"    {name} " in text
    (lr,) = [line for line in text.splitlines() if "train.lr " in line]
    assert lr.split()[-2:] == ["default", "0.001"]
    assert main(["spaces", "ridge", "--json"]) == 0
    (params,) = json.loads(capsys.readouterr().out).values()
    by_name = {p["name"]: p for p in params}
    assert by_name["data.window_s"]["kind"] == "categorical"
    assert by_name["data.window_s"]["choices"] == [10.0, 15.0, 20.0]
    assert by_name["data.window_s"]["default"] == 10.0  # where every search starts
    assert by_name["model.lag_s"]["default"] == 20.0
    assert "train.lr" not in by_name  # ridge is closed-form: no optimiser to search
    assert main(["spaces", "biera"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean 'beira'" in err


def test_launch_renders_a_job_or_refuses_in_one_line(write_study, tmp_path, capsys, monkeypatch):
    path = write_study("cluster")  # tmp paths and SQLite: not for a multi-node cluster
    args = ["launch", "slurm", str(path), "--nodes", "2", "--cpus-per-node", "4"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "node-local" in err or "storage.optuna" in err
    # a shared file system is assumed where tmp lies (this machine stands for every node)
    monkeypatch.setattr("eeg2bold.launch.cluster.NODE_LOCAL", ())
    results = tmp_path / "shared" / "sweeps" / "x"
    shared = write_study(
        "cluster2",
        dataset="data.zarr",  # relative, as typed: the staged copy holds it absolute
        storage={"results": str(results), "optuna": f"journal://{tmp_path}/optuna.log"},
    )
    out = tmp_path / "job.sh"
    monkeypatch.chdir(tmp_path)
    assert (
        main(
            ["launch", "slurm", "cluster2.yaml", "--nodes", "2", "--cpus-per-node", "4"]
            + ["-o", str(out)]
        )
        == 0
    )
    assert f"staged the study config for the job: {results}/launch/cluster2.yaml" in (
        capsys.readouterr().err
    )
    script = out.read_text()
    assert script.startswith("#!") and "#SBATCH --nodes=2" in script
    staged = results / "launch" / "cluster2.yaml"
    assert f"eeg2bold sweep {staged} --address auto" in script
    shared.unlink()  # the job never reads the file it was rendered from
    copy = load_study_config(staged)
    assert copy.dataset == str(tmp_path / "data.zarr")
    assert (
        copy.model_dump()
        == load_study_config(
            write_study(
                "cluster2",
                dataset=str(tmp_path / "data.zarr"),
                storage={"results": str(results), "optuna": f"journal://{tmp_path}/optuna.log"},
            )
        ).model_dump()
    )


def test_launch_needs_a_shared_place_for_the_study_config(write_study, capsys):
    path = write_study(
        "cluster3",
        dataset="/shared/data.zarr",
        storage={"results": "s3://bucket/sweeps/x", "optuna": "journal:///shared/optuna.log"},
    )
    assert main(["launch", "slurm", str(path), "--nodes", "2", "--cpus-per-node", "4"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--stage-dir" in err and "s3://bucket/sweeps/x" in err
    stage = ["--stage-dir", "/tmp/x"]
    assert main(["launch", "slurm", str(path), "--nodes", "2", "--cpus-per-node", "4", *stage]) == 1
    assert "node-local" in capsys.readouterr().err


def test_a_chunk_that_cannot_be_decoded_fails_its_trial_as_data(
    ray_cluster, write_study, tiny_store, tmp_path, capsys
):
    """A damaged chunk in a sweep: the trial fails with the kind ``data`` and the run named
    (issue 26: it was ``error``), the sweep exits non-zero, and nothing says internal error."""
    import shutil

    store = tmp_path / "damaged.zarr"
    shutil.copytree(tiny_store, store)
    chunk = store / "sub-02" / "run-1" / "eeg" / "c" / "0" / "3"
    noise = np.random.default_rng(0).integers(0, 256, chunk.stat().st_size, dtype=np.uint8)
    chunk.write_bytes(noise.tobytes())
    path = write_study(
        "damaged",
        dataset=str(store),
        budget={"num_samples": 1},
        scheduler={"type": "fifo", "max_epochs": 1},
        failure={"max_failures": 2},
    )
    assert main(["sweep", str(path)]) == 1
    err = capsys.readouterr().err
    assert "internal error" not in err and "retrying" not in err
    (trial,) = next(iter(_studies(tmp_path / "sweep-damaged").values())).trials
    assert trial.state == optuna.trial.TrialState.FAIL
    assert trial.user_attrs["failure_kind"] == "data"
    reason = trial.user_attrs["failure_reason"]
    assert "sub-02/run-1" in reason and "cannot be decoded" in reason, reason

"""`eeg2bold train` and `eeg2bold models` from the command line."""

from __future__ import annotations

import json

import pytest

from eeg2bold.cli import main
from eeg2bold.study.results import read_results
from eeg2bold.training.checkpoint import load_model_file


@pytest.fixture(scope="module")
def trained(sim_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "run"
    summary = out.parent / "scores.json"
    code = main(
        ["train", str(sim_store), "--model", "ridge", "--protocol", "loso", "-q"]
        + ["--set", "window_s=12", "--set", "delay_s=2", "--out", str(out), "--json", str(summary)]
    )
    assert code == 0
    return out, json.loads(summary.read_text())


def test_train_writes_scores_results_and_model_files(trained, capsys):
    out, summary = trained
    assert len(summary["folds"]) == 3
    assert set(summary["test_r_per_output"]) == set(summary["outputs"])
    df = read_results(out / "results")
    final = df[df["final"]]
    assert set(final["split"]) == {"val", "test"}
    assert len(final) == 3 * 2 * len(summary["outputs"])  # folds × splits × outputs
    assert set(df["subject"]) == {"sub-01", "sub-02", "sub-03"}
    config = json.loads((out / "config.json").read_text())
    assert config["data"]["window_s"] == 12.0
    card = load_model_file(summary["folds"][0]["model_file"])
    assert card["model"] == "ridge"
    assert card["channels"] and card["outputs"] == summary["outputs"]


def test_resume_skips_finished_folds_without_duplicating_rows(trained, sim_store, capsys):
    out, summary = trained
    before = len(read_results(out / "results"))
    code = main(
        ["train", str(sim_store), "--model", "ridge", "--protocol", "loso", "--resume", "-q"]
        + ["--set", "window_s=12", "--set", "delay_s=2", "--out", str(out)]
    )
    assert code == 0
    assert len(read_results(out / "results")) == before
    text = capsys.readouterr().out
    assert f"{summary['test_r_mean']:.3f}" in text


def test_train_errors_are_one_line(sim_store, tmp_path, capsys):
    assert main(["train", str(sim_store), "--model", "biera", "--out", str(tmp_path)]) == 1
    assert "unknown model 'biera' (did you mean 'beira'?)" in capsys.readouterr().err
    assert main(["train", str(sim_store), "--model", "ridge", "--set", "lr=fast"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lr" in err
    assert main(["train", str(sim_store), "--model", "ridge", "--set", "windw_s=3"]) == 1
    assert "did you mean 'window_s'" in capsys.readouterr().err


def test_models_lists_every_model_with_hyperparameters(capsys):
    assert main(["models"]) == 0
    text = capsys.readouterr().out
    for name in ("ridge", "beira", "twin", "linker", "neurobolt"):
        assert f"\n{name}" in "\n" + text
    assert main(["models", "--json"]) == 0
    models = json.loads(capsys.readouterr().out)
    ridge = next(m for m in models if m["name"] == "ridge")
    assert ridge["closed_form"] is True
    assert ridge["hyperparameters"]

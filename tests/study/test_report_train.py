"""``eeg2bold report`` on an ``eeg2bold train`` output folder: one configuration, no search."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.linalg
from report_tables import Tables, check_rows, chromium_check, table_with

from eeg2bold.cli import main
from eeg2bold.geometry import COMMON_MODE, with_common_mode
from eeg2bold.models.interpret import interpret
from eeg2bold.run_folder import RunFolder
from eeg2bold.simulate import SimulationConfig
from eeg2bold.simulate.write import simulate_to_store
from eeg2bold.storage import open_dataset
from eeg2bold.training.metrics import fisher_mean
from eeg2bold.training.trained import TrainedFold


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("report-train")
    store = root / "sim.zarr"
    config = SimulationConfig(subjects=3, minutes=5, channels=8, sfreq=100, rois=3, seed=9)
    simulate_to_store(store, config, progress=False)
    out = root / "run"
    # aligned, fewer branches than channels: the interpretation must see the input the model
    # saw (with as many branches as channels, Haufe patterns do not depend on the covariance)
    sets = ["window_s=10", "epochs=2", "steps_per_epoch=3", "align=euclidean", "n_branches=4"]
    # relative paths, as a user types them: the run folder must record them absolute
    args = ["train", "sim.zarr", "--model", "beira", "--protocol", "loso", "--out", "run"]
    here = os.getcwd()
    os.chdir(root)
    try:
        assert main([*args, *(a for s in sets for a in ("--set", s)), "-q"]) == 0
    finally:
        os.chdir(here)
    return out


@pytest.fixture(scope="module")
def train_report(trained, tmp_path_factory):
    """The report of the train folder, made from another working folder than train's."""
    where = tmp_path_factory.mktemp("report-elsewhere")
    html_path, json_path = where / "r.html", where / "r.json"
    here = os.getcwd()
    os.chdir(where)
    try:
        code = main(
            ["report", str(trained), "-o", str(html_path), "--json", str(json_path)]
            + ["--n-boot", "200", "--n-surrogates", "40", "-q"]
        )
    finally:
        os.chdir(here)
    assert code == 0
    return html_path, json.loads(json_path.read_text())


def test_report_of_a_train_folder(trained, train_report):
    html_path, data = train_report
    assert data["sweep"]["arms"] == [] and "no search" in html_path.read_text()
    assert data["dataset"]["n_subjects"] == 3  # found through the model files' cards
    results = RunFolder(trained).results()
    test = results[results["final"] & (results["split"] == "test")]
    for row in data["statistics"]["rois"]:
        r = test.loc[test["roi"] == row["roi"], "r"].to_numpy()
        assert row["n_subjects"] == 3
        assert row["r"] == pytest.approx(float(fisher_mean(r)))
    assert data["traces"]["protocol"] == "loso" and len(data["traces"]["rois"]) == 3
    assert data["interpretation"]["model"] == "beira"
    assert len(data["interpretation"]["peak_hz"]) > 0 and np.isfinite(data["summary"][0]["mean_r"])


def test_the_interpretation_of_an_aligned_model_uses_the_aligned_covariance(trained, train_report):
    """Haufe patterns need the covariance of the model's input. For an aligned model that is
    the aligned EEG, whose covariance is the identity on the EEG's own directions (computed
    here with scipy), scaled by the normaliser: not the raw EEG's covariance."""
    _, data = train_report
    entry = data["interpretation"]
    fold = TrainedFold.load(str(trained / entry["file"]))
    assert fold.sample.align == "euclidean"
    dataset = open_dataset(str(trained.parent / "sim.zarr"))
    key = next(k for k in dataset.runs() if k.subject == entry["subject"])
    have = list(dataset.info.eeg.channels)
    eeg = dataset.read_run(key).eeg.astype(np.float64)[[have.index(c) for c in entry["channels"]]]
    values, vectors = scipy.linalg.eigh(np.cov(eeg))
    kept = values > 1e-10 * values.max()
    aligned = (vectors[:, kept] @ vectors[:, kept].T) / fold.normaliser.eeg_scale
    covariance = aligned / fold.normaliser.eeg_scale[:, None]
    expected = interpret(fold.module, covariance=covariance, channels=entry["channels"])
    np.testing.assert_allclose(np.array(entry["patterns"]), expected.patterns, atol=2e-3)
    raw = np.cov(eeg) / np.outer(fold.normaliser.eeg_scale, fold.normaliser.eeg_scale)
    unaligned = interpret(fold.module, covariance=raw, channels=entry["channels"])
    assert np.abs(unaligned.patterns - expected.patterns).max() > 0.1  # the test can tell


def test_a_leave_one_run_out_report_keeps_subjects_the_unit_and_tells_the_alignment(
    tmp_path, capsys
):
    """Two runs per subject, one fold per held-out run, subjects aligned: the statistics
    count subjects (each the Fisher mean of its folds), the table says so, and the report
    tells how subjects were aligned."""
    store = tmp_path / "runs.zarr"
    config = SimulationConfig(subjects=3, runs=2, minutes=3, channels=8, sfreq=100, rois=2, seed=4)
    simulate_to_store(store, config, progress=False)
    args = ["train", str(store), "--model", "ridge", "--protocol", "leave_one_run_out"]
    args += ["--set", "window_s=10", "--set", "align=euclidean", "--out", str(tmp_path / "run")]
    assert main([*args, "-q"]) == 0, capsys.readouterr().err
    json_path = tmp_path / "r.json"
    code = main(
        ["report", str(tmp_path / "run"), "-o", str(tmp_path / "r.html"), "--json", str(json_path)]
        + ["--n-boot", "200", "--n-surrogates", "40", "-q"]
    )
    assert code == 0, capsys.readouterr().err
    data = json.loads(json_path.read_text())
    results = RunFolder(tmp_path / "run").results()
    test = results[results["final"] & (results["split"] == "test")]
    assert test["fold"].nunique() == 6
    for row in data["statistics"]["rois"]:
        assert row["protocol"] == "leave_one_run_out" and row["n_subjects"] == 3
        per_subject = (
            test[test["roi"] == row["roi"]]
            .groupby("subject")["r"]
            .agg(lambda r: float(fisher_mean(r.to_numpy())))
        )
        assert row["r"] == pytest.approx(float(fisher_mean(per_subject.to_numpy())))
    (note,) = [n for n in data["notes"] if n.startswith("Euclidean alignment")]
    assert "leave_one_run_out/ridge" in note and "unlabelled EEG" in note
    assert "Euclidean alignment" in (tmp_path / "r.html").read_text()


def test_four_hundred_parcels_train_in_one_model_and_reach_the_brain(tmp_path, capsys):
    """Whole-brain parcels end to end: simulate 400, train ridge and beira on all of them at
    once, and report them on the brain."""
    store = tmp_path / "parcels.zarr"
    assert (
        main(
            ["simulate", str(store), "--subjects", "2", "--minutes", "3", "--channels", "8"]
            + ["--sfreq", "100", "--rois", "400", "-q"]
        )
        == 0
    )
    info = open_dataset(store).info
    assert len(info.bold.rois) == 400 and len(info.bold.roi_mni) == 400
    for model, sets in (("ridge", []), ("beira", ["epochs=1", "steps_per_epoch=2"])):
        args = ["train", str(store), "--model", model, "--protocol", "within"]
        args += [a for kv in ["window_s=10", *sets] for a in ("--set", kv)]
        assert main([*args, "--out", str(tmp_path / model), "-q"]) == 0, capsys.readouterr().err
        results = RunFolder(tmp_path / model).results()
        assert results.loc[results["final"], "roi"].nunique() == 400  # one model, 400 outputs
    json_path = tmp_path / "r.json"
    code = main(
        ["report", str(tmp_path / "ridge"), "-o", str(tmp_path / "r.html")]
        + ["--json", str(json_path), "--n-boot", "200", "--n-surrogates", "40", "-q"]
    )
    assert code == 0, capsys.readouterr().err
    data = json.loads(json_path.read_text())
    (figure,) = data["brain"]["figures"]
    assert figure["protocol"] == "within" and figure["model"] == "ridge"
    assert len(data["statistics"]["rois"]) == 400


def test_neither_sweep_nor_train_folder(tmp_path, capsys):
    (tmp_path / "table").mkdir()
    assert main(["report", str(tmp_path), "-o", str(tmp_path / "r.html")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a run folder" in err[0] and str(tmp_path) in err[0]


@pytest.fixture(scope="module")
def curve(tmp_path_factory):
    """``train --calibration-minutes 0,1,2`` (ridge, common-mode targets) on 4 subjects."""
    root = tmp_path_factory.mktemp("report-curve")
    store = root / "sim.zarr"
    config = SimulationConfig(subjects=4, minutes=6, channels=8, sfreq=100, rois=3, seed=4)
    simulate_to_store(store, config, progress=False)
    out = root / "run"
    args = ["train", str(store), "--model", "ridge", "--calibration-minutes", "0,1,2"]
    sets = ["window_s=10", "common_mode=true"]
    assert main([*args, "--out", str(out), *(a for s in sets for a in ("--set", s)), "-q"]) == 0
    html_path, json_path = root / "r.html", root / "r.json"
    code = main(
        ["report", str(out), "-o", str(html_path), "--json", str(json_path)]
        + ["--n-boot", "200", "--n-surrogates", "40", "-q"]
    )
    assert code == 0
    return {"run": out, "store": store, "html": html_path.read_text()}, json.loads(
        json_path.read_text()
    )


def test_report_shows_the_calibration_curve_and_its_numbers(curve):
    run, data = curve
    points = data["calibration"]["points"]
    assert [(p["protocol"], p["minutes"]) for p in points] == [
        ("loso_calibrated@0min", 0.0),
        ("loso_calibrated@1min", 1.0),
        ("loso_calibrated@2min", 2.0),
    ]
    assert "calibration" in data["figures"] and 'alt="calibration curve"' in run["html"]
    # only curve arms: the overview points to the curve instead of claiming no scores
    assert data["overview"] == {"skipped": "only calibration-curve arms: see the calibration curve"}
    # each point: Fisher mean over subjects of each subject's Fisher mean over outputs
    results = RunFolder(run["run"]).results()
    test = results[results["final"] & (results["split"] == "test")]
    for point in points:
        rows = test[test["protocol"] == point["protocol"]]
        per_subject = rows.groupby("subject")["r"].agg(lambda r: fisher_mean(r.to_numpy()))
        assert point["n_subjects"] == 4 == len(per_subject)
        assert point["r"] == pytest.approx(float(fisher_mean(per_subject.to_numpy())))
        assert point["ci_low"] <= point["r"] <= point["ci_high"]
    parser = Tables()
    parser.feed(run["html"])
    table = table_with(parser.tables, ["protocol", "model", "minutes", "subjects", "mean r"])
    check_rows(
        table,
        points,
        ["protocol", "model", "minutes", "n_subjects", "r", "ci_low", "ci_high"]
        + ["chance_low", "chance_high"],
    )


def test_the_oracle_follows_the_targets_the_models_predicted(curve):
    """Common-mode targets: the oracle is that of the residuals and of the common mode."""
    run, data = curve
    oracle = data["dataset"]["oracle_r"]
    assert set(oracle) == {*data["dataset"]["bold"]["rois"], COMMON_MODE}
    dataset = open_dataset(run["store"])
    for name, value in oracle.items():
        per_run = []
        for key in dataset.runs():
            clean = with_common_mode(dataset.read_truth(key).arrays["bold_clean"])
            bold = with_common_mode(np.asarray(dataset.read_run(key).bold))
            row = [*data["dataset"]["bold"]["rois"], COMMON_MODE].index(name)
            per_run.append(np.corrcoef(clean[row], bold[row])[0, 1])
        assert value == pytest.approx(float(fisher_mean(np.array(per_run))), abs=1e-6)


def test_the_curve_report_opens_in_headless_chromium(curve, tmp_path):
    run, data = curve
    checked = chromium_check(run["html"], tmp_path)
    assert checked["images"] == len(data["figures"]) >= 2  # overview and curve at least
    assert checked["broken"] == 0


GOLDEN = Path(__file__).parent / "golden" / "report_ridge_curve.json"
# what may differ between machines or runs and is not a number of the report's science
_NOT_GOLDEN = {"reproducibility", "build_seconds", "created"}


def _numbers(value: Any, path: str = "") -> dict[str, Any]:
    """Every number (and bool and null) of the report's JSON by its path; strings left out
    (paths, trial ids), as are the keys of ``_NOT_GOLDEN``."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key not in _NOT_GOLDEN:
                out |= _numbers(item, f"{path}/{key}")
        return out
    if isinstance(value, list):
        out = {}
        for i, item in enumerate(value):
            out |= _numbers(item, f"{path}/{i}")
        return out
    return {} if isinstance(value, str) else {path: value}


def test_the_reports_numbers_stay_those_of_the_golden_file(curve):
    """Every number of the report of a deterministic ridge calibration curve, against a golden
    file, so a refactoring that changes what the report says fails here. Ridge only (torch's
    float kernels move deep models' numbers between CPUs); floats to 1e-5, since ridge's
    features are float32. After an intended change: ``EEG2BOLD_UPDATE_GOLDEN=1 pytest
    tests/study/test_report_train.py -k golden``, and say why in the commit."""
    _, data = curve
    numbers = _numbers(data)
    if os.environ.get("EEG2BOLD_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(numbers, indent=1, sort_keys=True) + "\n")
    golden = json.loads(GOLDEN.read_text())
    assert len(golden) > 200  # the statistics, summary, curve, traces and dataset sections
    assert sorted(numbers) == sorted(golden)
    for path, expected in golden.items():
        got = numbers[path]
        if isinstance(expected, float) and isinstance(got, float):
            assert got == pytest.approx(expected, rel=1e-5, abs=1e-5, nan_ok=True), path
        else:
            assert got == expected, path


@pytest.mark.parametrize("command", ["trials", "best"])
def test_trials_and_best_of_a_train_run_say_why_there_are_none(trained, command, capsys):
    """A train run is one configuration without a search: said in one line, not a bare
    "(no trials)" that reads like a failed sweep."""
    assert main([command, str(trained)]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "(no trials)"
    assert err.count("\n") == 1 and "is an `eeg2bold train` run" in err
    assert f"eeg2bold report {trained}" in err

"""``eeg2bold report`` on an ``eeg2bold train`` output folder: one configuration, no search."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from eeg2bold.cli import main
from eeg2bold.run_folder import RunFolder
from eeg2bold.simulate import SimulationConfig
from eeg2bold.simulate.write import simulate_to_store
from eeg2bold.training.metrics import fisher_mean


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("report-train")
    store = root / "sim.zarr"
    config = SimulationConfig(subjects=3, minutes=5, channels=8, sfreq=100, rois=3, seed=9)
    simulate_to_store(store, config, progress=False)
    out = root / "run"
    sets = ["window_s=10", "epochs=2", "steps_per_epoch=3"]
    # relative paths, as a user types them: the run folder must record them absolute
    args = ["train", "sim.zarr", "--model", "beira", "--protocol", "loso", "--out", "run"]
    here = os.getcwd()
    os.chdir(root)
    try:
        assert main([*args, *(a for s in sets for a in ("--set", s)), "-q"]) == 0
    finally:
        os.chdir(here)
    return out


def test_report_of_a_train_folder(trained, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # another working folder than the one train ran in
    html_path, json_path = tmp_path / "r.html", tmp_path / "r.json"
    code = main(
        ["report", str(trained), "-o", str(html_path), "--json", str(json_path)]
        + ["--n-boot", "200", "--n-surrogates", "40", "-q"]
    )
    assert code == 0, capsys.readouterr().err
    data = json.loads(json_path.read_text())
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


def test_neither_sweep_nor_train_folder(tmp_path, capsys):
    (tmp_path / "table").mkdir()
    assert main(["report", str(tmp_path), "-o", str(tmp_path / "r.html")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a run folder" in err[0] and str(tmp_path) in err[0]

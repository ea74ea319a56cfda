"""A damaged store (a missing chunk reads as NaN) is named — run, array, and the command that
checks it — instead of surfacing as a linear-algebra error or a NaN loss blamed on the lr."""

from __future__ import annotations

import shutil

import pytest

from eeg2bold.cli import main


@pytest.fixture
def damaged_store(sim_store, tmp_path):
    store = tmp_path / "damaged.zarr"
    shutil.copytree(sim_store, store)
    (store / "sub-02" / "run-1" / "eeg" / "c" / "0" / "3").unlink()  # one 4-s chunk gone
    return store


@pytest.mark.parametrize("model", ["ridge", "tiny"])
def test_training_on_a_missing_chunk_names_the_run(
    damaged_store, tmp_path, capsys, model, tiny_model
):
    code = main(
        ["train", str(damaged_store), "--model", model, "--protocol", "loso", "-q"]
        + ["--set", "window_s=8", "--set", "epochs=1", "--out", str(tmp_path / "run")]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "run sub-02/run-1: eeg holds" in err and "non-finite" in err
    assert f"eeg2bold inspect {damaged_store} --verify" in err
    assert "LinAlgError" not in err and "lr" not in err

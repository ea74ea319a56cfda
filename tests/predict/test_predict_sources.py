"""Model sources: a model file, a train folder, a sweep's best finished trial (fold models
averaged), and the one-line errors for sources that cannot be applied."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eeg2bold.errors import Eeg2BoldError
from eeg2bold.predict import PredictError, PredictOptions, load_models, predict


def test_sweep_uses_the_best_finished_trial_and_averages_its_folds(sim, sweep):
    notes = []
    prediction = predict(
        str(sweep.root), sim.vhdr, PredictOptions(protocol="within"), echo=notes.append
    )
    selection = prediction.info["selection"]
    assert selection["trial"] == "t1" and selection["number"] == 1
    assert selection["val_r"] == pytest.approx(0.5)
    assert [m["fold_subject"] for m in prediction.info["members"]] == ["sub-01", "sub-02"]
    assert any("mean of 2 fold model(s)" in n for n in notes)
    singles = [predict(str(path), sim.vhdr) for path in sweep.best]
    assert prediction.members.shape[0] == 2
    for member, single in zip(prediction.members, singles, strict=True):
        assert np.allclose(member, single.values, rtol=1e-5, atol=1e-5)
    mean = np.mean([s.values for s in singles], axis=0)
    assert np.allclose(prediction.values, mean, rtol=1e-5, atol=1e-5)
    # --model names the arm's model; --fold keeps one fold model
    one = predict(
        str(sweep.root),
        sim.vhdr,
        PredictOptions(protocol="within", model="ridge"),
        folds=["sub-02"],
    )
    assert np.allclose(one.values, singles[1].values, rtol=1e-5, atol=1e-5)


def test_sweep_errors(sim, sweep):
    with pytest.raises(PredictError, match=r"protocols \['loso', 'within'\]: choose one"):
        load_models(str(sweep.root))
    with pytest.raises(PredictError, match="no finished trial for protocol 'loso'") as err:
        load_models(str(sweep.root), protocol="loso")
    assert str(sweep.root) in str(err.value)
    with pytest.raises(PredictError, match=r"no protocol 'loos'.*did you mean 'loso'"):
        load_models(str(sweep.root), protocol="loos")
    with pytest.raises(PredictError, match="no model 'beira'"):
        load_models(str(sweep.root), protocol="within", model="beira")
    with pytest.raises(PredictError, match=r"no fold model for \['sub-09'\]"):
        load_models(str(sweep.root), protocol="within", folds=["sub-09"])


def test_train_folder(sim):
    models = load_models(str(sim.root / "s2o"))
    assert [m.fold_subject for m in models.members] == ["sub-01", "sub-02"]
    with pytest.raises(PredictError, match="no model of protocol 'loso'"):
        load_models(str(sim.root / "s2o"), protocol="loso")


def test_files_that_are_not_model_files(sim, tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    resume = next((sim.root / "s2o" / "checkpoints").glob("*.pt"))
    for path, message in (
        (text, "not an eeg2bold model file"),
        (resume, "not an eeg2bold model file .*format None"),
        (tmp_path / "missing.pt", "no such model file or folder"),
        (tmp_path, "neither a model file, a sweep folder"),
    ):
        with pytest.raises(PredictError, match=message) as err:
            predict(str(path), sim.vhdr)
        assert str(path) in str(err.value) and "\n" not in str(err.value)
    pickled = tmp_path / "pickled.pt"
    torch.save({"format": "eeg2bold.model/1", "evil": object()}, pickled)
    with pytest.raises(PredictError, match="not an eeg2bold model file"):
        load_models(str(pickled))
    assert issubclass(PredictError, Eeg2BoldError)

"""Predictions from a model file: right rows and columns, equal to the training pipeline's own
predictions and to a hand-rolled application of the model, and correlated with the truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from eeg2bold.models import DataSpec, build_model
from eeg2bold.predict import (
    PredictOptions,
    apply_models,
    load_models,
    predict,
    prediction_times,
    read_tsv,
    write_outputs,
)
from eeg2bold.training.inputs import Normaliser
from eeg2bold.training.metrics import pearson_r


def _at(times, prediction, query):
    """Prediction rows at ``query`` times (which must be among ``times``)."""
    index = np.searchsorted(times, query)
    assert np.allclose(times[index], query)
    return prediction[:, index]


def test_tsv_rows_columns_and_sidecar(sim, tmp_path):
    notes = []
    prediction = predict(str(sim.model), sim.vhdr, echo=notes.append)
    written = write_outputs(prediction, tmp_path / "out" / "bold.tsv")
    assert set(written) == {"tsv", "json", "png"}
    times, columns = read_tsv(written["tsv"])
    rois = list(sim.dataset.info.bold.rois)
    assert list(columns) == rois
    header = written["tsv"].read_text().splitlines()[0].split("\t")
    assert header == ["time", *rois]
    # the model file records the training TR: one row per TR on the recording's clock, from
    # the first full window (window 12 s + delay 2 s) to the end of the EEG + delay
    models = load_models(str(sim.model))
    step = sim.dataset.info.bold.tr
    assert models.training_tr == step
    duration = sim.run.eeg.shape[1] / 100.0
    assert np.allclose(np.diff(times), step)
    assert times[0] == pytest.approx(14.0)
    assert times[-1] == pytest.approx(14.0 + step * ((duration + 2.0 - 14.0) // step))
    assert not any("every 1 s" in n for n in notes)  # that note is for files without a TR
    for i, roi in enumerate(rois):
        assert np.allclose(columns[roi], prediction.values[i], rtol=1e-6, atol=1e-6)
    meta = json.loads(written["json"].read_text())
    assert meta["columns"] == ["time", *rois]
    assert meta["delay_s"] == 2.0 and meta["window_s"] == 12.0
    assert meta["members"][0]["fold_subject"] == "sub-01"
    png = written["png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    image = matplotlib.image.imread(written["png"])
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 400


def test_equals_training_predictions_and_a_hand_rolled_application(sim):
    # the training pipeline's own test-block predictions (BOLD units, at the volume times)
    stem = sim.model.stem
    saved = np.load(sim.model.parent.parent / "predictions" / f"{stem}.npz")
    prediction = predict(str(sim.model), sim.vhdr, times=saved["test_times"])
    assert np.allclose(prediction.values, saved["test_pred"], rtol=1e-4, atol=1e-4)

    # by hand: the card's model, normaliser and the window [t - delay - window, t - delay]
    card = torch.load(sim.model, weights_only=True)
    model = build_model(card["model"], DataSpec(**card["spec"]), card["model_params"])
    model.load_state_dict(card["state_dict"])
    model.eval()
    norm = Normaliser.from_state(card["normaliser"])
    eeg = (sim.run.eeg - norm.eeg_mean[:, None]) / norm.eeg_scale[:, None]
    grid = predict(str(sim.model), sim.vhdr)
    for t in (14.0, 100.0, grid.times[-1]):
        end = int(round((t - 2.0) * 100))
        window = torch.as_tensor(eeg[None, :, end - 1200 : end], dtype=torch.float32)
        with torch.no_grad():
            out = model(window)[0, :, 0].numpy() * norm.target_scale + norm.target_mean
        assert np.allclose(_at(grid.times, grid.values, [t])[:, 0], out, rtol=1e-4, atol=1e-4)


def test_an_aligned_model_aligns_a_new_recording_by_its_own_eeg(sim, tmp_path):
    """A LOSO model trained with Euclidean alignment: its held-out subject was aligned by its
    own unlabelled EEG under the test windows; predict does the same from the recording, so
    it reproduces the training pipeline's test predictions — and differs from the same
    weights applied without alignment."""
    from eeg2bold.training.config import build_config
    from eeg2bold.training.run import train_protocol

    config = build_config(
        model="ridge",
        protocol="loso",
        sets={"window_s": "12", "delay_s": "2", "align": "euclidean"},
    )
    result = train_protocol(sim.dataset, config, out_dir=tmp_path / "aligned")
    (fold,) = [f for f in result.folds if f.subject == "sub-01"]
    model = Path(fold.model_file)
    saved = np.load(model.parent.parent / "predictions" / f"{model.stem}.npz")
    prediction = predict(str(model), sim.vhdr, times=saved["test_times"])
    assert prediction.info["alignment"].startswith("euclidean, from this recording's own EEG")
    assert np.allclose(prediction.values, saved["test_pred"], rtol=1e-3, atol=1e-3)
    models = load_models(str(model))
    unaligned = models.members[0].sample.model_copy(update={"align": "none"})
    for m in models.members:
        m.sample = unaligned
    raw = apply_models(models, sim.run.eeg, sfreq=100.0, times=saved["test_times"])
    assert raw.info["alignment"] is None
    assert not np.allclose(raw.values, saved["test_pred"], rtol=1e-2, atol=1e-2)


def test_in_memory_equals_file_and_correlates_with_truth(sim):
    from_file = predict(str(sim.model), sim.vhdr)
    in_memory = apply_models(load_models(str(sim.model)), sim.run.eeg, sfreq=100.0)
    assert np.array_equal(from_file.times, in_memory.times)
    assert np.allclose(from_file.values, in_memory.values, rtol=1e-4, atol=1e-4)
    # ridge trained within this subject: the whole run's BOLD is clearly predicted
    vt = sim.run.volume_times
    inside = (vt >= from_file.times[0]) & (vt <= from_file.times[-1])
    line = np.stack([np.interp(vt[inside], from_file.times, row) for row in from_file.values])
    r = pearson_r(sim.run.bold[:, inside], line)
    assert (r > 0.3).all(), r
    clean = sim.run.truth.arrays["bold_clean"][:, inside]
    assert (pearson_r(clean, line) > 0.3).all()


def test_edf_with_extra_channels_in_another_order(sim):
    notes = []
    prediction = predict(str(sim.model), sim.edf, echo=notes.append)
    reference = predict(str(sim.model), sim.vhdr)
    assert any("dropped 1 channel(s) the model does not use: ECG" in n for n in notes)
    assert prediction.info["channels_dropped"] == ["ECG"]
    # EDF stores 16-bit samples: equal up to quantisation
    assert np.array_equal(prediction.times, reference.times)
    assert (pearson_r(reference.values, prediction.values) > 0.999).all()


def test_seq2seq_with_common_mode(sim):
    stem = sim.s2s_model.stem
    saved = np.load(sim.s2s_model.parent.parent / "predictions" / f"{stem}.npz")
    outputs = [*sim.dataset.info.bold.rois, "common_mode"]
    raw = predict(str(sim.s2s_model), sim.vhdr, times=saved["test_times"], recombine=False)
    assert list(raw.outputs) == outputs
    # the stitched seq2seq outputs equal those the training pipeline scored
    assert np.allclose(raw.values, saved["test_pred"], rtol=1e-4, atol=1e-4)
    full = predict(str(sim.s2s_model), sim.vhdr, times=saved["test_times"])
    assert np.allclose(full.values[:-1], raw.values[:-1] + raw.values[-1])
    assert np.allclose(full.values[-1], raw.values[-1])
    # on a grid: windows every second, each predicting 6 instants 2 s apart, averaged
    grid = predict(str(sim.s2s_model), sim.vhdr, PredictOptions(step_s=0.5), origin_s=0.25)
    assert np.allclose(np.diff(grid.times), 0.5)
    assert grid.times[0] == pytest.approx(12.25)
    assert np.isfinite(grid.values).all()


def test_prediction_times_follow_the_window_rounding(sim):
    models = load_models(str(sim.model))
    times = prediction_times(models, n_samples=2000, sfreq=100.0, step_s=0.7, origin_s=0.1)
    assert times[0] == pytest.approx(14.1) and times[-1] == pytest.approx(21.8)
    ends = np.round((times - 2.0) * 100)
    assert (ends - 1200 >= 0).all() and (ends <= 2000).all()
    with pytest.raises(Exception, match="no full EEG window"):
        apply_models(models, sim.run.eeg[:, :2000], sfreq=100.0, times=[10.0, 15.0])


def test_step_defaults_to_the_training_tr_the_model_file_records(sim, tmp_path):
    card = torch.load(sim.model, weights_only=True)
    tr = sim.dataset.info.bold.tr
    assert json.loads(card["bold"])["tr"] == tr  # written by training
    prediction = predict(str(sim.model), sim.vhdr)
    assert np.allclose(np.diff(prediction.times), tr)
    assert prediction.info["step_s"] == tr
    # an older model file without it: every second, and the run says so
    del card["bold"]
    path = tmp_path / "without-tr.pt"
    torch.save(card, path)
    said: list[str] = []
    prediction = predict(str(path), sim.vhdr, echo=said.append)
    assert np.allclose(np.diff(prediction.times), 1.0)
    assert any("does not record the training TR" in line for line in said)

"""Models trained on ingested data: the recorded preprocessing (resampling, notch, band-pass,
bad channels, reference) is repeated on a new recording, exactly as ingest ran it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from eeg2bold.predict import (
    PredictError,
    PredictOptions,
    apply_models,
    load_models,
    predict,
    read_recording,
)


def test_raw_recording_equals_the_stored_preprocessed_eeg(ingested, write, tmp_path):
    notes = []
    from_raw = predict(str(ingested.model), ingested.vhdr, echo=notes.append)
    assert any(
        "preprocessing as at training: resample 250->100 Hz, band-pass 1..40 Hz, reference "
        "average" in n
        for n in notes
    ), notes
    models = load_models(str(ingested.model))
    stored = apply_models(models, ingested.run.eeg, sfreq=100.0)
    assert np.array_equal(from_raw.times, stored.times)
    assert np.allclose(from_raw.values, stored.values, rtol=1e-5, atol=1e-5)
    steps = [s["step"] for s in from_raw.info["preprocessing"]]
    assert steps[:3] == ["pick", "resample", "bandpass"] and steps[-2:] == ["reference", "units"]
    # the stored EEG written out again at 100 Hz, with preprocessing off: the same numbers
    vhdr = write.brainvision(
        tmp_path,
        "pre",
        ingested.run.eeg.astype(np.float64) * 1e-6,
        names=ingested.dataset.info.eeg.channels,
        sfreq=100.0,
    )
    done = predict(str(ingested.model), vhdr, PredictOptions(preprocess=False), echo=notes.append)
    assert np.allclose(done.values, stored.values, rtol=1e-4, atol=1e-4)
    assert any("training preprocessing not re-applied" in n for n in notes)
    # preprocessing repeated on it would filter twice: a different answer
    again = predict(str(ingested.model), vhdr)
    assert not np.allclose(again.values, stored.values, rtol=1e-3, atol=1e-3)


def test_any_input_rate_is_resampled_and_bad_channels_interpolated(ingested, write, tmp_path):
    vhdr = write.brainvision(
        tmp_path,
        "fast",
        write.synth(120.0, 500.0, seed=3),
        names=ingested.run.channels,
        sfreq=500.0,
    )
    notes = []
    prediction = predict(str(ingested.model), vhdr, echo=notes.append)
    assert any("resample 500->100 Hz" in n for n in notes)
    assert np.isfinite(prediction.values).all()
    models = load_models(str(ingested.model))
    plain = read_recording(vhdr, models=models)
    fixed = read_recording(vhdr, models=models, bad_channels=["O1"])
    bads = [s for s in fixed.steps if s["step"] == "bads"]
    assert bads and bads[0]["mode"] == "interpolate" and bads[0]["channels"] == ["O1"]
    o1 = list(models.channels).index("O1")
    assert not np.allclose(plain.eeg[o1], fixed.eeg[o1])
    others = [i for i in range(len(models.channels)) if i != o1]
    # average reference over the repaired set: the other channels shift by a common offset
    diff = plain.eeg[others] - fixed.eeg[others]
    assert np.allclose(diff, diff[0], atol=1e-3)


def _with_record(ingested, tmp_path, change) -> str:
    card = torch.load(ingested.model, weights_only=True)
    record = json.loads(card["dataset"]["preprocessing"])
    change(record)
    card["dataset"]["preprocessing"] = json.dumps(record)
    path = tmp_path / "changed.pt"
    torch.save(card, path)
    return str(path)


def test_no_resampling_recorded_and_a_rate_that_differs(ingested, tmp_path):
    def keep_rate(record):
        record["config"]["eeg"]["sfreq"] = None

    path = _with_record(ingested, tmp_path, keep_rate)
    with pytest.raises(PredictError) as err:
        predict(path, ingested.vhdr)
    assert str(err.value).endswith(
        "rec.vhdr: 250 Hz but the model was trained at 100 Hz and the training data recorded "
        "no resampling step"
    )


def test_a_record_without_an_ingest_config(ingested, tmp_path):
    def strip(record):
        record.pop("config")

    path = _with_record(ingested, tmp_path, strip)
    with pytest.raises(PredictError, match="holds no ingest config to repeat"):
        predict(path, ingested.vhdr)

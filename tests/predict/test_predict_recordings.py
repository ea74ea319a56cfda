"""Recordings that do not fit the model are refused with one line naming the file and the
difference: missing channels, sampling rate, units, length, format."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eeg2bold.errors import Eeg2BoldError
from eeg2bold.predict import PredictError, predict


def _one_line(err, path) -> str:
    text = str(err.value)
    assert "\n" not in text
    assert path.name in text
    return text


def test_missing_channels(sim, write, tmp_path):
    keep = [i for i, c in enumerate(sim.channels) if c not in sim.channels[-2:]]
    names = [sim.channels[i] for i in keep]
    vhdr = write.brainvision(tmp_path, "few", sim.volts[keep], names=names, sfreq=100.0)
    with pytest.raises(PredictError) as err:
        predict(str(sim.model), vhdr)
    text = _one_line(err, vhdr)
    assert text == (f"recording {vhdr} lacks channels {list(sim.channels[-2:])} the model needs")


def test_near_channel_names_are_suggested(sim, write, tmp_path):
    names = [c.upper() if i == 0 else c for i, c in enumerate(sim.channels)]
    vhdr = write.brainvision(tmp_path, "case", sim.volts, names=names, sfreq=100.0)
    with pytest.raises(PredictError, match=rf"nearest in the recording: '{sim.channels[0]}'"):
        predict(str(sim.model), vhdr)


def test_wrong_sampling_rate(sim, write, tmp_path):
    vhdr = write.brainvision(tmp_path, "fast", sim.volts, names=sim.channels, sfreq=200.0)
    with pytest.raises(PredictError) as err:
        predict(str(sim.model), vhdr)
    assert _one_line(err, vhdr).endswith(
        "fast.vhdr: 200 Hz but the model was trained at 100 Hz and the training data recorded "
        "no resampling step"
    )


def test_wrong_units(sim, write, tmp_path):
    # microvolt numbers written as volts: a million times too large
    vhdr = write.brainvision(tmp_path, "units", sim.volts * 1e6, names=sim.channels, sfreq=100.0)
    with pytest.raises(PredictError) as err:
        predict(str(sim.model), vhdr)
    assert "EEG amplitude is 1e+06 x that of the training data" in _one_line(err, vhdr)
    # the check can be skipped (and then the prediction is what it is)
    assert np.isfinite(predict(str(sim.model), vhdr, check_amplitude=False).values).all()


def test_units_the_recording_cannot_be_converted_to(sim, tmp_path):
    card = torch.load(sim.model, weights_only=True)
    card["units"] = "a.u."
    path = tmp_path / "au.pt"
    torch.save(card, path)
    with pytest.raises(PredictError, match=r"trained on EEG in 'a.u.', which a recording"):
        predict(str(path), sim.vhdr)


def test_too_short_and_unknown_format(sim, write, tmp_path):
    vhdr = write.brainvision(
        tmp_path, "short", sim.volts[:, :1000], names=sim.channels, sfreq=100.0
    )
    with pytest.raises(
        PredictError, match=r"too short for one window \(window_s 12 s \+ delay_s 2"
    ):
        predict(str(sim.model), vhdr)
    other = tmp_path / "rec.xyz"
    other.write_text("x")
    with pytest.raises(PredictError, match=r"rec\.xyz: unknown EEG format"):
        predict(str(sim.model), other)
    with pytest.raises(Eeg2BoldError, match="no such file"):
        predict(str(sim.model), tmp_path / "none.vhdr")


def test_bad_channels_need_a_preprocessing_record(sim):
    with pytest.raises(PredictError, match="bad channels cannot be repaired"):
        predict(str(sim.model), sim.vhdr, bad_channels=[sim.channels[0]])
    with pytest.raises(PredictError, match=r"bad channel\(s\) \['Nope'\] are not channels"):
        predict(str(sim.model), sim.vhdr, bad_channels=["Nope"])

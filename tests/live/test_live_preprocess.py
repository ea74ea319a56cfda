"""The training preprocessing applied causally: each stage equals its scipy closed form in any
chunking, the streaming resampler is scipy's polyphase resampling, and on a recording ingested
with notch, band-pass, resampling and average reference the live updates track `predict`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import signal

from eeg2bold.ingest.config import EEGConfig
from eeg2bold.live import LiveTwin
from eeg2bold.live.preprocess import CausalPreprocessor, LiveInput, _PolyphaseResampler
from eeg2bold.models import model_names
from eeg2bold.predict import PredictOptions, load_models, predict
from eeg2bold.training.config import build_config
from eeg2bold.training.run import train_protocol

CHUNKS = [1, 7, 100, 3, 500, 1389, 64]


def _chunked(stage, x):
    parts, i, k = [], 0, 0
    while i < x.shape[1]:
        n = CHUNKS[k % len(CHUNKS)]
        parts.append(stage(x[:, i : i + n]))
        i, k = i + n, k + 1
    return np.concatenate(parts, axis=1)


@pytest.mark.parametrize(("up", "down"), [(2, 5), (1, 4), (2, 1), (3, 2)])
def test_the_streaming_resampler_is_scipys_polyphase_resampling(up, down):
    x = np.random.default_rng(0).normal(size=(3, 3000))
    resampler = _PolyphaseResampler(up, down, 3)
    y = _chunked(resampler, x)
    half = 10 * max(up, down)
    taps = signal.firwin(2 * half + 1, 1 / max(up, down), window=("kaiser", 5.0)) * up
    causal = signal.upfirdn(taps, x, up, down, axis=1)
    np.testing.assert_allclose(
        y, causal[:, resampler.skip : resampler.skip + y.shape[1]], atol=1e-12
    )
    # the delay taken off the clock (whole here): resample_poly's samples, in time
    assert resampler.skip == half // down and half % down == 0
    offline = signal.resample_poly(x, up, down, axis=1)
    n = y.shape[1] - half  # away from the end, which resample_poly pads
    np.testing.assert_allclose(y[:, :n], offline[:, :n], atol=1e-12)


def test_the_chain_is_notch_band_pass_resampling_reference_in_microvolts():
    """250 Hz → 100 Hz: resampling first, then the filters at 100 Hz (as ingest orders them),
    average reference, microvolts; each piece a scipy closed form on the whole signal."""
    eeg = EEGConfig(sfreq=100.0, l_freq=1.0, h_freq=40.0, line_freq=50.0, reference="average")
    pre = CausalPreprocessor(eeg, channels=("A", "B", "C"), sfreq_in=250.0)
    x = np.random.default_rng(1).normal(size=(3, 5000)) * 1e-5
    y = _chunked(pre, x)
    resampled = signal.upfirdn(
        signal.firwin(101, 1 / 5, window=("kaiser", 5.0)) * 2, x, 2, 5, axis=1
    )[:, 10:]
    assert pre.steps[0]["freqs"] == []  # 50 Hz mains is not below the output Nyquist: no notch
    band = signal.sosfilt(
        signal.butter(4, [1.0, 40.0], "bandpass", fs=100.0, output="sos"), resampled
    )
    expected = (band - band.mean(axis=0, keepdims=True)) * 1e6
    np.testing.assert_allclose(
        y, expected[:, : y.shape[1]].astype(np.float32), rtol=1e-5, atol=1e-3
    )
    assert pre.delay_s == pytest.approx(0.1)  # 10 output samples at 100 Hz


def test_a_gap_restarts_the_filters_and_keeps_one_clock():
    eeg = EEGConfig(sfreq=100.0, l_freq=1.0, h_freq=None, line_freq=None, reference="none")
    pre = CausalPreprocessor(eeg, channels=("A",), sfreq_in=250.0)
    source = LiveInput(picks=np.array([0]), scale=1.0, sfreq_in=250.0, preprocessor=pre)
    x = np.random.default_rng(2).normal(size=(2500, 1)) * 1e-5  # [n, channels], as LSL
    out, stamps = source(x[:1000], 10.0 + np.arange(1000) / 250.0)
    assert out.shape[1] == 400 - 10  # 1000 samples at 250 Hz, less the resampler's delay
    np.testing.assert_allclose(stamps, 10.0 + np.arange(out.shape[1]) / 100.0)
    # 500 samples (2 s) lost: the model-rate clock skips the delayed tail and the gap
    assert source.gap(500) == 10 + 200
    fresh = CausalPreprocessor(eeg, channels=("A",), sfreq_in=250.0)
    again, stamps = source(x[1500:], 16.0 + np.arange(1000) / 250.0)
    np.testing.assert_allclose(again, fresh(x[1500:].T * 1.0), rtol=1e-6)  # from rest
    np.testing.assert_allclose(stamps, 16.0 + np.arange(again.shape[1]) / 100.0)


@pytest.mark.parametrize("name", model_names())
def test_an_ingested_model_streams_its_raw_recording_like_predict(ingested, name, tmp_path):
    """The recording at 250 Hz, live through the causal preprocessing, against `predict` on
    the same file with MNE's zero-phase filters: r >= 0.95 for every output of every model
    (the deep ones trained for a few steps: what is compared is the input path, not skill)."""
    model = ingested.model
    if name != "ridge":  # the fixture's model is ridge
        sets = {"window_s": "12", "epochs": "1", "steps_per_epoch": "4"}
        experiment = build_config(model=name, protocol="within", sets=sets)
        trained = train_protocol(ingested.dataset, experiment, out_dir=tmp_path / name)
        model = Path(trained.folds[0].model_file)
    models = load_models(str(model))
    assert models.first.card["model"] == name
    from eeg2bold.live.lsl import _preprocessor

    pre = _preprocessor(models, sfreq=ingested.sfreq, where="test")
    assert pre is not None and pre.sfreq_out == models.sfreq == 100.0
    source = LiveInput(
        picks=np.arange(len(models.channels)), scale=1.0, sfreq_in=ingested.sfreq, preprocessor=pre
    )
    twin = LiveTwin(models, every_s=2.0)
    volts = ingested.volts.T  # [n, channels], in volts as an LSL stream sends them
    updates = []
    for i in range(0, volts.shape[0], 250):
        chunk = volts[i : i + 250]
        updates += twin.push(*source(chunk, i / 250.0 + np.arange(len(chunk)) / 250.0))
    times = np.array([u.time_s for u in updates])
    offline = predict(models, ingested.vhdr, PredictOptions(device="cpu"), times=times)
    live_values = np.stack([u.values for u in updates], axis=1)
    skip = 5  # the first 10 s: the high-pass filter settling from rest
    for name, line in zip(models.outputs, live_values, strict=True):
        r = np.corrcoef(line[skip:], offline.column(name)[skip:])[0, 1]
        print(f"{name}: live vs predict r {r:.4f}")
        assert r >= 0.95, f"{name}: r {r:.3f}"


def _sinfo(names, sfreq, units=None):
    """What plan_source reads of an LSL stream's description."""
    from types import SimpleNamespace

    return SimpleNamespace(
        name="amp",
        source_id="amp-1",
        uid="amp-uid-1",
        n_channels=len(names),
        sfreq=sfreq,
        get_channel_names=lambda: list(names),
        get_channel_units=lambda: units,
    )


def test_a_stream_is_planned_against_the_model_card(ingested, live):
    from eeg2bold.live import StreamError, plan_source

    models = load_models(str(ingested.model))
    names = list(reversed(models.channels)) + ["ECG"]
    plan = plan_source(_sinfo(names, 500.0), models)  # resampled 500 -> 100 Hz, causally
    assert plan.input.pre is not None and plan.input.pre.sfreq_out == 100.0
    assert [names[i] for i in plan.input.picks] == list(models.channels)
    assert any("ms late" in n for n in plan.notes) and any("unused" in n for n in plan.notes)
    with pytest.raises(StreamError, match=r"sends 500 Hz, the model was trained at 100 Hz and "
                       r"preprocessing is off"):  # fmt: skip
        plan_source(_sinfo(names, 500.0), models, preprocess=False)
    with pytest.raises(StreamError, match="unknown units 'furlongs'"):
        plan_source(_sinfo(names, 500.0, ["furlongs"] * len(names)), models)
    simulated = load_models(live.s2o)  # no preprocessing recorded: the rate must match
    with pytest.raises(StreamError, match="recorded no resampling step"):
        plan_source(_sinfo(live.channels, 250.0), simulated)
    plan = plan_source(_sinfo(live.channels, 100.0, ["microvolts"] * 8), simulated)
    assert plan.input.pre is None and plan.input.scale == pytest.approx(1.0)

"""The live twin without LSL: EEG pushed in chunks gives the offline prediction at the same
instants (exactly for seq2one; causally for seq2seq and alignment), whatever the chunking,
and a gap becomes NaN rows, never a window across it."""

from __future__ import annotations

import numpy as np
import pytest

from eeg2bold.live import LiveTwin
from eeg2bold.predict import PredictError, apply_models, load_models


def _stream(twin, eeg, sizes, *, start=0):
    """Push ``eeg`` [C, N] in chunks of the given sizes (cycled); the updates."""
    updates, i, k = [], start, 0
    while i < eeg.shape[1]:
        n = sizes[k % len(sizes)]
        updates += twin.push(eeg[:, i : i + n], np.arange(i, min(i + n, eeg.shape[1])) / 100.0)
        i, k = i + n, k + 1
    return updates


def _offline(models, eeg, updates):
    times = np.array([u.time_s for u in updates])
    return apply_models(models, eeg, sfreq=models.sfreq, times=times, device="cpu").values


def test_seq2one_updates_are_the_offline_prediction_at_the_same_instants(live):
    models = load_models(live.s2o)
    assert models.sample.delay_s == 2.0 and len(models.members) == 2
    twin = LiveTwin(models, every_s=1.0)
    updates = _stream(twin, live.eeg, [37, 100, 3, 250])
    times = np.array([u.time_s for u in updates])
    # one update per second from the first full window, each 2 s ahead of its window's end
    n = live.eeg.shape[1]
    np.testing.assert_allclose(times, np.arange(8, n // 100 + 1) + 2.0)
    values = np.stack([u.values for u in updates], axis=1)
    np.testing.assert_allclose(values, _offline(models, live.eeg, updates), rtol=1e-5, atol=1e-6)
    # the LSL timestamp is that of the window's last sample
    np.testing.assert_allclose([u.lsl_time for u in updates], times - 2.0 - 0.01)
    # chunking changes nothing
    again = _stream(LiveTwin(models, every_s=1.0), live.eeg, [n])
    np.testing.assert_allclose(np.stack([u.values for u in again], axis=1), values, atol=1e-6)


def test_seq2seq_updates_are_predict_on_the_recording_as_it_stood(live):
    """Causal: a seq2seq update is the newest window's output at its instant, which is what
    predict gives on the recording cut at that moment (offline, later windows' outputs at the
    same instant are averaged in, so the full recording's prediction differs)."""
    models = load_models(live.s2s)
    assert models.sample.target == "seq2seq" and models.outputs[-1] == "common_mode"
    twin = LiveTwin(models, every_s=2.0)
    updates = _stream(twin, live.eeg, [64])
    for u in updates[::10]:
        end = round((u.time_s - models.sample.delay_s) * models.sfreq)
        cut = _offline(models, live.eeg[:, :end], [u])[:, 0]
        np.testing.assert_allclose(u.values, cut, rtol=1e-5, atol=1e-6)
    assert len(updates) == (live.eeg.shape[1] // 100 - 8) // 2 + 1


def test_an_aligned_model_warms_up_on_the_stream_then_tracks_the_offline_prediction(live):
    models = load_models(live.aligned)
    assert models.sample.align == "euclidean"
    twin = LiveTwin(models, every_s=1.0, warmup_s=60.0)
    assert _stream(twin, live.eeg[:, :5999], [500]) == []  # nothing before the warm-up
    assert not twin.ready
    updates = _stream(twin, live.eeg, [500], start=5999)
    assert twin.ready and updates[0].time_s == 60.0
    live_values = np.stack([u.values for u in updates], axis=1)
    offline = _offline(models, live.eeg, updates)
    for live_line, offline_line in zip(live_values, offline, strict=True):
        assert np.corrcoef(live_line, offline_line)[0, 1] >= 0.95


def test_a_gap_is_marked_and_never_inside_a_window(live):
    models = load_models(live.s2o)
    twin = LiveTwin(models, every_s=1.0)
    a, g = 3000, 450  # the stream loses 4.5 s after 30 s
    updates = _stream(twin, live.eeg[:, :a], [100])
    missing = twin.gap(g)
    updates += missing + _stream(twin, live.eeg[:, a + g :], [100])
    # the lost instants: from 31 s until a whole window (8 s) has arrived after the gap
    missing_ends = [round((u.time_s - 2.0) * 100) for u in missing]
    assert missing_ends == list(range(3100, a + g + 800, 100))
    assert all(u.missing and np.isnan(u.lsl_time) for u in missing)
    got = [u for u in updates if not u.missing]
    values = np.stack([u.values for u in got], axis=1)
    # every other update equals the offline prediction of the whole recording: no window
    # reached into the lost samples
    np.testing.assert_allclose(values, _offline(models, live.eeg, got), rtol=1e-5, atol=1e-6)
    times = [u.time_s for u in updates]
    assert times == sorted(times) and len(set(times)) == len(times)


def test_bad_settings_and_chunks_are_one_line_errors(live):
    models = load_models(live.s2o)
    with pytest.raises(PredictError, match="whole number of samples"):
        LiveTwin(models, every_s=0.015)
    twin = LiveTwin(models)
    with pytest.raises(PredictError, match=r"\[8 channels, samples\]"):
        twin.push(np.zeros((7, 10)))
    with pytest.raises(PredictError, match="NaN"):
        twin.push(np.full((8, 10), np.nan))
    aligned = load_models(live.aligned)
    with pytest.raises(PredictError, match="warm-up"):
        LiveTwin(aligned, warmup_s=4.0)


def test_unit_labels_of_lsl_channels():
    from eeg2bold.live.lsl import volts_per_unit

    assert volts_per_unit("microvolts") == volts_per_unit("uV") == 1e-6
    assert volts_per_unit("-6") == pytest.approx(1e-6)  # MNE-LSL's power of ten
    assert volts_per_unit("0") == volts_per_unit(None) == volts_per_unit("V") == 1.0
    assert volts_per_unit("mV") == 1e-3
    assert volts_per_unit("furlongs") is None

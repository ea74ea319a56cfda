"""Fold data: windows on the device equal the store's, and statistics come from training only."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from eeg2bold.protocols import build_sample_table, get_protocol
from eeg2bold.storage import open_dataset
from eeg2bold.storage.windows import WindowReader
from eeg2bold.training.data import COMMON_MODE, FoldData, SampleConfig


@pytest.fixture(scope="module")
def store(sim_store):
    return open_dataset(sim_store)


def _fold_data(store, protocol="within", fold=0, read_run=None, **config):
    cfg = SampleConfig(**{"window_s": 8.0, "delay_s": 2.0, **config})
    samples = build_sample_table(store, window_s=cfg.window_s, delay_s=cfg.delay_s)
    f = get_protocol(protocol).folds(samples)[fold]
    return FoldData(store, samples, f, config=cfg, read_run=read_run)


def test_batches_are_the_stores_windows_normalised(store):
    data = _fold_data(store, protocol="loso")
    reader = WindowReader(store, window_s=8.0, delay_s=2.0)
    idx = np.concatenate([data.fold.train[:5], data.fold.test[-5:]])
    eeg, target = data.batch(idx)
    assert eeg.shape == (10, 8, 1024)
    assert target.shape == (10, 3, 1)
    norm = data.normaliser
    for row, i in enumerate(idx):
        key = data.samples.runs[data.samples.run[i]]
        window = reader.read(key, [data.samples.volume[i]])
        restored = eeg[row].numpy() * norm.eeg_scale[:, None] + norm.eeg_mean[:, None]
        np.testing.assert_allclose(restored, window.eeg[0], rtol=1e-4, atol=1e-3)
        bold = target[row, :, 0].numpy() * norm.target_scale + norm.target_mean
        np.testing.assert_allclose(bold, window.bold[0], rtol=1e-5, atol=1e-5)


def test_normalisation_statistics_come_from_training_samples_only(store):
    plain = _fold_data(store, protocol="loso")
    held_out = plain.fold.subject

    def read_run(key):
        run = store.read_run(key)
        if key.subject == held_out:  # wildly different test subject must not matter
            return dataclasses.replace(run, eeg=run.eeg * 1000 + 5, bold=run.bold * -50 + 3)
        return run

    altered = _fold_data(store, protocol="loso", read_run=read_run)
    for field in ("eeg_mean", "eeg_scale", "target_mean", "target_scale"):
        np.testing.assert_array_equal(
            getattr(plain.normaliser, field), getattr(altered.normaliser, field)
        )
    # and the within protocol's statistics ignore the val and test blocks of the subject
    within = _fold_data(store, protocol="within")
    cut = within.samples.time[within.fold.val].min() - within.samples.window_s

    def read_run_late(key):
        run = store.read_run(key)
        late = int(cut * store.info.eeg.sfreq)
        eeg = run.eeg.copy()
        eeg[:, late:] *= 1000
        return dataclasses.replace(run, eeg=eeg)

    late = _fold_data(store, protocol="within", read_run=read_run_late)
    np.testing.assert_allclose(late.normaliser.eeg_scale, within.normaliser.eeg_scale)
    # the statistics are those of the EEG under the training windows
    run = store.read_run(within.samples.runs[0])
    covered = np.zeros(run.eeg.shape[1], bool)
    for s in within.samples.start_sample[within.fold.train]:
        covered[s : s + within.n_window] = True
    np.testing.assert_allclose(within.normaliser.eeg_scale, run.eeg[:, covered].std(axis=1), 1e-5)


def test_seq2seq_targets_end_at_the_volume(store):
    data = _fold_data(store, target="seq2seq", target_hz=1.0)
    assert data.spec.n_out == 8
    i = data.fold.val[3]
    times = data.target_times[i]
    assert times[-1] == pytest.approx(data.samples.time[i])
    np.testing.assert_allclose(np.diff(times), 1.0)
    assert times[0] >= data.samples.time[i] - data.samples.window_s  # inside the footprint
    run = store.read_run(data.samples.runs[data.samples.run[i]])
    norm = data.normaliser
    _, target = data.batch([i])
    restored = target[0].numpy() * norm.target_scale[:, None] + norm.target_mean[:, None]
    expected = np.stack([np.interp(times, run.volume_times, row) for row in run.bold])
    np.testing.assert_allclose(restored, expected, rtol=1e-5, atol=1e-5)


def test_common_mode_output(store):
    data = _fold_data(store, common_mode=True)
    assert data.outputs == (*store.info.bold.rois, COMMON_MODE)
    norm = data.normaliser
    _, target = data.batch(data.fold.train[:20])
    raw = target[:, :, 0].numpy() * norm.target_scale + norm.target_mean
    np.testing.assert_allclose(raw[:, :3].sum(axis=1), 0.0, atol=1e-4)  # residuals sum to 0
    run = store.read_run(data.samples.runs[0])
    vols = data.samples.volume[data.fold.train[:20]]
    np.testing.assert_allclose(raw[:, 3], run.bold[:, vols].mean(axis=0), rtol=1e-4, atol=1e-5)


def test_unknown_roi_is_a_config_error(store):
    from eeg2bold.errors import ConfigError

    with pytest.raises(ConfigError, match=r"unknown ROI\(s\) \['Amygdala_X'\]"):
        _fold_data(store, rois=("Amygdala_X",))


def test_segments_are_contiguous_runs_of_volumes(store):
    data = _fold_data(store, protocol="loso")
    segments = data.segments(data.fold.val)
    assert len(segments) == 2  # one val block per training subject
    for seg in segments:
        assert np.all(np.diff(data.samples.volume[seg]) == 1)
        assert len(set(data.samples.run[seg])) == 1


@pytest.fixture(scope="module")
def two_run_store(tmp_path_factory):
    """2 subjects × 2 runs × 3 min, 4 channels at 100 Hz, with session effects."""
    from eeg2bold.simulate import SimulationConfig
    from eeg2bold.simulate.write import simulate_to_store

    config = SimulationConfig(
        subjects=2, runs=2, minutes=3, channels=4, sfreq=100, rois=2, session_gain_sd=0.3
    )
    return simulate_to_store(tmp_path_factory.mktemp("runs") / "runs.zarr", config, progress=False)


def test_leave_one_run_out_statistics_never_see_the_held_out_run(two_run_store):
    """Normaliser and alignment of a leave_one_run_out fold come from the subject's other
    run: the held-out run's EEG and BOLD can be anything."""
    samples = build_sample_table(two_run_store, window_s=8.0, delay_s=2.0)
    cfg = SampleConfig(window_s=8.0, delay_s=2.0, align="euclidean")
    fold = get_protocol("leave_one_run_out").folds(samples)[0]
    held = (fold.subject, fold.held_out)
    assert held == ("sub-01", "run-1")

    def read_run(key):
        run = two_run_store.read_run(key)
        if tuple(key) == held:
            return dataclasses.replace(run, eeg=run.eeg * 50 - 7, bold=run.bold * -9 + 1)
        return run

    plain = FoldData(two_run_store, samples, fold, config=cfg)
    altered = FoldData(two_run_store, samples, fold, config=cfg, read_run=read_run)
    for field in ("eeg_mean", "eeg_scale", "target_mean", "target_scale"):
        np.testing.assert_array_equal(
            getattr(plain.normaliser, field), getattr(altered.normaliser, field)
        )
    np.testing.assert_array_equal(
        plain.alignment["sub-01"].matrix, altered.alignment["sub-01"].matrix
    )
    assert plain.describe()["alignment"] == {"sub-01": "train"}
    # the statistics are those of the other run's training windows: aligned there, that EEG
    # has zero mean and unit variance, which is what the normaliser then finds
    assert samples.runs[1] == ("sub-01", "run-2")
    np.testing.assert_array_equal(np.unique(samples.run[fold.train]), [1])
    np.testing.assert_allclose(plain.normaliser.eeg_mean, 0, atol=1e-4)
    np.testing.assert_allclose(plain.normaliser.eeg_scale, 1, atol=1e-4)


def test_a_fold_holds_the_runs_as_read_not_a_copy(store):
    """`train` keeps each run once (its RunCache) and every fold's data points into it: the
    EEG a fold batches from shares memory with the run as read, aligned or not."""
    from eeg2bold.training.engine import RunCache

    cache = RunCache()
    for align in ("none", "euclidean"):
        data = _fold_data(store, "loso", read_run=cache.reader(store), align=align)
        for r, eeg in data._runs.items():
            assert np.shares_memory(eeg, cache.runs[(store.url, data.samples.runs[r])].eeg)

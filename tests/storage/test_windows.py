"""The window reader returns exactly the samples DESIGN.md defines, cached or lazily."""

from __future__ import annotations

import numpy as np
import pytest

from eeg2bold.errors import ConfigError
from eeg2bold.storage import RunKey, create_dataset, open_dataset
from eeg2bold.storage.windows import WindowReader

KEY = RunKey("sub-01", "run-1")


@pytest.fixture
def dataset(tmp_path, make_info, make_run):
    info = make_info(sfreq=50.0, tr=2.0)
    ds = create_dataset(tmp_path / "d.zarr", info)
    run = make_run(info, seconds=120)
    # make each sample identify itself: eeg[c, s] = 1000 * c + s
    run.eeg = (1000.0 * np.arange(4)[:, None] + np.arange(run.eeg.shape[1])[None]).astype("f4")
    ds.write_run(run)
    ds.write_run(make_run(info, subject="sub-02", seconds=90, seed=1))
    return open_dataset(tmp_path / "d.zarr"), run


@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize(("window_s", "delay_s"), [(10.0, 0.0), (4.0, 5.0), (20.0, 2.5)])
def test_windows_match_the_definition(dataset, lazy, window_s, delay_s):
    ds, run = dataset
    reader = WindowReader(ds, window_s=window_s, delay_s=delay_s, lazy=lazy)
    valid = reader.valid_volumes(KEY)
    n = int(round(window_s * 50))
    for v in range(run.volume_times.size):
        end = int(round((run.volume_times[v] - delay_s) * 50))
        assert (v in valid) == (end - n >= 0 and end <= run.eeg.shape[1])
    batch = reader.read(KEY, valid)
    assert batch.eeg.shape == (valid.size, 4, n)
    assert batch.eeg.dtype == np.float32
    for i, v in enumerate(valid):
        end = int(round((run.volume_times[v] - delay_s) * 50))
        np.testing.assert_array_equal(batch.eeg[i], run.eeg[:, end - n : end])
        # the window ends delay_s before the target volume
        assert batch.eeg[i, 0, -1] + 1 == pytest.approx((batch.times[i] - delay_s) * 50)
    np.testing.assert_array_equal(batch.bold, run.bold[:, valid].T)
    single = reader.read(KEY, valid[3])
    np.testing.assert_array_equal(single.eeg[0], batch.eeg[3])


def test_first_valid_volume_needs_a_full_window(dataset):
    ds, run = dataset
    reader = WindowReader(ds, window_s=10.0, delay_s=4.0)
    first = reader.valid_volumes(KEY)[0]
    assert run.volume_times[first] >= 14.0
    assert run.volume_times[first - 1] < 14.0
    with pytest.raises(IndexError, match="no full EEG window"):
        reader.read(KEY, [first - 1])
    with pytest.raises(IndexError, match="out of range"):
        reader.read(KEY, [10_000])


def test_iter_batches_covers_every_valid_volume_once(dataset):
    ds, _ = dataset
    reader = WindowReader(ds, window_s=8.0)
    seen = np.concatenate([b.volumes for b in reader.iter_batches(KEY, batch_size=7)])
    np.testing.assert_array_equal(seen, reader.valid_volumes(KEY))


def test_cache_is_bounded_and_falls_back_to_lazy_reads(dataset):
    ds, run = dataset
    run_bytes = run.eeg.nbytes
    reader = WindowReader(ds, window_s=10.0, cache_bytes=int(run_bytes * 1.5))
    keys = ds.runs()
    for key in keys * 2:
        reader.read(key, reader.valid_volumes(key)[:2])
        assert reader._cached_bytes <= reader.cache_bytes
    assert len(reader._cache) == 1  # two runs do not fit: the older one was evicted
    tiny = WindowReader(ds, window_s=10.0, cache_bytes=10)
    vols = tiny.valid_volumes(KEY)[:5]
    np.testing.assert_array_equal(
        tiny.read(KEY, vols).eeg, WindowReader(ds, window_s=10.0).read(KEY, vols).eeg
    )
    assert not tiny._cache


def test_bad_parameters_are_config_errors(dataset):
    ds, _ = dataset
    with pytest.raises(ConfigError, match="window_s must be positive"):
        WindowReader(ds, window_s=0)
    with pytest.raises(ConfigError, match="delay_s must be >= 0"):
        WindowReader(ds, window_s=5, delay_s=-1)

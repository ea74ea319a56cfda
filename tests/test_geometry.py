"""The one sample geometry, and every subpackage agreeing with it."""

from __future__ import annotations

import numpy as np
import pytest

from eeg2bold.errors import ConfigError
from eeg2bold.geometry import WindowGeometry
from eeg2bold.models import DataSpec
from eeg2bold.protocols import build_sample_table
from eeg2bold.storage import open_dataset
from eeg2bold.storage.windows import WindowReader


def test_windows_end_delay_before_the_target():
    g = WindowGeometry(window_s=2.0, delay_s=0.5, sfreq=10.0)
    times = np.array([2.5, 3.0, 10.0])
    assert g.n_window == 20
    np.testing.assert_array_equal(g.ends(times), [20, 25, 95])
    np.testing.assert_array_equal(g.starts(times), [0, 5, 75])
    np.testing.assert_array_equal(g.valid(times, n_samples=90), [True, True, False])
    np.testing.assert_allclose(g.footprint_start(times), [0.0, 0.5, 7.5])
    np.testing.assert_allclose(g.output_times(np.array([10.0]), 4), [[8.5, 9.0, 9.5, 10.0]])
    with pytest.raises(ConfigError, match="window_s must be positive"):
        WindowGeometry(window_s=0.0, delay_s=0.0, sfreq=10.0)


def test_reader_sample_table_and_models_share_it(tmp_path, make_info, make_run):
    info = make_info(sfreq=100.0)
    from eeg2bold.storage import create_dataset

    ds = create_dataset(tmp_path / "g.zarr", info)
    ds.write_run(make_run(info, seconds=40.0))
    ds = open_dataset(tmp_path / "g.zarr")
    key = ds.runs()[0]
    reader = WindowReader(ds, window_s=7.3, delay_s=1.7)
    table = build_sample_table(ds, window_s=7.3, delay_s=1.7)
    np.testing.assert_array_equal(reader.valid_volumes(key), table.volume)
    batch = reader.read(key, table.volume[:3])
    eeg = ds.read_run(key).eeg
    for i, start in enumerate(table.start_sample[:3]):
        np.testing.assert_array_equal(batch.eeg[i], eeg[:, start : start + batch.eeg.shape[-1]])
    spec = DataSpec(n_channels=4, n_rois=3, sfreq=100.0, window_s=7.3)
    assert spec.n_times == reader.n_window == table.geometry.n_window == batch.eeg.shape[-1]

"""Stores read by the tools researchers already use: xarray's open_datatree (labelled arrays,
coordinates, units) and plain zarr; stores of the previous schema stay readable."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
import zarr

from eeg2bold.simulate import SimulationConfig
from eeg2bold.simulate.write import simulate_to_store
from eeg2bold.storage import RunKey, create_dataset, open_dataset

xr = pytest.importorskip("xarray", reason="xarray is in the test extras")


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    out = tmp_path_factory.mktemp("interop") / "sim.zarr"
    config = SimulationConfig(subjects=2, minutes=2, channels=8, sfreq=100, rois=3, seed=1)
    simulate_to_store(out, config, progress=False)
    return out


def _tree(url):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning of any kind while opening
        return xr.open_datatree(url, engine="zarr", consolidated=False)


def test_a_simulated_store_opens_as_a_labelled_datatree(simulated):
    ds = open_dataset(simulated)
    tree = _tree(simulated)
    assert sorted(tree.children) == ["sub-01", "sub-02"]
    key = ds.runs()[0]
    run = tree[f"{key.subject}/{key.run}"].to_dataset()
    data = ds.read_run(key, truth=True)
    assert list(run["channel"].values) == list(ds.info.eeg.channels)
    assert list(run["roi"].values) == list(ds.info.bold.rois)
    assert run["eeg"].dims == ("channel", "time") and run["bold"].dims == ("roi", "volume")
    assert "volume_times" in run["bold"].coords  # the volume coordinate
    np.testing.assert_array_equal(run["volume_times"].values, data.volume_times)
    np.testing.assert_array_equal(run["bold"].values, data.bold)
    last = ds.info.eeg.channels[-1]
    np.testing.assert_array_equal(run["eeg"].sel(channel=last).values, data.eeg[-1])
    assert run["eeg"].attrs["units"] == ds.info.eeg.units
    assert run["eeg"].attrs["sfreq"] == ds.info.eeg.sfreq  # EEG time = sample / sfreq
    assert run["bold"].attrs["units"] == ds.info.bold.units == "arbitrary"
    assert run["volume_times"].attrs["units"] == "s"
    truth = tree[f"{key.subject}/{key.run}/truth"].to_dataset()
    assert truth["bold_clean"].dims == ("roi", "volume")
    assert truth["leadfield"].dims == ("channel", "source")
    np.testing.assert_array_equal(truth["bold_clean"].values, data.truth.arrays["bold_clean"])


def test_plain_zarr_lists_only_runs_and_coordinates(simulated):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        group = zarr.open_group(simulated, mode="r")
        run = group["sub-01"]["run-1"]
        assert sorted(group.group_keys()) == ["sub-01", "sub-02"]
        assert sorted(run.array_keys()) == ["bold", "channel", "eeg", "roi", "volume_times"]
        assert list(run["channel"][...]) == list(open_dataset(simulated).info.eeg.channels)


def test_a_store_of_the_previous_schema_is_still_read(simulated, tmp_path):
    """eeg2bold.dataset/1: no coordinate arrays, no units, truth without dimension names."""
    old = tmp_path / "old.zarr"
    shutil.copytree(simulated, old)
    root = old / "zarr.json"
    meta = json.loads(root.read_text())
    meta["attributes"]["schema"] = "eeg2bold.dataset/1"
    del meta["attributes"]["bold"]["units"]
    root.write_text(json.dumps(meta))
    for run in old.glob("sub-*/run-*"):
        for coord in ("channel", "roi"):
            shutil.rmtree(run / coord)
    ds = open_dataset(old)
    assert ds.info.bold.units == "arbitrary"
    key = RunKey("sub-01", "run-1")
    assert ds.read_run(key).bold.shape == open_dataset(simulated).read_run(key).bold.shape
    assert ds.verify(key) == []  # the content hash covers the data, not the coordinates


def test_units_of_a_written_store_follow_its_info(tmp_path, make_info, make_run):
    info = make_info()
    ds = create_dataset(tmp_path / "d.zarr", info)
    ds.write_run(make_run(info))
    run = _tree(tmp_path / "d.zarr")["sub-01/run-1"].to_dataset()
    assert run["bold"].attrs["units"] == info.bold.units
    assert list(run["roi"].values) == list(info.bold.rois)


def test_tensorstore_reads_the_data_arrays_with_their_dimension_labels(simulated):
    """tensorstore's zarr3 driver reads eeg, bold and volume_times (labels from the dimension
    names); it has no string type, so the channel/ROI names come from the root attributes."""
    ts = pytest.importorskip("tensorstore", reason="tensorstore is in the test extras")
    ds = open_dataset(simulated)
    key = ds.runs()[0]
    data = ds.read_run(key)

    def array(name):
        path = str(simulated / key.subject / key.run / name)
        return ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": path}}).result()

    eeg, bold = array("eeg"), array("bold")
    assert eeg.domain.labels == ("channel", "time") and bold.domain.labels == ("roi", "volume")
    np.testing.assert_array_equal(eeg[:, :50].read().result(), data.eeg[:, :50])
    np.testing.assert_array_equal(array("volume_times").read().result(), data.volume_times)


def test_inspect_prints_the_xarray_call_that_opens_without_warnings(simulated, capsys):
    """xarray's default looks for consolidated metadata (which a store of atomically published
    runs does not keep) and warns on every open: `inspect` prints the call that does not."""
    from eeg2bold.cli import main

    assert main(["inspect", str(simulated)]) == 0
    (line,) = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("xarray ")]
    call = line.split(None, 1)[1]
    assert call == f'xr.open_datatree("{simulated}", engine="zarr", consolidated=False)'
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tree = eval(call, {"xr": xr})  # exactly what a user pastes
    assert sorted(tree.children) == ["sub-01", "sub-02"]

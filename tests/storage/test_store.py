"""Round trips, idempotence, overwrite and the errors of opening something that is not a store."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from eeg2bold.errors import DatasetError
from eeg2bold.storage import RunKey, create_dataset, open_dataset
from eeg2bold.storage.schema import SCHEMA


def test_round_trip_every_array_and_attribute(tmp_path, make_info, make_run):
    info = make_info(
        source="unit-test",
        preprocessing={"notch": {"freqs": [50.0]}},
        provenance={"inputs": [{"path": "a.set", "sha256": "00ff"}]},
    )
    run = make_run(
        info,
        truth=True,
        session="ses-1",
        task="rest",
        bad_channels=["E2"],
        qc={"note": "manual check"},
        provenance={"eeg_file": "x.vhdr"},
    )
    ds = create_dataset(tmp_path / "d.zarr", info)
    assert ds.write_run(run) == "written"

    back_ds = open_dataset(tmp_path / "d.zarr")
    assert back_ds.info.eeg == info.eeg
    assert back_ds.info.bold == info.bold
    assert back_ds.info.source == "unit-test"
    assert back_ds.info.preprocessing == {"notch": {"freqs": [50.0]}}
    assert back_ds.info.provenance["inputs"] == [{"path": "a.set", "sha256": "00ff"}]
    assert back_ds.info.provenance["software"]["eeg2bold"]
    assert back_ds.info.created  # filled at creation
    assert back_ds.runs() == [RunKey("sub-01", "run-1")]

    back = back_ds.read_run(RunKey("sub-01", "run-1"), truth=True)
    np.testing.assert_array_equal(back.eeg, run.eeg.astype(np.float32))
    np.testing.assert_array_equal(back.bold, run.bold.astype(np.float32))
    np.testing.assert_array_equal(back.volume_times, run.volume_times)
    assert back.eeg.dtype == np.float32
    assert back.bold.dtype == np.float32
    assert back.volume_times.dtype == np.float64
    assert (back.session, back.task, back.bad_channels) == ("ses-1", "rest", ["E2"])
    assert back.qc["note"] == "manual check"
    assert "flat_channels" in back.qc  # automatic QC merged in
    assert back.provenance == {"eeg_file": "x.vhdr"}
    assert back.truth is not None
    assert set(back.truth.arrays) == {"bold_clean", "envelopes"}
    np.testing.assert_allclose(back.truth.arrays["envelopes"], run.truth.arrays["envelopes"], 1e-6)
    assert back.truth.attrs == run.truth.attrs
    attrs = back_ds.run_attrs(RunKey("sub-01", "run-1"))
    assert attrs["n_samples"] == run.eeg.shape[1]
    assert attrs["n_volumes"] == run.bold.shape[1]
    assert back_ds.verify(RunKey("sub-01", "run-1")) == []


def test_eeg_is_chunked_along_time_with_all_channels(tmp_path, make_info, make_run):
    info = make_info(n_channels=5, sfreq=100.0)
    ds = create_dataset(tmp_path / "d.zarr", info)
    ds.write_run(make_run(info, seconds=60))
    eeg = ds.array(RunKey("sub-01", "run-1"), "eeg")
    assert eeg.chunks == (5, 400)  # all channels, 4 s


def test_rewrite_identical_is_a_no_op(tmp_path, make_info, make_run):
    info = make_info()
    ds = create_dataset(tmp_path / "d.zarr", info)
    run = make_run(info)
    assert ds.write_run(run) == "written"
    chunk = tmp_path / "d.zarr" / "sub-01" / "run-1" / "eeg" / "zarr.json"
    mtime = chunk.stat().st_mtime_ns
    assert ds.write_run(make_run(info)) == "unchanged"
    assert chunk.stat().st_mtime_ns == mtime
    # a run read back and written again is also unchanged (auto QC is stable)
    again = open_dataset(tmp_path / "d.zarr").read_run(RunKey("sub-01", "run-1"))
    assert ds.write_run(again) == "unchanged"


def test_different_content_needs_overwrite(tmp_path, make_info, make_run):
    info = make_info()
    ds = create_dataset(tmp_path / "d.zarr", info)
    ds.write_run(make_run(info, seed=0))
    with pytest.raises(DatasetError, match=r"sub-01/run-1 already exists with different content"):
        ds.write_run(make_run(info, seed=1))
    assert ds.verify(RunKey("sub-01", "run-1")) == []
    np.testing.assert_array_equal(
        ds.read_run(RunKey("sub-01", "run-1")).eeg, make_run(info, seed=0).eeg
    )
    assert ds.write_run(make_run(info, seed=1), overwrite=True) == "replaced"
    np.testing.assert_array_equal(
        ds.read_run(RunKey("sub-01", "run-1")).eeg, make_run(info, seed=1).eeg
    )
    assert ds.stale_temporaries() == []


def test_create_refuses_an_incompatible_existing_dataset(tmp_path, make_info):
    create_dataset(tmp_path / "d.zarr", make_info(sfreq=100.0))
    with pytest.raises(DatasetError, match=r"sfreq 100\.0 != 250\.0"):
        create_dataset(tmp_path / "d.zarr", make_info(sfreq=250.0))
    with pytest.raises(DatasetError, match="ROI lists differ"):
        create_dataset(tmp_path / "d.zarr", make_info(n_rois=5))
    with pytest.raises(DatasetError, match="already exists"):
        create_dataset(tmp_path / "d.zarr", make_info(), exist_ok=False)
    assert create_dataset(tmp_path / "d.zarr", make_info()).info.eeg.sfreq == 100.0


def test_create_refuses_a_non_empty_folder(tmp_path, make_info):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("keep me")
    with pytest.raises(DatasetError, match="not empty and is not a dataset"):
        create_dataset(tmp_path / "stuff", make_info())
    assert (tmp_path / "stuff" / "notes.txt").read_text() == "keep me"


def test_open_errors_name_the_path_and_problem(tmp_path):
    with pytest.raises(DatasetError, match=r"missing\.zarr: no such file or folder"):
        open_dataset(tmp_path / "missing.zarr")
    (tmp_path / "plain").mkdir()
    with pytest.raises(DatasetError, match=r"plain is not an eeg2bold dataset \(no zarr.json\)"):
        open_dataset(tmp_path / "plain")
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "zarr.json").write_text("{not json")
    with pytest.raises(DatasetError, match=r"garbage: corrupt store"):
        open_dataset(tmp_path / "garbage")
    (tmp_path / "other").mkdir()
    meta = {"zarr_format": 3, "node_type": "group", "attributes": {"schema": "other/9"}}
    (tmp_path / "other" / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=r"not an eeg2bold dataset \(schema 'other/9'"):
        open_dataset(tmp_path / "other")
    meta["attributes"] = {"schema": SCHEMA, "name": "x"}
    (tmp_path / "other" / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="corrupt dataset attributes"):
        open_dataset(tmp_path / "other")


def test_verify_finds_missing_and_modified_chunks(tmp_path, make_info, make_run):
    info = make_info()
    ds = create_dataset(tmp_path / "d.zarr", info)
    ds.write_run(make_run(info, subject="sub-01"))
    ds.write_run(make_run(info, subject="sub-02", seed=3))
    eeg_chunks = tmp_path / "d.zarr" / "sub-01" / "run-1" / "eeg" / "c" / "0"
    os.remove(sorted(eeg_chunks.iterdir())[0])  # missing chunk reads as NaN fill value
    problems = ds.verify(RunKey("sub-01", "run-1"))
    assert len(problems) == 1
    assert "sub-01/run-1" in problems[0]
    assert "non-finite" in problems[0]

    bold_chunk = tmp_path / "d.zarr" / "sub-02" / "run-1" / "bold" / "c" / "0" / "0"
    src = open_dataset(tmp_path / "d.zarr").array(RunKey("sub-01", "run-1"), "bold")
    assert src.shape[0] == len(info.bold.rois)
    other_bold = tmp_path / "d.zarr" / "sub-01" / "run-1" / "bold" / "c" / "0" / "0"
    bold_chunk.write_bytes(other_bold.read_bytes())  # valid data, wrong content
    assert "does not match its stored hash" in ds.verify(RunKey("sub-02", "run-1"))[0]


def test_runs_lists_only_published_runs(tmp_path, make_info, make_run):
    info = make_info()
    ds = create_dataset(tmp_path / "d.zarr", info)
    ds.write_run(make_run(info))
    # a folder without zarr.json (an interrupted object-store copy) is not a run
    (tmp_path / "d.zarr" / "sub-01" / "run-2" / "eeg").mkdir(parents=True)
    (tmp_path / "d.zarr" / "sub-09").mkdir()
    assert ds.runs() == [RunKey("sub-01", "run-1")]
    assert ds.subjects() == ["sub-01"]


def test_missing_array_is_a_clear_error(tmp_path, make_info, make_run):
    info = make_info()
    ds = create_dataset(tmp_path / "d.zarr", info)
    ds.write_run(make_run(info))
    os.remove(tmp_path / "d.zarr" / "sub-01" / "run-1" / "bold" / "zarr.json")
    with pytest.raises(DatasetError, match=r"run sub-01/run-1 has no array 'bold'"):
        ds.read_run(RunKey("sub-01", "run-1"))

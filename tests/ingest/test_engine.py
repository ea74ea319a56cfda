"""The ingest engine: real recordings stored, bad runs reported while good ones land,
common channel/ROI sets, the EEG clock after cropping and resampling, and resumption."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eeg2bold.ingest import FileRun, FilesLayout, IngestConfig, IngestError, ingest
from eeg2bold.storage import RunKey, open_dataset
from eeg2bold.storage.summary import summarize

ROIS = ("Thalamus", "Putamen", "Caudate")


def _real_layout(real: Path) -> FilesLayout:
    bold = real / "vu_rest_bold"
    return FilesLayout(
        [
            FileRun(
                eeg=real / "eeg" / "eeglab_data.set",
                subject="sub-01",
                run="eeglab",
                bold=bold / "sub-01_scan-01_atlas-difumo64_timeseries.tsv",
                start_s=5.0,
            ),
            FileRun(
                eeg=real / "eeg" / "eyes-closed-1.edf",
                subject="sub-02",
                run="edf",
                bold=bold / "sub-02_scan-01_atlas-difumo64_timeseries.tsv",
                start_s=2.0,
            ),
        ]
    )


def _real_config(**eeg) -> IngestConfig:
    # start + TR from each run's start time; the 20-min tables are longer than these short
    # recordings, so rule 'first' keeps the volumes inside the EEG (logged).
    return IngestConfig(
        eeg={"sfreq": 100, **eeg},
        timing={"source": "start", "mismatch": "first"},
        bold={"tr": 2.1, "rois": list(ROIS)},
    )


def test_real_eeglab_and_edf_recordings_are_stored(real_data, tmp_path):
    out = tmp_path / "real.zarr"
    layout = _real_layout(real_data)
    with pytest.raises(IngestError, match=r"channel sets differ between runs.*sub-02/edf lacks"):
        ingest(layout, out, config=_real_config(), progress=False)
    assert not out.exists()  # refused before anything was written

    report = ingest(layout, out, config=_real_config(), common="intersect", progress=False)
    assert [o.status for o in report.outcomes] == ["written", "written"], report.lines()
    ds = open_dataset(out)
    assert ds.info.eeg.sfreq == 100
    assert ds.info.eeg.units == "uV"
    assert ds.info.bold.rois == ROIS
    assert ds.info.bold.tr == 2.1
    channels = ds.info.eeg.channels
    assert {"Cz", "Pz", "O1", "O2", "Oz"} <= set(channels)
    assert "EOG1" not in channels
    assert "FPz" not in channels  # EEGLAB only
    assert "Fp1" not in channels  # EDF only
    for key, seconds, start in (
        (RunKey("sub-01", "eeglab"), 30504 / 128, 5.0),
        (RunKey("sub-02", "edf"), 50.0, 2.0),
    ):
        run = ds.read_run(key)
        assert run.eeg.shape == (len(channels), round(seconds * 100))
        n_vol = int((seconds - start) // 2.1) + 1
        np.testing.assert_allclose(run.volume_times, start + 2.1 * np.arange(n_vol))
        mean = run.eeg.mean(axis=0)
        assert np.abs(mean).max() < 1e-4 * run.eeg.std()  # average reference
        attrs = ds.run_attrs(key)
        prov = attrs["provenance"]["ingest"]
        table = real_data / "vu_rest_bold" / f"{key.subject}_scan-01_atlas-difumo64_timeseries.tsv"
        np.testing.assert_allclose(
            run.bold, pd.read_csv(table, sep="\t")[list(ROIS)].to_numpy()[:n_vol].T, rtol=1e-6
        )
        digest = hashlib.sha256(table.read_bytes()).hexdigest()
        assert {"role": "bold", "sha256": digest} in [
            {"role": i["role"], "sha256": i["sha256"]} for i in prov["inputs"]
        ]
        assert prov["config"] == _real_config().to_record()
        assert prov["timing"]["dropped_volumes"] == 575 - n_vol
        steps = [s["step"] for s in prov["eeg"]["steps"]]
        # mains (50 Hz) lies above the 100 Hz output's Nyquist: the resampling filter removes it
        assert steps == ["pick", "resample", "bandpass", "montage", "reference", "units"]
    assert (
        ds.run_attrs(RunKey("sub-01", "eeglab"))["provenance"]["ingest"]["eeg"]["steps"][0][
            "dropped"
        ]["EOG1"]
        == "type eog"
    )
    summary = summarize(ds, verify=True)
    assert all(r["problems"] == [] for r in summary["runs"])


def _good_run(make, folder: Path, name: str, *, n_vol: int = 30, names=None, seed=0) -> FileRun:
    names = names or make.CHANNELS
    data = make.eeg(names, seconds=2.0 * n_vol + 8, seed=seed)
    vhdr = make.brainvision(folder, name, data, names=names, markers=make.onsets(n_vol))
    values = np.random.default_rng(seed).normal(size=(n_vol, 3))
    table = make.table(folder / f"{name}.tsv", values, make.ROI_NAMES)
    return FileRun(eeg=vhdr, bold=table, subject=f"sub-{name}", run="run-1")


def _config(atlas=None, labels=None, **kw) -> IngestConfig:
    bold = {"tr": 2.0}
    if atlas:
        bold.update(atlas=str(atlas), atlas_labels=str(labels))
    return IngestConfig(timing={"markers": ["R128"]}, bold=bold, **kw)


def test_bad_runs_are_reported_and_good_runs_still_land(tmp_path, make):
    CHANNELS, ROI_NAMES = make.CHANNELS, make.ROI_NAMES
    atlas, labels_csv, labels, affine = make.atlas(tmp_path / "atlas")
    d = tmp_path / "in"
    good1 = _good_run(make, d, "good1", seed=1)
    good2 = _good_run(make, d, "good2", seed=2)
    trunc = _good_run(make, d, "trunc", seed=3)
    (d / "trunc.eeg").write_bytes((d / "trunc.eeg").read_bytes()[:-5])
    short = _good_run(make, d, "short", n_vol=30, seed=4)
    make.table(short.bold, np.zeros((27, 3)), ROI_NAMES)  # 27 volumes for 30 markers
    nan = _good_run(make, d, "nan", seed=5)
    values = np.ones((30, 3))
    values[7, 1] = np.nan
    make.table(nan.bold, values, ROI_NAMES)
    no_o2 = _good_run(make, d, "noO2", names=[c for c in CHANNELS if c != "O2"], seed=6)
    bold, _ = make.planted(labels, 30)
    rp = d / "rp_nifti.txt"
    np.savetxt(rp, make.motion(30))
    nifti = FileRun(
        eeg=good1.eeg,
        bold=make.nifti(d / "bold.nii.gz", bold, affine),
        subject="sub-nifti",
        run="run-1",
        confounds=rp,
    )
    wrong_tr = FileRun(
        eeg=good1.eeg,
        bold=make.nifti(d / "tr3.nii.gz", bold, affine, tr=3.0),
        subject="sub-wrongtr",
        run="run-1",
    )
    no_conf = FileRun(
        eeg=good1.eeg,
        bold=nifti.bold,
        subject="sub-noconf",
        run="run-1",
        confounds=d / "rp_missing.txt",
    )
    runs = [good1, trunc, short, nan, no_o2, nifti, wrong_tr, no_conf, good2]
    config = _config(atlas, labels_csv, channels={"bad_channels": ["O2"]})
    said: list[str] = []
    report = ingest(
        FilesLayout(runs), tmp_path / "mixed.zarr", config=config, progress=False, echo=said.append
    )
    status = {o.key: o.status for o in report.outcomes}
    assert status == {
        "sub-good1/run-1": "written",
        "sub-trunc/run-1": "failed",
        "sub-short/run-1": "failed",
        "sub-nan/run-1": "failed",
        "sub-noO2/run-1": "failed",
        "sub-nifti/run-1": "written",
        "sub-wrongtr/run-1": "failed",
        "sub-noconf/run-1": "failed",
        "sub-good2/run-1": "written",
    }
    reasons = {o.key: o.reason for o in report.failed}
    assert reasons["sub-trunc/run-1"].startswith(f"{d / 'trunc.eeg'}: truncated BrainVision")
    assert reasons["sub-short/run-1"].startswith(f"{short.bold}: 27 volumes (fewer than the 30")
    assert reasons["sub-nan/run-1"].startswith(f"{nan.bold}: 1 NaN/missing value(s)")
    assert reasons["sub-noO2/run-1"].startswith(
        f"{no_o2.eeg}: unknown channel(s) in bad_channels: 'O2'"
    )
    assert reasons["sub-wrongtr/run-1"].startswith(f"{wrong_tr.bold}: wrong TR")
    assert reasons["sub-noconf/run-1"] == f"{d / 'rp_missing.txt'}: confounds file not found"
    assert all("\n" not in r for r in reasons.values())
    assert sum("failed" in line for line in said) == 6
    assert "6 failed" in report.summary()

    ds = open_dataset(tmp_path / "mixed.zarr")
    assert [str(k) for k in ds.runs()] == ["sub-good1/run-1", "sub-good2/run-1", "sub-nifti/run-1"]
    assert ds.info.bold.rois == ROI_NAMES
    run = ds.read_run(RunKey("sub-good1", "run-1"))
    assert run.bad_channels == ["O2"]  # flagged, and interpolated (positions: spherical_1005)
    steps = ds.run_attrs(RunKey("sub-good1", "run-1"))["provenance"]["ingest"]["eeg"]["steps"]
    assert {"step": "montage", "name": "spherical_1005", "placed": 12, "unplaced": []} in steps
    np.testing.assert_allclose(run.volume_times, make.onsets(30))
    for key in ds.runs():
        assert ds.verify(key) == []


def test_abort_stops_at_the_first_bad_run(tmp_path, make):
    d = tmp_path / "in"
    good = _good_run(make, d, "a", seed=1)
    bad = _good_run(make, d, "b", seed=2)
    (d / "b.eeg").write_bytes(b"")
    later = _good_run(make, d, "c", seed=3)
    with pytest.raises(IngestError, match=r"b\.eeg: truncated BrainVision data"):
        ingest(
            FilesLayout([good, bad, later]),
            tmp_path / "x.zarr",
            config=_config(),
            on_error="abort",
            progress=False,
        )
    assert not (tmp_path / "x.zarr").exists()  # the check pass failed before any write


def test_volume_times_stay_on_the_eeg_clock_after_crop_and_resampling(tmp_path, make):
    """A spike 0.5 s after volume 5's marker is 0.5 s after volume_times[5] in the store."""
    sfreq, n_vol, first = 1000.0, 20, 30.0
    data = make.eeg(seconds=first + 2.0 * n_vol + 30, sfreq=sfreq, line_hz=None)
    markers = make.onsets(n_vol, first=first)
    spike_t = markers[5] + 0.5
    cz = 11
    data[cz, int(round(spike_t * sfreq))] += 2e-3
    vhdr = make.brainvision(tmp_path, "clock", data, sfreq=sfreq, markers=markers)
    table = make.table(tmp_path / "clock.tsv", np.zeros((n_vol, 3)) + np.arange(3), ("a", "b", "c"))
    config = IngestConfig(
        timing={"markers": ["R128"], "crop_margin_s": 12.0}, eeg={"sfreq": 250}, bold={"tr": 2.0}
    )
    report = ingest(
        FilesLayout([FileRun(eeg=vhdr, bold=table)]),
        tmp_path / "c.zarr",
        config=config,
        progress=False,
    )
    assert report.count("written") == 1, report.lines()
    ds = open_dataset(tmp_path / "c.zarr")
    run = ds.read_run(ds.runs()[0])
    np.testing.assert_allclose(run.volume_times, markers - (first - 12.0))
    assert run.eeg.shape[1] == pytest.approx((2.0 * (n_vol - 1) + 2.0 + 24.0) * 250, abs=2)
    peak_t = np.argmax(np.abs(run.eeg[cz])) / 250
    assert peak_t == pytest.approx(run.volume_times[5] + 0.5, abs=2 / 250)


def test_second_ingest_skips_every_run_without_reading(tmp_path, make, monkeypatch):
    import eeg2bold.ingest.checks as checks
    import eeg2bold.ingest.engine as engine

    d = tmp_path / "in"
    runs = [_good_run(make, d, f"r{i}", seed=i) for i in range(3)]
    out = tmp_path / "resume.zarr"
    calls = {"read": 0, "preprocess": 0}
    real_read, real_pre = engine.read_eeg, engine.preprocess_eeg

    def counting_read(*a, **k):
        calls["read"] += 1
        return real_read(*a, **k)

    def counting_pre(*a, **k):
        calls["preprocess"] += 1
        return real_pre(*a, **k)

    monkeypatch.setattr(engine, "read_eeg", counting_read)  # the data pass
    monkeypatch.setattr(checks, "read_eeg", counting_read)  # the header pass
    monkeypatch.setattr(engine, "preprocess_eeg", counting_pre)
    # an interrupted first ingest: only two runs got in
    first = ingest(FilesLayout(runs[:2]), out, config=_config(), progress=False)
    assert first.count("written") == 2
    assert calls == {"read": 4, "preprocess": 2}  # header pass + data pass per run
    meta = out / "sub-r0" / "run-1" / "eeg" / "zarr.json"
    before = meta.stat().st_mtime_ns
    second = ingest(FilesLayout(runs), out, config=_config(), progress=False)
    assert [o.status for o in second.outcomes] == ["skipped", "skipped", "written"]
    assert calls == {"read": 6, "preprocess": 3}  # only the new run was read
    third = ingest(FilesLayout(runs), out, config=_config(), progress=False)
    assert third.count("skipped") == 3
    assert calls == {"read": 6, "preprocess": 3}
    assert meta.stat().st_mtime_ns == before
    ds = open_dataset(out)
    assert all(ds.verify(k) == [] for k in ds.runs())

    # changed input: re-processed, and refused unless --overwrite
    make.table(runs[0].bold, np.ones((30, 3)), ("Alpha", "Beta", "Gamma"))
    changed = ingest(FilesLayout(runs), out, config=_config(), progress=False)
    assert changed.failed[0].key == "sub-r0/run-1"
    assert "already exists with different content" in changed.failed[0].reason
    replaced = ingest(FilesLayout(runs), out, config=_config(), progress=False, overwrite=True)
    assert [o.status for o in replaced.outcomes] == ["replaced", "skipped", "skipped"]

    # other options into the same store are refused, naming the difference
    with pytest.raises(IngestError, match=r"other options \(eeg.sfreq: 250.0 -> 200.0"):
        ingest(FilesLayout(runs), out, config=_config(eeg={"sfreq": 200}), progress=False)


def test_stores_not_made_by_ingest_are_not_mixed(tmp_path, make):
    from eeg2bold.simulate import SimulationConfig
    from eeg2bold.simulate.write import simulate_to_store

    out = tmp_path / "sim.zarr"
    simulate_to_store(
        out, SimulationConfig(subjects=1, minutes=0.5, channels=4, rois=2), progress=False
    )
    run = _good_run(make, tmp_path / "in", "x")
    with pytest.raises(IngestError, match=r"sim\.zarr: the store was not made by ingest"):
        ingest(FilesLayout([run]), out, config=_config(), progress=False)


def test_runs_added_later_must_hold_the_stores_channels(tmp_path, make):
    d = tmp_path / "in"
    out = tmp_path / "grow.zarr"
    first = _good_run(make, d, "first", seed=1)
    assert ingest(FilesLayout([first]), out, config=_config(), progress=False).count("written")
    lacking = _good_run(make, d, "lacking", names=make.CHANNELS[:-1], seed=2)
    extra = _good_run(make, d, "extra", names=(*make.CHANNELS, "Pz"), seed=3)
    report = ingest(FilesLayout([first, lacking, extra]), out, config=_config(), progress=False)
    status = {o.key: o.status for o in report.outcomes}
    assert status == {
        "sub-first/run-1": "skipped",
        "sub-lacking/run-1": "failed",
        "sub-extra/run-1": "written",
    }
    assert report.failed[0].reason == (
        f"{lacking.eeg}: lacks channels ['{make.CHANNELS[-1]}'] that the dataset has"
    )
    ds = open_dataset(out)
    assert ds.info.eeg.channels == make.CHANNELS
    assert ds.read_run(RunKey("sub-extra", "run-1")).eeg.shape[0] == len(make.CHANNELS)

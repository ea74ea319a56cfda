"""Dataset layouts end to end: CWL (EEGLAB + normalised EPI + SPM motion), BIDS (mne-bids +
fMRIPrep derivatives) and NATVIEW (BrainVision + ROI CSV), written here and ingested."""

from __future__ import annotations

import json
import zlib

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from eeg2bold.ingest import (
    BIDSLayout,
    CWLLayout,
    IngestConfig,
    NatviewLayout,
    ingest,
)
from eeg2bold.storage import RunKey, open_dataset

CWL_CHANNELS = (
    "Fp1",
    "Fp2",
    "F3",
    "F4",
    "C3",
    "C4",
    "P3",
    "P4",
    "O1",
    "O2",
    "Fz",
    "Cz",
    "EOG",
    "ECG",
    "CWL1",
    "CWL2",
)


def _atlas_config(atlas, labels, **timing):
    return IngestConfig(
        eeg={"sfreq": 125},
        timing=timing or {"markers": ["mri"]},
        bold={"atlas": str(atlas), "atlas_labels": str(labels), "tr": 2.0},
    )


@pytest.fixture
def cwl_tree(tmp_path, make):
    """Three subjects: two 4-D runs; one run as 3-D volumes; EEG and EPI counts that differ."""
    root = tmp_path / "cwl"
    atlas, labels_csv, labels, affine = make.atlas(tmp_path / "atlas")
    signals = {}

    def subject(name, runs, *, series3d=False, extra_set=False):
        base = root / name / "CWL_Data"
        for k, (run, n_vol) in enumerate(runs):
            seed = zlib.crc32(f"{name}/{run}".encode()) % 1000  # the same every run
            data = make.eeg(CWL_CHANNELS, seconds=2.0 * n_vol + 10, seed=seed)
            make.eeglab(
                base / "eeg" / "in-scan" / f"{run}.set",
                data,
                names=CWL_CHANNELS,
                markers=make.onsets(n_vol),
                marker="mri",
            )
            bold, signal = make.planted(labels, n_vol, seed=seed, roi=1 + k % 3)
            motion_values = make.motion(n_vol, seed=seed)
            signals[(name, run)] = (make.cleaned(signal, motion_values), 1 + k % 3)
            epi = base / "mri" / "epi_normalized"
            if series3d:
                for t in range(n_vol):
                    make.nifti(epi / f"wr{run}_{t + 1:04d}.nii", bold[..., t], affine)
            else:
                make.nifti(epi / f"wr{run}.nii", bold, affine)
            motion = base / "mri" / "epi_motionparams"
            motion.mkdir(parents=True, exist_ok=True)
            np.savetxt(motion / f"rp_{run}.txt", motion_values)
        if extra_set:
            make.eeglab(
                base / "eeg" / "in-scan" / "zz_extra.set",
                make.eeg(CWL_CHANNELS, seconds=20),
                names=CWL_CHANNELS,
            )

    subject("subj01", [("eyesopen", 25), ("eyesclosed", 24)])
    subject("subj02", [("rest", 22)], series3d=True)
    subject("subj03", [("rest", 22)], extra_set=True)
    (root / "notes").mkdir()  # not a subject folder: ignored
    return root, atlas, labels_csv, signals


def test_cwl_layout_pairs_runs_and_reports_what_it_cannot(cwl_tree):
    root, *_ = cwl_tree
    specs = {s.key: s for s in CWLLayout(root).specs()}
    assert sorted(specs) == [
        "subj01/eyesclosed",
        "subj01/eyesopen",
        "subj02/rest",
        "subj03/rest",
        "subj03/zz_extra",
    ]
    eo = specs["subj01/eyesopen"]
    assert eo.bold.paths[0].name == "wreyesopen.nii"
    assert eo.bold.confounds.name == "rp_eyesopen.txt"
    assert len(specs["subj02/rest"].bold.paths) == 22  # 3-D volumes form one series
    assert "2 in-scan EEG file(s) but 1 BOLD series" in specs["subj03/rest"].problem


def test_cwl_layout_ingests(cwl_tree, tmp_path):
    root, atlas, labels_csv, signals = cwl_tree
    out = tmp_path / "cwl.zarr"
    report = ingest(CWLLayout(root), out, config=_atlas_config(atlas, labels_csv), progress=False)
    status = {o.key: o.status for o in report.outcomes}
    assert status == {
        "subj01/eyesclosed": "written",
        "subj01/eyesopen": "written",
        "subj02/rest": "written",
        "subj03/rest": "failed",
        "subj03/zz_extra": "failed",
    }
    ds = open_dataset(out)
    assert ds.info.eeg.channels == CWL_CHANNELS[:12]  # EOG, ECG and CWL dropped by default
    assert ds.info.bold.rois == ("Alpha", "Beta", "Gamma")
    for (subject, run), (signal, roi) in signals.items():
        if subject == "subj03":
            continue
        data = ds.read_run(RunKey(subject, run))
        np.testing.assert_allclose(
            data.volume_times, 4.0 + 2.0 * np.arange(len(signal)), atol=1 / 250
        )
        r = np.corrcoef(data.bold[roi - 1], signal)[0, 1]
        assert r > 0.95, (subject, run, r)
        prov = ds.run_attrs(RunKey(subject, run))["provenance"]["ingest"]
        assert prov["bold"]["confounds"]["motion"] is True
        assert prov["eeg"]["channel_rules"]["dropped"]["CWL1"] == "type cwl"


def test_cwl_channels_can_be_kept(cwl_tree, tmp_path):
    root, atlas, labels_csv, _ = cwl_tree
    config = _atlas_config(atlas, labels_csv).model_copy(
        update={"channels": IngestConfig(channels={"keep_types": ["cwl", "eog"]}).channels}
    )
    report = ingest(CWLLayout(root), tmp_path / "keep.zarr", config=config, progress=False)
    assert report.count("written") == 3
    channels = open_dataset(tmp_path / "keep.zarr").info.eeg.channels
    assert channels == (*CWL_CHANNELS[:13], "CWL1", "CWL2")


def test_bids_layout_with_fmriprep_derivatives(tmp_path, make):
    tree = make.bids(tmp_path / "bids")
    # a bad channel marked in channels.tsv reaches the store
    channels_tsv = tree.root / "sub-01" / "eeg" / "sub-01_task-rest_run-1_channels.tsv"
    table = pd.read_csv(channels_tsv, sep="\t")
    table.loc[table["name"] == "P4", "status"] = "bad"
    table.to_csv(channels_tsv, sep="\t", index=False, na_rep="n/a")
    layout = BIDSLayout(tree.root)
    specs = list(layout.specs())
    assert [s.key for s in specs] == ["sub-01/task-rest_run-1", "sub-02/task-rest_run-1"]
    assert specs[0].bold.tr == 2.0  # from the JSON sidecar
    assert specs[0].bold.confounds.name == "sub-01_task-rest_run-1_desc-confounds_timeseries.tsv"
    config = IngestConfig(
        eeg={"sfreq": 125},
        bold={"atlas": str(tree.atlas), "atlas_labels": str(tree.labels_csv)},
    )  # markers R128 (default), TR from the sidecars
    out = tmp_path / "bids.zarr"
    report = ingest(layout, out, config=config, progress=False)
    assert report.count("written") == 2, report.lines()
    ds = open_dataset(out)
    assert ds.info.bold.tr == 2.0
    for subject, signal in tree.signals.items():
        key = RunKey(subject, "task-rest_run-1")
        run = ds.read_run(key)
        assert run.task == "rest"
        assert np.corrcoef(run.bold[0], signal)[0, 1] > 0.95
        inputs = {
            i["path"].rsplit("_", 1)[-1]
            for i in ds.run_attrs(key)["provenance"]["ingest"]["inputs"]
        }
        assert {"channels.tsv", "events.tsv", "eeg.vhdr", "timeseries.tsv"} <= inputs
    assert ds.read_run(RunKey("sub-01", "task-rest_run-1")).bad_channels == ["P4"]
    assert ds.read_run(RunKey("sub-02", "task-rest_run-1")).bad_channels == []


def test_bids_missing_confounds_and_ambiguous_spaces(tmp_path, make):
    tree = make.bids(tmp_path / "bids")
    func = tree.root / "derivatives" / "fmriprep" / "sub-02" / "func"
    conf = func / "sub-02_task-rest_run-1_desc-confounds_timeseries.tsv"
    conf.unlink()
    config = IngestConfig(bold={"atlas": str(tree.atlas), "atlas_labels": str(tree.labels_csv)})
    report = ingest(BIDSLayout(tree.root), tmp_path / "b.zarr", config=config, progress=False)
    assert report.count("written") == 1
    assert report.failed[0].reason == f"{conf}: confounds file not found"
    src = func.parent.parent / "sub-01" / "func"
    bold = src / "sub-01_task-rest_run-1_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz"
    nib.save(nib.load(bold), src / "sub-01_task-rest_run-1_space-T1w_desc-preproc_bold.nii.gz")
    problem = next(BIDSLayout(tree.root).specs()).problem
    assert "several preprocessed BOLD files" in problem
    assert "--space" in problem
    spec = next(BIDSLayout(tree.root, space="T1w").specs())
    assert spec.problem is None
    assert spec.bold.tr is None  # no sidecar for this space: the TR must then be given
    (src / "sub-01_task-rest_run-1_space-T1w_desc-preproc_bold.json").write_text(
        json.dumps({"RepetitionTime": 2.5})
    )
    assert next(BIDSLayout(tree.root, space="T1w").specs()).bold.tr == 2.5


def _natview_tree(root, make, *, runs, tstart=3.5, n_vol=25):
    signals = {}
    for k, (ses, task) in enumerate(runs):
        prefix = f"sub-01_ses-{ses}_task-{task}_run-01"
        data = make.eeg(seconds=tstart + 2.1 * n_vol + 5, seed=k)
        make.brainvision(root / "sub-01" / f"ses-{ses}" / "eeg", f"{prefix}_eeg", data)
        values = np.random.default_rng(k).normal(size=(n_vol, 3))
        make.table(
            root / "derivatives" / "roi" / f"{prefix}_rois.csv",
            values,
            ("Thal_L", "Thal_R", "Put_L"),
            Nvol=n_vol,
            Tstart=tstart,
        )
        signals[f"ses-{ses}_task-{task}_run-01"] = values
    return signals


def test_natview_layout(tmp_path, make):
    root = tmp_path / "natview"
    signals = _natview_tree(root, make, runs=[("01", "checker"), ("02", "rest")])
    make.brainvision(
        root / "sub-02" / "ses-01" / "eeg",
        "sub-02_ses-01_task-rest_run-01_eeg",
        make.eeg(seconds=20),
    )  # no ROI table for this one
    config = IngestConfig(timing={"source": "start"}, bold={"tr": 2.1})
    report = ingest(NatviewLayout(root), tmp_path / "nv.zarr", config=config, progress=False)
    status = {o.key: o.status for o in report.outcomes}
    assert status == {
        "sub-01/ses-01_task-checker_run-01": "written",
        "sub-01/ses-02_task-rest_run-01": "written",
        "sub-02/ses-01_task-rest_run-01": "failed",
    }
    assert "no ROI table sub-02_ses-01_task-rest_run-01*.csv" in report.failed[0].reason
    ds = open_dataset(tmp_path / "nv.zarr")
    assert ds.info.bold.rois == ("Thal_L", "Thal_R", "Put_L")  # Nvol/Tstart are not ROIs
    for run_name, values in signals.items():
        run = ds.read_run(RunKey("sub-01", run_name))
        np.testing.assert_allclose(run.volume_times, 3.5 + 2.1 * np.arange(25))
        np.testing.assert_allclose(run.bold, values.T, rtol=1e-6)
        assert run.session == run_name[4:6]


def test_natview_volume_count_must_match(tmp_path, make):
    root = tmp_path / "natview"
    _natview_tree(root, make, runs=[("01", "rest")])
    table = root / "derivatives" / "roi" / "sub-01_ses-01_task-rest_run-01_rois.csv"
    frame = pd.read_csv(table)
    frame["Nvol"] = 30
    frame.to_csv(table, index=False)
    config = IngestConfig(timing={"source": "start"}, bold={"tr": 2.1})
    report = ingest(NatviewLayout(root), tmp_path / "nv.zarr", config=config, progress=False)
    assert report.failed[0].reason == f"{table}: Nvol says 30 volumes but the table has 25 rows"

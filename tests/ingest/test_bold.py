"""Atlases and BOLD: the Harvard-Oxford builder, ROI extraction with a planted signal,
TR checks, confounds, and region tables."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from eeg2bold.ingest import BOLDConfig, BOLDSource, IngestError
from eeg2bold.ingest.atlas import build_label_atlas, harvard_oxford_subcortical, load_atlas
from eeg2bold.ingest.bold import extract_bold, load_confounds, probe_bold, read_region_table


def test_label_builder_on_synthetic_probability_maps():
    maps = np.zeros((4, 1, 1, 3), np.uint8)
    maps[0, 0, 0] = [60, 30, 10]  # region 1 wins
    maps[1, 0, 0] = [20, 21, 5]  # region 2 wins but below a 25 threshold
    maps[2, 0, 0] = [0, 40, 40]  # tie: the first map wins
    maps[3, 0, 0] = [0, 0, 0]  # background
    img = nib.Nifti1Image(maps, np.eye(4))
    labels, names = build_label_atlas(img, names=["a", "b", "c"], threshold=25)
    assert np.asarray(labels.dataobj)[:, 0, 0].tolist() == [1, 0, 2, 0]
    assert names == {1: "a", 2: "b", 3: "c"}
    loose, _ = build_label_atlas(img, names=["a", "b", "c"], threshold=0)
    assert np.asarray(loose.dataobj)[:, 0, 0].tolist() == [1, 2, 2, 0]
    with pytest.raises(IngestError, match="expected 2 probability maps"):
        build_label_atlas(img, names=["a", "b"], threshold=25)


def test_harvard_oxford_subcortical_is_built_offline():
    atlas = harvard_oxford_subcortical(threshold=25)
    assert len(atlas.labels) == 17
    for name in (
        "Left_Thalamus",
        "Right_Putamen",
        "Left_Hippocampus",
        "Brain-Stem",
        "Left_Lateral_Ventricle",
    ):
        assert name in atlas.names
    data = np.asarray(atlas.image.dataobj)
    assert data.shape == (151, 194, 159)
    strict = np.asarray(harvard_oxford_subcortical(threshold=75).image.dataobj)
    assert 0 < (strict > 0).sum() < (data > 0).sum()
    # MNI (-12, -18, 8) lies in the left thalamus
    ijk = np.round(np.linalg.inv(atlas.image.affine) @ [-12, -18, 8, 1]).astype(int)[:3]
    assert atlas.labels[int(data[tuple(ijk)])] == "Left_Thalamus"


def _mni_grid(voxel=4.0):
    affine = np.diag([voxel, voxel, voxel, 1.0])
    affine[:3, 3] = [-90, -126, -72]
    shape = (int(182 / voxel), int(218 / voxel), int(182 / voxel))
    return affine, shape


def test_planted_signal_comes_back_in_its_harvard_oxford_roi(tmp_path, make):
    from nilearn.image import resample_img

    atlas = harvard_oxford_subcortical(threshold=25)
    affine, shape = _mni_grid(4.0)
    grid = resample_img(
        atlas.image,
        target_affine=affine,
        target_shape=shape,
        interpolation="nearest",
        force_resample=True,
        copy_header=True,
    )
    labels = np.asarray(grid.dataobj)
    thalamus = {v: k for k, v in atlas.labels.items()}["Left_Thalamus"]
    n_vol = 60
    data, signal = make.planted(labels, n_vol, roi=thalamus, noise=0.5)
    bold = make.nifti(tmp_path / "bold.nii.gz", data, affine, tr=2.0)
    rp = tmp_path / "rp_bold.txt"
    np.savetxt(rp, make.motion(n_vol))
    source = BOLDSource(kind="nifti", paths=(bold,), confounds=rp, confounds_kind="spm")
    rois = ("Left_Thalamus", "Right_Thalamus", "Left_Putamen", "Right_Caudate", "Brain-Stem")
    out = extract_bold(
        source, rois=rois, tr=2.0, config=BOLDConfig(), volumes=(0, n_vol), atlas=atlas
    )
    assert out.data.shape == (5, n_vol)
    r = [np.corrcoef(row, signal)[0, 1] for row in out.data]
    assert r[0] > 0.9, r
    assert max(abs(x) for x in r[1:]) < 0.5, r
    np.testing.assert_allclose(out.data.mean(axis=1), 0, atol=1e-5)  # z-scored
    assert out.record["confounds"]["motion"] is True
    assert out.record["masker"]["t_r"] == 2.0


def test_user_atlas_labels_and_volume_subset(tmp_path, make):
    atlas_path, labels_csv, labels, affine = make.atlas(tmp_path)
    atlas = load_atlas(BOLDConfig(atlas=str(atlas_path), atlas_labels=str(labels_csv)))
    assert atlas.names == ("Alpha", "Beta", "Gamma")
    data, signal = make.planted(labels, 40, roi=2)
    bold = make.nifti(tmp_path / "b.nii.gz", data, affine)
    out = extract_bold(
        BOLDSource(kind="nifti", paths=(bold,)),
        rois=("Gamma", "Beta"),
        tr=2.0,
        config=BOLDConfig(motion=False),
        volumes=(5, 40),
        atlas=atlas,
    )
    assert out.rois == ("Gamma", "Beta")
    assert out.data.shape == (2, 35)
    assert np.corrcoef(out.data[1], signal[5:])[0, 1] > 0.9
    txt = tmp_path / "names.txt"
    txt.write_text("One\nTwo\nThree\n")
    assert load_atlas(BOLDConfig(atlas=str(atlas_path), atlas_labels=str(txt))).names == (
        "One",
        "Two",
        "Three",
    )
    with pytest.raises(IngestError, match="needs its labels"):
        load_atlas(BOLDConfig(atlas=str(atlas_path)))


def test_global_signal_regression_removes_what_all_voxels_share(tmp_path, make):
    atlas_path, labels_csv, labels, affine = make.atlas(tmp_path)
    atlas = load_atlas(BOLDConfig(atlas=str(atlas_path), atlas_labels=str(labels_csv)))
    data, local = make.planted(labels, 60, roi=2)
    shared = np.random.default_rng(5).normal(size=60)
    bold = make.nifti(tmp_path / "g.nii.gz", data + shared, affine)

    def run(gs: bool) -> np.ndarray:
        return extract_bold(
            BOLDSource(kind="nifti", paths=(bold,)),
            rois=("Alpha", "Beta"),
            tr=2.0,
            config=BOLDConfig(motion=False, global_signal=gs),
            volumes=(0, 60),
            atlas=atlas,
        ).data

    plain, cleaned = run(False), run(True)
    assert np.corrcoef(plain[0], shared)[0, 1] > 0.9
    assert abs(np.corrcoef(cleaned[0], shared)[0, 1]) < 0.3
    assert np.corrcoef(cleaned[1], local)[0, 1] > 0.8


def test_nifti_tr_is_checked_against_the_given_tr(tmp_path, make):
    _, _, labels, affine = make.atlas(tmp_path)
    data, _ = make.planted(labels, 20)
    bold = make.nifti(tmp_path / "b.nii.gz", data, affine, tr=3.0)
    source = BOLDSource(kind="nifti", paths=(bold,))
    with pytest.raises(IngestError) as err:
        probe_bold(source, tr=2.0)
    assert str(err.value) == (
        f"{bold}: wrong TR: the NIfTI header says 3 s (pixdim[4]), but the TR given is 2 s"
    )
    assert probe_bold(source, tr=3.0).n_volumes == 20
    img = nib.load(bold)
    img.header.set_xyzt_units("mm", "msec")
    img.header["pixdim"][4] = 2000.0
    nib.save(img, tmp_path / "ms.nii.gz")
    assert probe_bold(BOLDSource(kind="nifti", paths=(tmp_path / "ms.nii.gz",)), tr=2.0)
    img.header["pixdim"][4] = 0.0
    nib.save(img, tmp_path / "unset.nii.gz")
    header = probe_bold(BOLDSource(kind="nifti", paths=(tmp_path / "unset.nii.gz",)), tr=2.0)
    assert header.record["header_tr"] is None  # no TR in the header: the given one is used
    nib.save(nib.Nifti1Image(data[..., 0].astype(np.float32), affine), tmp_path / "3d.nii.gz")
    with pytest.raises(IngestError, match="expected a 4-D image"):
        probe_bold(BOLDSource(kind="nifti", paths=(tmp_path / "3d.nii.gz",)), tr=2.0)


def test_confounds_files(tmp_path):
    tsv = tmp_path / "conf.tsv"
    frame = pd.DataFrame(
        np.ones((5, 6)), columns=["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
    )
    frame["framewise_displacement"] = [np.nan, 1, 1, 1, 1]
    frame.to_csv(tsv, sep="\t", index=False, na_rep="n/a")
    loaded = load_confounds(tsv, kind="fmriprep", n_volumes=5)
    assert loaded["framewise_displacement"].iloc[0] == 0.0  # n/a -> 0
    with pytest.raises(IngestError, match=r"conf.tsv: confounds have 5 rows but the image has 6"):
        load_confounds(tsv, kind="fmriprep", n_volumes=6)
    with pytest.raises(IngestError, match=r"rp_missing.txt: confounds file not found"):
        load_confounds(tmp_path / "rp_missing.txt", kind="spm", n_volumes=5)
    rp = tmp_path / "rp_x.txt"
    np.savetxt(rp, np.ones((5, 4)))
    with pytest.raises(IngestError, match="expected 6 motion columns"):
        load_confounds(rp, kind="spm", n_volumes=5)


def test_region_table_round_trip_and_refusals(real_data, tmp_path):
    path = real_data / "vu_rest_bold" / "sub-01_scan-01_atlas-difumo64_timeseries.tsv"
    table = read_region_table(path)
    frame = pd.read_csv(path, sep="\t")
    assert table.names == tuple(frame.columns)
    assert "Thalamus" in table.names
    assert table.values.shape == (575, 66)
    out = extract_bold(
        BOLDSource(kind="table", paths=(path,)),
        rois=("Thalamus", "Putamen"),
        tr=2.1,
        config=BOLDConfig(),
        volumes=(10, 110),
    )
    np.testing.assert_allclose(
        out.data, frame[["Thalamus", "Putamen"]].to_numpy()[10:110].T, rtol=1e-6
    )


def test_region_table_problems_are_named(tmp_path):
    bad = tmp_path / "nan.tsv"
    pd.DataFrame({"A": [1.0, 2.0, 3.0], "B": [1.0, np.nan, 3.0]}).to_csv(bad, sep="\t", index=False)
    with pytest.raises(IngestError) as err:
        read_region_table(bad)
    assert str(err.value) == (
        f"{bad}: 1 NaN/missing value(s) in the region table (first: column 'B', data row 2)"
    )
    noheader = tmp_path / "noheader.csv"
    noheader.write_text("1.0,2.0\n3.0,4.0\n5.0,6.0\n")
    with pytest.raises(IngestError, match="no header row"):
        read_region_table(noheader)
    text = tmp_path / "text.csv"
    text.write_text("A,B\n1,x\n2,y\n")
    with pytest.raises(IngestError, match="column 'B' is not numeric"):
        read_region_table(text)
    twice = tmp_path / "twice.tsv"
    twice.write_text("Thal\tCaud\tThal\n1\t2\t3\n4\t5\t6\n")  # pandas would rename Thal.1
    with pytest.raises(IngestError) as err:
        read_region_table(twice)
    assert str(err.value) == f"{twice}: duplicate column name(s) in the region table: Thal"
    meta = tmp_path / "meta.csv"
    meta.write_text("A,Nvol,Tstart\n1,3,4.5\n2,3,4.5\n3,3,4.5\n")
    table = read_region_table(meta, metadata_columns=("Nvol", "Tstart"))
    assert table.names == ("A",)
    assert table.metadata == {"Nvol": 3.0, "Tstart": 4.5}

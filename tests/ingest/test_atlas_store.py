"""Atlases kept with the dataset: the lateralised Harvard-Oxford cortical atlas, ROI centres
of mass in world mm, the label image stored once in the store (re-ingest leaves it alone, a
different atlas is refused), and run listings that never mistake it for a subject."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import zarr

from eeg2bold.errors import DatasetError, RunValidationError
from eeg2bold.ingest import BOLDConfig, FileRun, FilesLayout, IngestConfig, IngestError, ingest
from eeg2bold.ingest.atlas import (
    centres_of_mass,
    harvard_oxford_cortical,
    harvard_oxford_subcortical,
    load_atlas,
    restrict_to_hemispheres,
)
from eeg2bold.ingest.config import HARVARD_OXFORD_CORTICAL, HARVARD_OXFORD_SUBCORTICAL
from eeg2bold.storage import create_dataset, open_dataset
from eeg2bold.storage.summary import summarize

N_VOL = 20
# centres of mass of conftest.small_atlas (4 mm voxels, origin at voxel 0): mean index * 4
SMALL_ATLAS_CENTRES = ((8.0, 8.0, 8.0), (20.0, 20.0, 20.0), (8.0, 22.0, 20.0))


def test_cortical_atlas_has_96_regions_each_in_its_own_hemisphere():
    atlas = harvard_oxford_cortical(threshold=25)
    assert len(atlas.labels) == 96
    left = [n for n in atlas.names if n.startswith("Left_")]
    right = [n for n in atlas.names if n.startswith("Right_")]
    assert len(left) == len(right) == 48
    assert sorted(n.removeprefix("Left_") for n in left) == sorted(
        n.removeprefix("Right_") for n in right
    )
    data = np.asarray(atlas.image.dataobj)
    sub = harvard_oxford_subcortical(threshold=25).image
    assert data.shape == sub.shape and np.array_equal(atlas.image.affine, sub.affine)
    value = {name: v for v, name in atlas.labels.items()}
    is_left = np.isin(data, [value[n] for n in left])
    is_right = np.isin(data, [value[n] for n in right])
    x = nib.affines.apply_affine(atlas.image.affine, np.argwhere(is_left | is_right))[:, 0]
    assert (x[is_left[is_left | is_right]] <= 0).all()  # cut at the midline
    assert (x[is_right[is_left | is_right]] >= 0).all()
    centres = atlas.centres
    assert all(centres[n][0] < -2 for n in left) and all(centres[n][0] > 2 for n in right)
    assert centres["Left_Occipital_Pole"][1] < -80 < 40 < centres["Left_Frontal_Pole"][1]
    assert centres["Right_Precentral_Gyrus"][2] > 35 > 0 > centres["Right_Temporal_Pole"][2]
    # MNI (-12, -18, 8) is the left thalamus, outside the cortex
    ijk = np.round(np.linalg.inv(atlas.image.affine) @ [-12, -18, 8, 1]).astype(int)[:3]
    assert data[tuple(ijk)] == 0


def test_builtin_atlas_names_take_either_spelling():
    for spelling in ("harvard_oxford_cortical", "Harvard-Oxford-Cortical", HARVARD_OXFORD_CORTICAL):
        config = BOLDConfig(atlas=spelling)
        assert config.atlas == HARVARD_OXFORD_CORTICAL
    assert load_atlas(BOLDConfig(atlas="harvard_oxford_cortical")) is harvard_oxford_cortical()
    assert BOLDConfig().atlas == BOLDConfig(atlas="harvard_oxford_subcortical").atlas
    assert BOLDConfig().atlas == HARVARD_OXFORD_SUBCORTICAL == "harvard-oxford-subcortical"
    assert len(load_atlas(BOLDConfig()).labels) == 17


def test_hemisphere_cut_follows_world_x_through_the_affine():
    maps = np.full((4, 1, 2, 3), 50, np.uint8)
    affine = np.array([[0, 0, 2, -1], [-3, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]], float)
    restrict_to_hemispheres(maps, affine=affine, names=["Left_a", "Right_a", "Brain-Stem"])
    # world x = 2 k - 1: k = 0 is x = -1 (left), k = 1 is x = +1 (right), whatever i is
    assert (maps[:, :, 0, 0] == 50).all() and (maps[:, :, 1, 0] == 0).all()
    assert (maps[:, :, 0, 1] == 0).all() and (maps[:, :, 1, 1] == 50).all()
    assert (maps[..., 2] == 50).all()


def test_centres_of_mass_in_world_mm_through_a_rotated_affine():
    labels = np.zeros((6, 8, 10), np.int32)
    labels[1:3, 3:5, 5:7] = 4  # 2x2x2 cube: mean voxel (1.5, 3.5, 5.5)
    labels[5, 0, 9] = 7  # one voxel
    labels[0, 7, 0] = labels[4, 7, 0] = 9  # two voxels: mean (2, 7, 0)
    # x = -2 j + 10, y = 3 i - 5, z = 1.5 k + 7 (axes swapped, flipped, scaled, shifted)
    affine = np.array([[0, -2, 0, 10], [3, 0, 0, -5], [0, 0, 1.5, 7], [0, 0, 0, 1]], float)
    found = centres_of_mass(nib.Nifti1Image(labels, affine), [4, 7, 9, 12])
    assert sorted(found) == [4, 7, 9]  # 12 has no voxel
    np.testing.assert_allclose(found[4], (3.0, -0.5, 15.25))
    np.testing.assert_allclose(found[7], (10.0, 10.0, 20.5))
    np.testing.assert_allclose(found[9], (-4.0, 1.0, 7.0))
    assert sorted(centres_of_mass(nib.Nifti1Image(labels, affine), [7])) == [7]


def _nifti_run(make, folder: Path, name: str, labels: np.ndarray, affine, *, seed: int) -> FileRun:
    eeg = make.eeg(seconds=2.0 * N_VOL + 8, seed=seed)
    vhdr = make.brainvision(folder, name, eeg, markers=make.onsets(N_VOL))
    bold, _ = make.planted(labels, N_VOL, seed=seed)
    nifti = make.nifti(folder / f"{name}_bold.nii.gz", bold, affine)
    return FileRun(eeg=vhdr, bold=nifti, subject=f"sub-{name}", run="run-1")


def _atlas_config(atlas: Path, labels_csv: Path) -> IngestConfig:
    return IngestConfig(
        timing={"markers": ["R128"]},
        bold={"tr": 2.0, "atlas": str(atlas), "atlas_labels": str(labels_csv), "motion": False},
    )


@pytest.fixture
def stored(tmp_path, make):
    """A store ingested from one NIfTI run through conftest's 3-region label atlas."""
    atlas, labels_csv, labels, affine = make.atlas(tmp_path / "atlas")
    run = _nifti_run(make, tmp_path / "in", "a", labels, affine, seed=1)
    out = tmp_path / "a.zarr"
    config = _atlas_config(atlas, labels_csv)
    report = ingest(FilesLayout([run]), out, config=config, progress=False)
    assert report.count("written") == 1, report.lines()
    return SimpleNamespace(out=out, atlas=atlas, labels=labels, affine=affine, config=config)


def test_ingest_keeps_the_atlas_and_each_roi_centre(stored):
    out, atlas_path, labels, affine = stored.out, stored.atlas, stored.labels, stored.affine
    ds = open_dataset(out)
    assert ds.info.bold.rois == ("Alpha", "Beta", "Gamma")
    np.testing.assert_allclose(ds.info.bold.roi_mni, SMALL_ATLAS_CENTRES)
    kept = ds.atlas()
    assert kept is not None
    given: nib.Nifti1Image = nib.load(atlas_path)  # type: ignore[assignment]
    image = kept.image
    assert isinstance(image, nib.Nifti1Image)
    assert np.array_equal(np.asarray(image.dataobj), np.asarray(given.dataobj))
    assert np.array_equal(np.asarray(image.dataobj), labels)
    assert np.array_equal(image.affine, given.affine) and np.array_equal(image.affine, affine)
    assert kept.labels == {1: "Alpha", 2: "Beta", 3: "Gamma"}
    assert kept.name == ds.info.bold.atlas == "atlas.nii.gz"
    group = zarr.open_group(out / "atlas", mode="r")
    assert group.attrs["labels_sha256"] == kept.labels_sha256
    assert group.attrs["affine"] == affine.tolist()
    assert group.attrs["label_names"] == {"1": "Alpha", "2": "Beta", "3": "Gamma"}
    assert group.attrs["record"] == {"name": "atlas.nii.gz", "labels": "atlas_labels.csv"}


def test_region_tables_keep_no_atlas_and_no_centres(tmp_path, make):
    eeg = make.eeg(seconds=2.0 * N_VOL + 8)
    vhdr = make.brainvision(tmp_path, "t", eeg, markers=make.onsets(N_VOL))
    table = make.table(tmp_path / "t.tsv", np.random.default_rng(0).normal(size=(N_VOL, 3)), "xyz")
    out = tmp_path / "t.zarr"
    config = IngestConfig(timing={"markers": ["R128"]}, bold={"tr": 2.0})
    ingest(FilesLayout([FileRun(eeg=vhdr, bold=table)]), out, config=config, progress=False)
    ds = open_dataset(out)
    assert ds.info.bold.roi_mni is None and ds.atlas() is None
    assert not (out / "atlas").exists()


def test_a_second_ingest_with_the_same_atlas_leaves_it_as_it_was(stored, tmp_path, make):
    out, labels, affine, config = stored.out, stored.labels, stored.affine, stored.config
    before = {p: os.stat(p) for p in (out / "atlas").rglob("*")}
    first = _nifti_run(make, tmp_path / "in", "a", labels, affine, seed=1)
    second = _nifti_run(make, tmp_path / "in", "b", labels, affine, seed=2)
    report = ingest(FilesLayout([first, second]), out, config=config, progress=False)
    assert [o.status for o in report.outcomes] == ["skipped", "written"], report.lines()
    after = {p: os.stat(p) for p in (out / "atlas").rglob("*")}
    assert sorted(after) == sorted(before)
    assert all(
        (after[p].st_ino, after[p].st_mtime_ns) == (before[p].st_ino, before[p].st_mtime_ns)
        for p in before
    )
    ds = create_dataset(out, open_dataset(out).info)
    atlas = load_atlas(config.bold)
    assert ds.write_atlas(image=atlas.image, labels=atlas.labels, name=atlas.name) == "unchanged"
    assert not (out / ".eeg2bold-tmp").exists()


def test_a_different_atlas_is_refused_in_one_line_naming_the_store(stored, tmp_path, make):
    out, labels, affine, config = stored.out, stored.labels, stored.affine, stored.config
    kept = open_dataset(out).atlas()
    assert kept is not None
    moved = labels.copy()
    moved[moved == 3] = 0
    moved[1:4, 5:7, 0:2] = 3  # Gamma elsewhere: same file name and options, other atlas
    nib.save(nib.Nifti1Image(moved, affine), stored.atlas)
    run = _nifti_run(make, tmp_path / "in", "c", moved, affine, seed=3)
    with pytest.raises(IngestError) as caught:
        ingest(FilesLayout([run]), out, config=config, progress=False)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{out}: the store already holds atlas 'atlas.nii.gz'")
    ds = open_dataset(out)
    assert [str(k) for k in ds.runs()] == ["sub-a/run-1"]  # nothing was written
    after = ds.atlas()
    assert after is not None and after.sha256 == kept.sha256
    writer = create_dataset(out, ds.info)
    with pytest.raises(DatasetError, match=r"already holds atlas .*ingest into a new store"):
        writer.write_atlas(image=nib.Nifti1Image(moved, affine), labels=kept.labels)
    with pytest.raises(DatasetError, match="already holds atlas"):  # same labels, moved grid
        writer.write_atlas(image=nib.Nifti1Image(labels, affine * 2), labels=kept.labels)


def test_the_atlas_group_is_not_a_run_to_any_reader(stored, make_run):
    out = stored.out
    ds = open_dataset(out)
    assert [str(k) for k in ds.runs()] == ["sub-a/run-1"]
    assert ds.subjects() == ["sub-a"] and ds.runs("atlas") == []
    summary = summarize(ds, verify=True)
    assert [r["problems"] for r in summary["runs"]] == [[]]
    assert sorted(zarr.open_group(out, mode="r").group_keys()) == ["atlas", "sub-a"]
    xr = pytest.importorskip("xarray", reason="xarray is in the test extras")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning of any kind while opening
        tree = xr.open_datatree(out, engine="zarr", consolidated=False)
    assert sorted(tree.children) == ["atlas", "sub-a"]
    assert tree["atlas"]["labels"].dims == ("i", "j", "k")
    run = make_run(ds.info, subject="atlas")
    with pytest.raises(RunValidationError, match="'atlas' is reserved"):
        create_dataset(out, ds.info).write_run(run)

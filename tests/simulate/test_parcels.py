"""Whole-brain parcels: ROI positions in MNI mm and spatially smooth coupling (checked on data)."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
from scipy.spatial.distance import pdist, squareform

from eeg2bold.simulate import (
    SimulationConfig,
    dataset_info,
    roi_names,
    simulate_run,
    subject_parameters,
)
from eeg2bold.simulate.montage import N_PAIRED_ROIS, roi_positions
from eeg2bold.simulate.write import simulate_to_store
from eeg2bold.storage import open_dataset

SUBCORTICAL = tuple(
    f"{base}_{side}"
    for base in ("Thalamus", "Caudate", "Putamen", "Hippocampus", "Pallidum", "Amygdala")
    + ("Accumbens",)
    for side in ("L", "R")
)


def _pair_means(matrix: np.ndarray, positions: np.ndarray, edges: list[float]) -> list[float]:
    """Mean off-diagonal entry of ``matrix`` over the pairs in each distance bin (mm)."""
    dist = squareform(pdist(positions))
    iu = np.triu_indices_from(dist, 1)
    values, d = matrix[iu], dist[iu]
    return [float(values[(d >= lo) & (d < hi)].mean()) for lo, hi in itertools.pairwise(edges)]


def test_names_and_positions_of_parcels():
    names, pos = roi_names(400), roi_positions(400)
    assert names[:N_PAIRED_ROIS] == SUBCORTICAL  # the named ROIs never change
    assert len(set(names)) == len(names) == pos.shape[0] == 400 and pos.shape[1] == 3
    assert names[14:17] == ("parcel-L-015", "parcel-R-016", "parcel-L-017")
    assert all(re.fullmatch(r"parcel-[LR]-\d{3,4}", n) for n in names[N_PAIRED_ROIS:])
    sides = np.array([n.split("-")[1] if n.startswith("parcel") else n[-1] for n in names])
    assert (pos[sides == "L", 0] < 0).all() and (pos[sides == "R", 0] > 0).all()
    assert (sides == "L").sum() == (sides == "R").sum() == 200
    # homologues mirror each other; a brain-sized shell around the subcortical ROIs
    np.testing.assert_array_equal(pos[0::2] * [-1, 1, 1], pos[1::2])
    assert (np.abs(pos[:, 0]) <= 70).all() and (pos[:, 1] >= -106).all()
    assert (pos[:, 1] <= 72).all() and (pos[:, 2] >= -40).all() and (pos[:, 2] <= 76).all()
    radius = np.linalg.norm(pos - pos[:N_PAIRED_ROIS].mean(axis=0), axis=1)
    assert radius[N_PAIRED_ROIS:].min() > radius[:N_PAIRED_ROIS].max()
    # quasi-uniform: every parcel's nearest neighbour at about the same distance
    dist = squareform(pdist(pos[N_PAIRED_ROIS:]))
    np.fill_diagonal(dist, np.inf)
    nearest = dist.min(axis=1)
    assert nearest.max() < 2 * nearest.min(), (nearest.min(), nearest.max())
    # a smaller dataset: the same named ROIs, at the same places
    np.testing.assert_array_equal(roi_positions(8), pos[:8])
    assert roi_names(1) == ("Thalamus_L",) and roi_positions(1).shape == (1, 3)


def _population_rows(length_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """The parcels' population coupling rows (a subject without deviations, common mode or
    private part has exactly the population's rows, rescaled) and their positions."""
    config = SimulationConfig(
        subjects=1,
        rois=400,
        n_sources=16,
        common_mode=0.0,
        private_sources=0,
        subject_variability=0.0,
        coupling_length_mm=length_mm,
    )
    coupling = subject_parameters(config=config, subject_index=0).coupling
    return coupling[N_PAIRED_ROIS:], roi_positions(400)[N_PAIRED_ROIS:]


def test_coupling_of_parcels_correlates_less_with_distance():
    rows, pos = _population_rows(35.0)
    corr = np.corrcoef(rows)
    (near,) = _pair_means(corr, pos, [0, 20])
    (mid,) = _pair_means(corr, pos, [40, 60])
    (far,) = _pair_means(corr, pos, [80, np.inf])
    assert near > 0.8, near  # exp(-d^2 / (2 l^2)) >= 0.85 below 20 mm
    assert 0.15 < mid < 0.55, mid  # 40-60 mm: 0.52 .. 0.23
    assert abs(far) < 0.05, far  # beyond 80 mm: < 0.07, and mostly far less
    bins = _pair_means(corr, pos, [0, 15, 30, 45, 60, 80, np.inf])
    assert all(a > b for a, b in itertools.pairwise(bins)), bins


def test_independent_coupling_rows_without_a_length_scale():
    rows, pos = _population_rows(0.0)
    bins = _pair_means(np.corrcoef(rows), pos, [0, 20, 80, np.inf])
    assert max(abs(b) for b in bins) < 0.05, bins
    assert ((rows != 0).mean(axis=1) < 0.6).mean() > 0.9  # sparse, like the named ROIs' rows


def test_bold_of_near_parcels_correlates_more_than_of_far_ones():
    def near_minus_far(length_mm: float) -> float:
        config = SimulationConfig(
            subjects=1, rois=100, channels=1, minutes=10.0, coupling_length_mm=length_mm
        )
        bold = simulate_run(config=config, subject_index=0, run_index=0).bold
        corr = np.corrcoef(bold[N_PAIRED_ROIS:].astype(np.float64))
        pos = roi_positions(100)[N_PAIRED_ROIS:]
        (near,), (far,) = _pair_means(corr, pos, [0, 25]), _pair_means(corr, pos, [80, np.inf])
        return near - far

    assert near_minus_far(35.0) > 0.1
    assert abs(near_minus_far(0.0)) < 0.06


# Computed with the simulator before parcels existed (commit a9529d8) and checked equal after:
# sum |coupling|, sum |bold|, sum bold^2, mean eeg^2, the last ROI's oracle r. With more than
# 14 ROIs and no length scale the data are the old ones too, through the vectorised BOLD path.
_OLD_FINGERPRINTS = {
    8: (20.563343848960358, 297.7853281131247, 404.85211657371167, 318.3835673613976, 0.7564408),
    14: (38.5056292238005, 524.5212300996063, 723.6064068204089, 318.3835673613976, 0.6979619),
    40: (138.1167093021504, 1560.6021536668413, 2179.2694707783203, 318.3835673613976, 0.815394),
}


def _old_population_coupling(config: SimulationConfig) -> np.ndarray:
    """The population coupling as the simulator drew it for every ROI before parcels."""
    from eeg2bold.simulate import physics

    n_env = 2 * config.n_sources
    rng = physics.stream(config.seed, 0, 3)
    coupling = np.zeros((config.rois, n_env))
    for r in range(config.rois):
        mask = rng.random(n_env) < 0.25
        mask[rng.integers(n_env)] = True
        row = rng.standard_normal(n_env) * mask
        if r % 2 == 1 and r < 14:
            row = 0.6 * coupling[r - 1] + 0.8 * row / np.linalg.norm(row)
        coupling[r] = row / np.linalg.norm(row)
    return coupling


@pytest.mark.parametrize("rois", [8, 14, 40])
def test_datasets_without_parcels_are_unchanged(rois):
    config = SimulationConfig(subjects=1, minutes=1.5, channels=19, rois=rois)
    if rois > N_PAIRED_ROIS:
        config = config.model_copy(update={"coupling_length_mm": 0.0})
    run = simulate_run(config=config, subject_index=0, run_index=0)
    fingerprint = (
        float(np.abs(run.truth.arrays["coupling"].astype(np.float64)).sum()),
        float(np.abs(run.bold.astype(np.float64)).sum()),
        float((run.bold.astype(np.float64) ** 2).sum()),
        float((run.eeg.astype(np.float64) ** 2).mean()),
        float(run.truth.attrs["oracle_r"][-1]),
    )
    np.testing.assert_allclose(fingerprint, _OLD_FINGERPRINTS[rois], rtol=1e-5)
    clean = run.truth.arrays["bold_clean"]
    oracle = [np.corrcoef(c, b)[0, 1] for c, b in zip(clean, run.bold, strict=True)]
    np.testing.assert_allclose(run.truth.attrs["oracle_r"], oracle, rtol=1e-9)
    if rois <= N_PAIRED_ROIS:  # the length scale only concerns parcels
        other = simulate_run(
            config=config.model_copy(update={"coupling_length_mm": 0.0}),
            subject_index=0,
            run_index=0,
        )
        np.testing.assert_array_equal(run.bold, other.bold)
        assert run.truth.attrs == other.truth.attrs


def test_old_coupling_draws_for_named_rois_and_for_parcels_without_a_length_scale():
    def population(config: SimulationConfig) -> np.ndarray:
        bare = config.model_copy(
            update={"common_mode": 0.0, "private_sources": 0, "subject_variability": 0.0}
        )
        rows = subject_parameters(config=bare, subject_index=0).coupling
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    smooth = SimulationConfig(subjects=1, rois=40)
    independent = smooth.model_copy(update={"coupling_length_mm": 0.0})
    old = _old_population_coupling(smooth)
    np.testing.assert_allclose(population(smooth)[:N_PAIRED_ROIS], old[:N_PAIRED_ROIS])
    np.testing.assert_allclose(population(independent), old)
    assert not np.allclose(population(smooth)[N_PAIRED_ROIS:], old[N_PAIRED_ROIS:])


def test_roi_positions_are_in_the_dataset_contract_and_round_trip(tmp_path):
    config = SimulationConfig(subjects=1, minutes=1.0, channels=4, rois=30, n_sources=2)
    info = dataset_info(config=config)
    assert info.bold.roi_mni is not None and len(info.bold.roi_mni) == 30
    np.testing.assert_array_equal(np.array(info.bold.roi_mni), roi_positions(30))
    path = tmp_path / "parcels.zarr"
    simulate_to_store(path, config, progress=False)
    reopened = open_dataset(path).info.bold
    assert reopened.rois == info.bold.rois
    assert reopened.roi_mni == info.bold.roi_mni


def test_length_scale_is_validated():
    with pytest.raises(ValueError, match="coupling_length_mm"):
        SimulationConfig(coupling_length_mm=-1.0)

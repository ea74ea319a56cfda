"""The default simulator answers the digital-twin question as the literature does (issue 10):
with enough of each subject's data, within-subject beats leave-one-subject-out; with a few
minutes, LOSO (trained on every other subject) wins; and a new subject's own data buys back
accuracy along the calibration curve. Ridge on small simulated sets, seconds each.

Measured over seeds 3, 5, 7 and 11 (6 subjects, 16 channels): at 20 min within / LOSO was
1.29-1.57 for every seed. At 4 min the claim depends on the draw of subjects, so the test states
it over those four seeds: LOSO − within was +0.017, +0.164, +0.163 and −0.021 (2026-12-07), so
LOSO wins on average by 0.08 and in three of four simulated cohorts, not in every one.
"""

from __future__ import annotations

import numpy as np

from eeg2bold.simulate import SimulationConfig
from eeg2bold.simulate.write import simulate_to_store
from eeg2bold.storage import open_dataset
from eeg2bold.training.config import build_config
from eeg2bold.training.run import train_calibration_curve, train_protocol

RIDGE = {"window_s": "20", "bin_s": "4"}  # 16 ch × 5 bands × 5 lags: fast, data-hungry enough


def _store(tmp_path_factory, minutes: float, seed: int = 5, **overrides):
    path = tmp_path_factory.mktemp("gap") / f"sim-{minutes:g}-{seed}.zarr"
    config = SimulationConfig(
        subjects=6, minutes=minutes, channels=16, sfreq=100, rois=4, seed=seed
    )
    simulate_to_store(path, config.model_copy(update=overrides), progress=False)
    return open_dataset(path)


def _test_r(dataset, protocol: str) -> float:
    config = build_config(model="ridge", protocol=protocol, sets=RIDGE)
    return train_protocol(dataset, config).summary()["test_r_mean"]


def test_within_subject_beats_loso_with_20_minutes_per_subject(tmp_path_factory):
    dataset = _store(tmp_path_factory, 20)
    within, loso = _test_r(dataset, "within"), _test_r(dataset, "loso")
    assert loso > 0.1  # the shared part transfers
    assert within / loso > 1.1, (within, loso)


def test_loso_beats_within_subject_with_4_minutes_per_subject(tmp_path_factory):
    """On average over four simulated cohorts, and in most of them: not in every one."""
    margins = []
    for seed in (3, 5, 7, 11):
        dataset = _store(tmp_path_factory, 4, seed=seed)
        margins.append(_test_r(dataset, "loso") - _test_r(dataset, "within"))
    assert np.mean(margins) > 0.05, margins
    assert sum(m > 0 for m in margins) >= 3, margins


def test_calibration_curve_rises_with_the_new_subjects_data(tmp_path_factory):
    # a strong subject-private component: only the held-out subject's own data can teach it
    dataset = _store(tmp_path_factory, 12, private_coupling=0.8)
    config = build_config(model="ridge", protocol="loso_calibrated", sets=RIDGE)
    results = train_calibration_curve(dataset, config, minutes=[0, 2, 6])
    means = [r.summary()["test_r_mean"] for r in results]
    assert means[2] > means[0] + 0.03, means
    assert means[1] > means[0] - 0.01, means
    per_subject = [
        {f.subject: float(np.mean(f.test_r)) for f in r.folds} for r in (results[0], results[2])
    ]
    assert set(per_subject[0]) == set(per_subject[1]) == set(dataset.subjects())
    gains = [per_subject[1][s] - per_subject[0][s] for s in per_subject[0]]
    assert sum(g > 0 for g in gains) >= 4, gains
    # the test block is the same at every amount: same test samples per subject
    n_test = [{f.subject: f.n_test for f in r.folds} for r in results]
    assert n_test[0] == n_test[1] == n_test[2]

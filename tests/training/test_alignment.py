"""Euclidean alignment: the identity covariance it promises, its invariance to a subject's
mixing, and statistics that come from a subject's own EEG only (never BOLD, never test)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from eeg2bold.protocols import build_sample_table, get_protocol
from eeg2bold.simulate import SimulationConfig
from eeg2bold.simulate.simulator import simulate_run
from eeg2bold.storage import open_dataset
from eeg2bold.training.alignment import Moments, coverage, euclidean_alignment, inverse_sqrt
from eeg2bold.training.data import FoldData, SampleConfig


def _mixed(seed: int = 0, channels: int = 5, n: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    """Correlated signals [C, N] with an offset, and a random invertible mixing."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((channels, channels)) @ rng.standard_normal((channels, n)) + 3.0
    mixing = rng.standard_normal((channels, channels)) + 2 * np.eye(channels)
    return x, mixing


def test_aligned_eeg_has_identity_covariance_and_zero_mean():
    x, _ = _mixed()
    aligned = euclidean_alignment([(x, None)], source="train").apply(x).astype(np.float64)
    np.testing.assert_allclose(aligned.mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(np.cov(aligned, bias=True), np.eye(5), atol=1e-5)
    # the inverse square root is the closed form: W R W = I, W symmetric
    r = np.cov(x, bias=True)
    w = inverse_sqrt(r)
    np.testing.assert_allclose(w @ r @ w, np.eye(5), atol=1e-9)
    np.testing.assert_allclose(w, w.T, atol=1e-12)


def test_alignment_undoes_a_subject_specific_mixing_up_to_a_rotation():
    """aligned(A x) = Q aligned(x) with Q orthogonal, for any invertible A: the time-by-time
    Gram matrix (all a model can learn from up to a fixed rotation) is the same; for A
    symmetric positive definite acting on aligned data, the output is identical."""
    x, mixing = _mixed()
    a = euclidean_alignment([(x, None)], source="train").apply(x).astype(np.float64)
    mx = mixing @ x
    b = euclidean_alignment([(mx, None)], source="train").apply(mx).astype(np.float64)
    assert not np.allclose(x.T @ x, mx.T @ mx, rtol=0.1)
    np.testing.assert_allclose(b.T @ b, a.T @ a, rtol=1e-3, atol=1e-3)
    q = b @ np.linalg.pinv(a)
    np.testing.assert_allclose(q @ q.T, np.eye(5), atol=1e-4)
    spd = mixing @ mixing.T
    c = euclidean_alignment([(spd @ a, None)], source="train").apply(spd @ a)
    np.testing.assert_allclose(c, a, atol=1e-3)


def test_alignment_removes_the_simulated_electrode_gains():
    """The simulator's per-subject electrode gains are a diagonal mixing of the same EEG
    (same seed): aligned, the two recordings agree up to a rotation."""
    small = {"subjects": 1, "minutes": 2, "channels": 8, "sfreq": 100, "rois": 2}
    plain = simulate_run(config=SimulationConfig(**small), subject_index=0, run_index=0).eeg
    gained = simulate_run(
        config=SimulationConfig(subject_gain_sd=0.5, **small), subject_index=0, run_index=0
    ).eeg
    assert not np.allclose(plain.std(axis=1), gained.std(axis=1), rtol=0.05)
    a, b = (
        euclidean_alignment([(x, None)], source="train").apply(x).astype(np.float64)
        for x in (plain, gained)
    )
    np.testing.assert_allclose(b @ b.T, a @ a.T, rtol=1e-3, atol=0.5)  # both n·I
    gram_a, gram_b = a[:, :2000].T @ a[:, :2000], b[:, :2000].T @ b[:, :2000]
    np.testing.assert_allclose(gram_b, gram_a, atol=2e-3 * np.abs(gram_a).max())


def test_streaming_moments_match_numpy_and_coverage_is_the_union_of_windows():
    x, _ = _mixed(n=150_000)  # more than two chunks
    mask = coverage(np.array([10, 40_000, 70_000]), 50_000, x.shape[1])
    assert mask.sum() == 120_000 - 10 and mask[10:120_000].all()
    assert not mask[:10].any() and not mask[120_000:].any()
    m = Moments(5)
    m.add(x, mask, cross=True)
    np.testing.assert_allclose(m.mean, x[:, mask].mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(m.std, x[:, mask].std(axis=1), rtol=1e-9)
    np.testing.assert_allclose(m.covariance, np.cov(x[:, mask], bias=True), rtol=1e-8, atol=1e-9)


@pytest.fixture(scope="module")
def store(sim_store):
    return open_dataset(sim_store)


def _fold(store, protocol, read_run=None, align="euclidean"):
    cfg = SampleConfig(window_s=8.0, delay_s=2.0, align=align)
    samples = build_sample_table(store, window_s=8.0, delay_s=2.0)
    fold = get_protocol(protocol).folds(samples)[0]
    return FoldData(store, samples, fold, config=cfg, read_run=read_run)


def test_fold_alignment_comes_from_training_eeg_or_the_unseen_subjects_own_eeg(store):
    loso = _fold(store, "loso")
    held_out = loso.fold.subject
    sources = loso.describe()["alignment"]
    assert sources[held_out] == "unlabelled"
    assert {s for s, v in sources.items() if v == "train"} == set(store.subjects()) - {held_out}

    def altered(change):
        def read_run(key):
            return change(key, store.read_run(key))

        return read_run

    # BOLD never enters: any change of it leaves every subject's alignment as it was
    no_bold = _fold(
        store, "loso", altered(lambda k, r: dataclasses.replace(r, bold=r.bold * -7 + 2))
    )
    # another subject's EEG never enters a subject's alignment
    others = _fold(
        store,
        "loso",
        altered(lambda k, r: r if k.subject != held_out else dataclasses.replace(r, eeg=r.eeg * 3)),
    )
    for subject, a in loso.alignment.items():
        np.testing.assert_array_equal(no_bold.alignment[subject].matrix, a.matrix)
        if subject != held_out:
            np.testing.assert_array_equal(others.alignment[subject].matrix, a.matrix)
    np.testing.assert_allclose(
        others.alignment[held_out].matrix, loso.alignment[held_out].matrix / 3
    )

    # a subject with training windows: its val and test EEG never enter
    within = _fold(store, "within")
    cut = within.samples.time[within.fold.val].min() - within.samples.window_s

    def late(key, run):
        eeg = run.eeg.copy()
        eeg[:, int(cut * store.info.eeg.sfreq) :] *= 1000
        return dataclasses.replace(run, eeg=eeg)

    changed = _fold(store, "within", altered(late))
    subject = within.fold.subject
    assert within.describe()["alignment"] == {subject: "train"}
    np.testing.assert_array_equal(
        changed.alignment[subject].matrix, within.alignment[subject].matrix
    )


def test_fold_batches_are_the_aligned_then_normalised_windows(store):
    data = _fold(store, "loso")
    plain = _fold(store, "loso", align="none")
    idx = np.concatenate([data.fold.train[:3], data.fold.test[-3:]])
    eeg, _ = data.batch(idx)
    norm = data.normaliser
    for row, i in enumerate(idx):
        key = data.samples.runs[data.samples.run[i]]
        a = data.alignment[key.subject]
        start = int(data.samples.start_sample[i])
        raw = store.read_run(key).eeg[:, start : start + data.n_window].astype(np.float64)
        expected = (a.matrix @ (raw - a.mean[:, None]) - norm.eeg_mean[:, None]) / norm.eeg_scale[
            :, None
        ]
        np.testing.assert_allclose(eeg[row].numpy(), expected, rtol=1e-4, atol=1e-4)
    assert plain.alignment == {} and "alignment" in plain.describe()
    # each training subject's aligned EEG under its training windows has identity covariance
    subject = data.samples.runs[data.samples.run[data.fold.train[0]]].subject
    a = data.alignment[subject]
    run = store.read_run(data.samples.runs[data.samples.run[data.fold.train[0]]])
    rows = data.fold.train[
        data.samples.subject[data.fold.train] == data.samples.subjects.index(subject)
    ]
    mask = coverage(data.samples.start_sample[rows], data.n_window, run.eeg.shape[1])
    aligned = a.apply(run.eeg)[:, mask].astype(np.float64)
    np.testing.assert_allclose(np.cov(aligned, bias=True), np.eye(aligned.shape[0]), atol=1e-4)

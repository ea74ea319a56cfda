"""The one raw-EEG → model-input map, against its definition."""

from __future__ import annotations

import numpy as np
import torch

from eeg2bold.training.alignment import euclidean_alignment
from eeg2bold.training.inputs import InputMap, Normaliser


def _normaliser(rng: np.random.Generator, n: int) -> Normaliser:
    return Normaliser(
        eeg_mean=rng.normal(size=n),
        eeg_scale=rng.uniform(0.5, 3.0, size=n),
        target_mean=np.zeros(2),
        target_scale=np.ones(2),
    )


def test_without_alignment_it_is_the_normaliser_in_float32_exactly():
    rng = np.random.default_rng(0)
    eeg = rng.normal(3.0, 20.0, size=(5, 400)).astype(np.float32)
    norm = _normaliser(rng, 5)
    expected = (eeg - norm.eeg_mean[:, None].astype(np.float32)) / norm.eeg_scale[:, None].astype(
        np.float32
    )
    out = InputMap(norm)(torch.as_tensor(eeg))
    assert np.array_equal(out.numpy(), expected)
    batch = torch.as_tensor(np.stack([eeg, eeg[:, ::-1].copy()]))
    inplace = InputMap(norm)(batch.clone(), inplace=True)
    assert torch.equal(inplace, InputMap(norm)(batch)) and torch.equal(inplace[0], out)


def test_with_alignment_it_is_alignment_then_normaliser():
    """The folded affine map equals A (x − m) followed by the normaliser, to float32 precision,
    and leaves its input untouched."""
    rng = np.random.default_rng(1)
    mixing = rng.normal(size=(6, 6))
    eeg = (mixing @ rng.normal(size=(6, 3000)) + rng.normal(size=(6, 1)) * 5).astype(np.float32)
    alignment = euclidean_alignment([(eeg, None)], source="recording")
    norm = _normaliser(rng, 6)
    reference = (alignment.apply(eeg).astype(np.float64) - norm.eeg_mean[:, None]) / norm.eeg_scale[
        :, None
    ]
    raw = torch.as_tensor(eeg.copy())
    out = InputMap(norm, alignment)(raw).numpy()
    assert np.array_equal(raw.numpy(), eeg)
    np.testing.assert_allclose(out, reference, atol=1e-4)
    # the aligned EEG's covariance is the identity, so the input's is diag(1/scale²)
    np.testing.assert_allclose(
        np.cov(out.astype(np.float64)), np.diag(1 / norm.eeg_scale**2), atol=2e-3
    )

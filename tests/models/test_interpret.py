"""Interpretation: Haufe patterns recover a known forward model; figures render."""

from __future__ import annotations

import numpy as np
import pytest

from eeg2bold.errors import Eeg2BoldError
from eeg2bold.models import DataSpec, build_model
from eeg2bold.models.interpret import (
    eeg_covariance,
    haufe_patterns,
    interpret,
    plot_spatial_patterns,
    plot_spectra,
)
from eeg2bold.simulate import channel_names
from eeg2bold.training.seed import seed_everything


def test_haufe_patterns_recover_the_mixing_matrix_where_filters_do_not():
    rng = np.random.default_rng(0)
    n_ch, n_src, n = 12, 3, 20_000
    mixing = rng.normal(size=(n_ch, n_src))
    noise_mix = rng.normal(size=(n_ch, 4))  # correlated noise: filters must cancel it
    x = mixing @ rng.normal(size=(n_src, n)) + noise_mix @ rng.normal(size=(4, n)) * 2
    x += 0.1 * rng.normal(size=(n_ch, n))
    cov = np.cov(x)
    # the optimal (LCMV-like) unmixing filters for the sources under that noise
    filters = np.linalg.solve(
        mixing.T @ np.linalg.solve(cov, mixing), mixing.T @ np.linalg.inv(cov)
    )
    patterns = haufe_patterns(filters, cov)
    for k in range(n_src):
        assert abs(np.corrcoef(patterns[k], mixing[:, k])[0, 1]) > 0.99
        assert abs(np.corrcoef(filters[k], mixing[:, k])[0, 1]) < 0.95  # weights ≠ patterns


def test_eeg_covariance_matches_numpy():
    rng = np.random.default_rng(1)
    chunks = [rng.normal(size=(5, 300)) + 2, rng.normal(size=(2, 5, 100))]
    joined = np.concatenate([chunks[0], *chunks[1]], axis=1)
    np.testing.assert_allclose(eeg_covariance(chunks), np.cov(joined), rtol=1e-10)


@pytest.mark.parametrize("name", ["beira", "twin"])
def test_interpret_a_model_and_draw_it(name, tmp_path):
    channels = channel_names(19)
    spec = DataSpec(n_channels=19, n_rois=2, sfreq=100.0, window_s=8.0)
    seed_everything(0)
    model = build_model(name, spec, {"n_branches": 6})
    rng = np.random.default_rng(2)
    cov = np.cov(rng.normal(size=(19, 2000)))
    result = interpret(model, covariance=cov, channels=channels)
    assert result.patterns.shape == (6, 19)
    assert np.allclose(np.abs(result.patterns).max(axis=1), 1.0)
    assert result.responses.shape[0] == 6
    # freshly initialised branches peak inside their classical bands (delta ... gamma)
    assert 1.0 <= result.peak_hz[0] <= 4.5
    assert 8.0 <= result.peak_hz[2] <= 13.0
    for fig, fname in (
        (plot_spatial_patterns(result, sfreq=100.0), "spatial.png"),
        (plot_spectra(result, max_hz=50), "spectra.png"),
    ):
        fig.savefig(tmp_path / fname)
        assert (tmp_path / fname).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_models_without_a_front_end_are_refused():
    spec = DataSpec(n_channels=4, n_rois=1, sfreq=100.0, window_s=8.0)
    with pytest.raises(Eeg2BoldError, match="has no interpretable front end"):
        interpret(build_model("ridge", spec), covariance=np.eye(4), channels=list("abcd"))

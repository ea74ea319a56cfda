"""``linker``: strides to ~2 Hz, an HRF-shaped initial kernel, a lag span set by ``hrf_s``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_beira import alpha_power_problem, train_and_score  # the shared synthetic problem

from eeg2bold.models import DataSpec, build_model
from eeg2bold.models.linker import stage_strides
from eeg2bold.training.seed import seed_everything


@pytest.mark.parametrize(
    ("total", "max_stride", "expected"),
    [
        (50, 5, [5, 5, 2]),
        (125, 5, [5, 5, 5]),
        (500, 5, [5, 5, 5, 4]),
        (64, 4, [4, 4, 4]),
        (1, 5, [1]),
    ],
)
def test_stage_strides_factor_the_total(total, max_stride, expected):
    assert stage_strides(total, max_stride) == expected


def test_stage_strides_round_a_large_prime():
    strides = stage_strides(7 * 11, 5)  # 77 = 7 x 11: no factor <= 5
    assert max(strides) <= 5
    assert 0.5 * 77 <= np.prod(strides) <= 2 * 77


@pytest.mark.parametrize("sfreq", [100.0, 128.0, 250.0, 1000.0])
def test_features_run_at_about_two_hz(sfreq):
    spec = DataSpec(n_channels=5, n_rois=2, sfreq=sfreq, window_s=10.0)
    model = build_model("linker", spec)
    assert 1.5 <= model.feature_rate <= 2.5
    assert model.features(torch.randn(1, 5, spec.n_times)).shape[-1] == model.n_steps
    assert abs(model.n_steps - 10.0 * model.feature_rate) <= 2


def test_hrf_kernels_start_as_a_canonical_hrf():
    spec = DataSpec(n_channels=4, n_rois=3, sfreq=100.0, window_s=20.0)
    model = build_model("linker", spec, {"hrf_s": 20.0})
    kernels = model.hrf_kernels()
    assert kernels.shape == (3, 40)  # 20 s at 2 Hz
    lags = np.arange(40) / model.feature_rate
    assert lags[kernels[0].argmax()] == pytest.approx(5.0, abs=0.5)  # peak ~5 s
    assert kernels[0, lags > 10].min() < 0  # undershoot


@pytest.mark.parametrize(("window_s", "hrf_s"), [(20.0, 8.0), (20.0, 30.0), (8.0, 20.0)])
def test_lag_span_matches_hrf_s_capped_at_the_window(window_s, hrf_s):
    spec = DataSpec(n_channels=3, n_rois=2, sfreq=100.0, window_s=window_s)
    model = build_model("linker", spec, {"hrf_s": hrf_s, "dropout": 0.0})
    span = min(hrf_s, window_s)
    assert span <= model.lag_span_s <= span + 1.5  # plus the convs' own extent
    # the gradient of the last output reaches exactly the computed receptive field (with a
    # flat kernel: the canonical HRF is 0 at lag 0 and would hide the window's last samples)
    torch.nn.init.constant_(model.hrf.weight, 1.0)
    eeg = torch.randn(1, 3, spec.n_times, requires_grad=True)
    model(eeg).sum().backward()
    touched = np.flatnonzero(eeg.grad.abs().sum(dim=(0, 1)).numpy() > 0)
    n_before, n_after = model.receptive_field()
    assert touched[0] == spec.n_times - n_before
    assert touched[-1] == spec.n_times - 1 - n_after


@pytest.mark.parametrize(("hrf_s", "learns"), [(20.0, True), (1.0, False)])
def test_learns_a_delayed_alpha_power_target_only_if_the_lag_is_in_reach(hrf_s, learns):
    # lag 5 s; hrf_s = 1 s sees only the last ~2 s, where alpha power is ~unrelated (r ~0.2)
    spec, eeg, bold = alpha_power_problem(lag_s=5.0)
    seed_everything(0)
    model = build_model("linker", spec, {"hrf_s": hrf_s})
    r = train_and_score(model, eeg, bold)
    assert (r > 0.7) if learns else (r < 0.5), r

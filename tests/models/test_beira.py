"""``beira`` and its interpretable front end: filters, receptive field, and learning a known target.

Also home of the synthetic problem shared with ``test_linker.py``: the target is the smoothed
alpha power of one channel at a fixed lag inside the window, so a working model must find
the channel, the band and the lag.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter1d

from eeg2bold.models import BoldModel, DataSpec, build_model
from eeg2bold.models.frontend import (
    FrontEndParams,
    InterpretableFrontEnd,
    branch_bands,
    depthwise_fir,
)
from eeg2bold.training.seed import seed_everything

SFREQ = 100.0


def alpha_power_problem(
    *, n_channels: int = 4, window_s: float = 8.0, lag_s: float = 3.0, minutes: float = 12.0
) -> tuple[DataSpec, torch.Tensor, torch.Tensor]:
    """Windows every 0.5 s of a long recording; target: alpha power of channel 0, lag_s back.

    Channel 0 carries a 10 Hz rhythm whose log amplitude drifts within seconds (its power 3 s
    apart correlates at ~0.2, so the lag must be found); every channel
    has unit white noise, and channel 1 a 20 Hz distractor with its own drifting amplitude.
    Returns (spec, eeg [N, C, T], bold [N, 1, 1]) in time order, normalised.
    """
    rng = np.random.default_rng(0)
    n = int(minutes * 60 * SFREQ)
    t = np.arange(n) / SFREQ

    def drift() -> np.ndarray:
        slow = gaussian_filter1d(rng.normal(size=n), sigma=1.5 * SFREQ)
        return np.exp(0.8 * slow / slow.std())

    alpha_amp, beta_amp = drift(), drift()
    eeg = rng.normal(size=(n_channels, n))
    eeg[0] += alpha_amp * np.sin(2 * np.pi * 10.0 * t)
    eeg[1] += beta_amp * np.sin(2 * np.pi * 20.0 * t)
    eeg /= eeg.std(axis=1, keepdims=True)
    power = gaussian_filter1d(alpha_amp**2, sigma=0.5 * SFREQ)
    spec = DataSpec(n_channels=n_channels, n_rois=1, sfreq=SFREQ, window_s=window_s)
    ends = np.arange(spec.n_times, n + 1, int(0.5 * SFREQ))
    x = np.stack([eeg[:, e - spec.n_times : e] for e in ends])
    y = power[ends - 1 - int(lag_s * SFREQ)]
    y = (y - y.mean()) / y.std()
    return (
        spec,
        torch.tensor(x, dtype=torch.float32),
        torch.tensor(y, dtype=torch.float32)[:, None, None],
    )


def train_and_score(
    model: BoldModel, eeg: torch.Tensor, bold: torch.Tensor, *, steps: int = 100, lr: float = 3e-3
) -> float:
    """Train on the first 70% (AdamW, MSE + 1 - r), score r on the last 25% (gap between).

    One thread: small convolutions gain nothing from more, and lose badly on a busy machine.
    """
    n = len(eeg)
    n_train, n_test = int(0.7 * n), int(0.75 * n)
    generator = torch.Generator().manual_seed(0)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model.train()
        for _ in range(steps):
            idx = torch.randint(0, n_train, (32,), generator=generator)
            pred, target = model(eeg[idx])[:, 0, 0], bold[idx, 0, 0]
            r = F.cosine_similarity(pred - pred.mean(), target - target.mean(), dim=0)
            loss = F.mse_loss(pred, target) + 1 - r
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        model.eval()
        with torch.no_grad():
            pred = model(eeg[n_test:])[:, 0, 0].numpy()
    finally:
        torch.set_num_threads(threads)
    return float(np.corrcoef(pred, bold[n_test:, 0, 0].numpy())[0, 1])


@pytest.mark.parametrize("sfreq", [100.0, 250.0, 1000.0])
def test_frontend_initial_bandpass_responses_peak_in_their_bands(sfreq):
    fir_s = 0.5
    params = FrontEndParams(n_branches=8, fir_s=fir_s)
    frontend = InterpretableFrontEnd(params, n_channels=3, sfreq=sfreq, out_hz=4.0)
    freqs, response = frontend.frequency_responses(n_freqs=2048)
    slack = 0.5 / fir_s  # half the filter's frequency resolution
    for k, (lo, hi) in enumerate(branch_bands(8, sfreq)):
        peak = freqs[np.argmax(response[k])]
        assert lo - slack <= peak <= hi + slack, (k, lo, hi, peak)
        inside = response[k][(freqs >= lo) & (freqs <= hi)].mean()
        far = response[k][(freqs > 2 * hi + 5) | (freqs < lo / 2 - 1)]
        assert far.max(initial=0.0) < 0.05 * inside
        assert response[k][0] < 1e-6  # no gain at DC, even for the short delta filter


@pytest.mark.parametrize(("n_taps", "mult"), [(7, 1), (51, 1), (101, 2)])
def test_depthwise_fir_equals_grouped_conv1d(n_taps, mult):
    x = torch.randn(2, 3, 700, dtype=torch.float64)
    w = torch.randn(3 * mult, 1, n_taps, dtype=torch.float64)
    expected = F.conv1d(x, w, padding=n_taps // 2, groups=3)
    torch.testing.assert_close(depthwise_fir(x, w).double(), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("fir_s", [0.2, 0.5])  # 21 taps: direct conv; 51 taps: FFT
def test_frontend_output_step_sees_exactly_its_fir_and_envelope_span(fir_s):
    params = FrontEndParams(n_branches=3, fir_s=fir_s, envelope_s=1.0)
    frontend = InterpretableFrontEnd(params, n_channels=2, sfreq=SFREQ, out_hz=4.0)
    n_times, step = 800, 10
    assert frontend.stride == 25
    assert frontend.out_steps(n_times) == (800 - 100) // 25 + 1
    eeg = torch.randn(1, 2, n_times, requires_grad=True)
    frontend(eeg)[0, :, step].sum().backward()
    grad = eeg.grad.abs().sum(dim=(0, 1)).numpy()
    half_fir = int(round(fir_s * SFREQ)) // 2  # odd taps, centred
    first, last = step * 25 - half_fir, step * 25 + 100 - 1 + half_fir
    inside = np.zeros(n_times, dtype=bool)
    inside[first : last + 1] = True
    assert grad[~inside].max() <= 1e-6 * grad.max()  # exactly 0 for the direct conv
    assert (grad[first + 5 : last - 4] > 0).all()
    if fir_s == 0.2:
        assert grad[~inside].max() == 0 and grad[first] > 0 and grad[last] > 0


def test_beira_envelope_rate_and_shapes_follow_the_parameters():
    spec = DataSpec(n_channels=30, n_rois=8, sfreq=100.0, window_s=20.48, n_out=1)
    model = build_model("beira", spec, {"envelope_hz": 4.0, "depth": 3, "n_branches": 16})
    assert model.interpretable
    assert model.frontend.out_hz == 4.0
    assert model.frontend.out_steps(spec.n_times) == 78
    assert model.frontend.spatial_filters().shape == (16, 30)
    with torch.no_grad():
        assert model(torch.randn(2, 30, spec.n_times)).shape == (2, 8, 1)
    seq = build_model("beira", DataSpec(n_channels=4, n_rois=3, sfreq=250.0, window_s=10, n_out=5))
    with torch.no_grad():
        assert seq(torch.randn(2, 4, 2500)).shape == (2, 3, 5)


def test_beira_learns_a_delayed_alpha_power_target():
    spec, eeg, bold = alpha_power_problem()
    seed_everything(0)
    model = build_model("beira", spec)
    assert train_and_score(model, eeg, bold) > 0.7

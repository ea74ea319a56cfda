"""``neurobolt``: token counts, the STFT branch's frequency axis and alignment, and learning."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
import torch
import torch.nn.functional as F

from eeg2bold.errors import ConfigError
from eeg2bold.models import DataSpec, build_model, make_params
from eeg2bold.models.neurobolt import NeuroBOLT
from eeg2bold.training.seed import seed_everything

FAST = {"d_model": 32, "n_layers": 1, "dropout": 0.0}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from intra-op threads, and lose a lot on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _alpha_windows(n: int, spec: DataSpec, *, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Channel 0: 10 Hz rhythm with a drifting amplitude; target = its log power over the last
    2 s (smoothed). The last channel carries an independent alpha rhythm (a distractor)."""
    rng = np.random.default_rng(seed)
    t = np.arange(spec.n_times) / spec.sfreq

    def rhythm() -> tuple[np.ndarray, np.ndarray]:
        slow = rng.uniform(0.03, 0.3, size=(n, 3, 1))
        phase = rng.uniform(0, 2 * np.pi, size=(n, 3, 1))
        log_amp = rng.normal(0, 0.5, size=(n, 1)) + 0.4 * np.sin(2 * np.pi * slow * t + phase).sum(
            1
        )
        amp = np.exp(log_amp)
        return amp, amp * np.sin(2 * np.pi * 10.0 * t + rng.uniform(0, 2 * np.pi, size=(n, 1)))

    eeg = rng.normal(size=(n, spec.n_channels, spec.n_times))
    amp, wave = rhythm()
    eeg[:, 0] += wave
    eeg[:, -1] += rhythm()[1]
    eeg /= eeg.std(axis=(0, 2), keepdims=True)
    target = np.log(np.mean(amp[:, t >= t[-1] - 2.0] ** 2, axis=1))[:, None, None]
    return torch.tensor(eeg, dtype=torch.float32), torch.tensor(target, dtype=torch.float32)


def test_heads_must_divide_width_and_scales_are_bounded():
    with pytest.raises(ConfigError, match="n_heads=3 must divide d_model=64"):
        make_params("neurobolt", {"n_heads": 3})
    with pytest.raises(ConfigError, match="stft_windows_s"):
        make_params("neurobolt", {"stft_windows_s": (0.5, 1.0, 2.0, 4.0)})
    with pytest.raises(ConfigError, match="stft_windows_s"):
        make_params("neurobolt", {"stft_windows_s": (8.0,)})


@pytest.mark.parametrize(
    ("spec", "params"),
    [
        (DataSpec(n_channels=8, n_rois=3, sfreq=100.0, window_s=8.0), {}),
        (DataSpec(n_channels=32, n_rois=8, sfreq=250.0, window_s=10.0), {}),
        (DataSpec(n_channels=64, n_rois=8, sfreq=1000.0, window_s=20.0), {}),
        (DataSpec(n_channels=5, n_rois=1, sfreq=128.0, window_s=10.0), {"patch_s": 0.75}),
        (DataSpec(n_channels=20, n_rois=2, sfreq=200.0, window_s=9.0), {"patch_s": 2.0}),
    ],
    ids=["C8", "C32", "C64-1kHz-20s", "odd-patch", "C20-2s"],
)
def test_token_count_matches_the_formula(spec, params):
    seed_everything(0)
    model = build_model("neurobolt", spec, params)
    assert isinstance(model, NeuroBOLT)
    p = model.params
    patch = round(p.patch_s * spec.sfreq)
    expected = min(spec.n_channels, p.max_spatial_tokens) * (spec.n_times // patch)
    with torch.no_grad():
        tokens = model.tokens(torch.randn(1, spec.n_channels, spec.n_times))
    assert tokens.shape == (1, expected, p.d_model)
    assert model.n_tokens == expected
    assert expected <= 16 * spec.window_s  # defaults: at most 16 tokens per second


def test_search_space_bounds_the_token_count():
    spec = DataSpec(n_channels=64, n_rois=8, sfreq=250.0, window_s=20.0)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(25):
        trial = study.ask()
        model = build_model("neurobolt", spec, NeuroBOLT.search_space(trial))
        assert model.n_tokens <= 16 * spec.window_s
        study.tell(trial, 0.0)


@pytest.mark.parametrize("freq", [7.0, 12.0, 23.0])
def test_stft_branch_peaks_at_the_sinusoid_and_is_aligned_to_patch_ends(freq):
    """A sinusoid in channel 0 during the last patch only: every scale's last-patch spectrum
    peaks at its frequency; patches whose windows end before it see nothing; silent
    channels stay at zero."""
    spec = DataSpec(n_channels=3, n_rois=1, sfreq=100.0, window_s=8.0)
    model = build_model("neurobolt", spec, {"patch_s": 1.0, "stft_windows_s": (0.5, 1.0, 2.0)})
    eeg = torch.zeros(1, 3, spec.n_times)
    t = torch.arange(100) / spec.sfreq
    eeg[0, 0, -100:] = torch.sin(2 * torch.pi * freq * t)
    with torch.no_grad():
        scales = model.spectral_features(eeg)
    assert len(scales) == 3
    for (freqs, feats), window_s in zip(scales, (0.5, 1.0, 2.0), strict=True):
        assert feats.shape == (1, 3, model.n_patches, len(freqs))
        assert freqs[1] - freqs[0] == pytest.approx(1.0 / window_s)
        assert freqs.max() <= 45.0
        last = feats[0, 0, -1]
        assert abs(freqs[last.argmax()].item() - freq) <= 0.5 / window_s + 1e-6
        assert last.max() > 1.0  # clearly above a silent window's log1p(0) = 0
        n_blind = model.n_patches - int(np.ceil(window_s / model.params.patch_s))
        assert torch.equal(feats[0, 0, :n_blind], torch.zeros_like(feats[0, 0, :n_blind]))
        assert torch.equal(feats[0, 1:], torch.zeros_like(feats[0, 1:]))


def test_spectral_branch_gradient_is_largest_at_the_sinusoid_bin():
    """d(token at the sinusoid bin)/d(input) flows through the STFT to the spatial mixing."""
    spec = DataSpec(n_channels=24, n_rois=2, sfreq=100.0, window_s=8.0)
    seed_everything(0)
    model = build_model("neurobolt", spec, {"max_spatial_tokens": 4, "stft_windows_s": (1.0,)})
    assert model.spatial is not None
    assert model.n_spatial == 4
    eeg = torch.randn(2, 24, spec.n_times) * 0.1
    eeg[:, 3] += torch.sin(2 * torch.pi * 11.0 * torch.arange(spec.n_times) / spec.sfreq)
    source = int(model.spatial.weight[:, 3, 0].abs().argmax())  # the virtual channel seeing it
    ((freqs, feats),) = model.spectral_features(eeg)
    peak = int((freqs - 11.0).abs().argmin())
    assert int(feats[0, source, -1].argmax()) == peak
    feats[:, source, :, peak].sum().backward()
    grad = model.spatial.weight.grad[source, :, 0].abs()
    assert int(grad.argmax()) == 3  # the channel holding the 11 Hz rhythm
    assert grad[3] > 5 * grad[torch.arange(24) != 3].max()


def test_many_channels_and_constant_input_stay_finite_with_gradients():
    spec = DataSpec(n_channels=32, n_rois=3, sfreq=100.0, window_s=6.0, n_out=4)
    seed_everything(0)
    model = build_model("neurobolt", spec, FAST)
    for eeg in (torch.zeros(2, 32, spec.n_times), torch.randn(2, 32, spec.n_times)):
        model.zero_grad()
        out = model(eeg)
        assert out.shape == (2, 3, 4)
        out.square().mean().backward()
        for name, p in model.named_parameters():
            assert p.grad is not None, name
            assert torch.isfinite(p.grad).all(), name


def test_learns_smoothed_alpha_power():
    """Target = smoothed alpha power of one channel: held-out windows reach r > 0.6."""
    seed_everything(0)
    spec = DataSpec(n_channels=4, n_rois=1, sfreq=100.0, window_s=8.0)
    eeg, target = _alpha_windows(448, spec, seed=2)
    mean, std = target[:384].mean(), target[:384].std()
    target = (target - mean) / std
    model = build_model("neurobolt", spec, FAST)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(6):
        for idx in torch.randperm(384, generator=gen).split(32):
            loss = F.mse_loss(model(eeg[idx]), target[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        pred = model(eeg[384:])
    r = np.corrcoef(pred[:, 0, 0].numpy(), target[384:, 0, 0].numpy())[0, 1]
    assert r > 0.6, r

"""Simultaneous EEG-fMRI with known ground truth.

Generative model, per run (all subject parameters fixed across a subject's runs):

1. Band-power envelopes ``p`` (alpha and beta of every source): log-normal, from an
   Ornstein-Uhlenbeck process of correlation time ``envelope_timescale_s``, at ``ENV_SFREQ``,
   with E[p] = 1; a fraction ``envelope_shared`` of the log-power variance is a global factor
   per band (arousal-like), the rest source-specific.
2. Source activity: 1/f background + sqrt(p_alpha)·alpha carrier + sqrt(p_beta)·beta carrier
   (narrow-band Gaussian noise at the subject's alpha/beta peak), FFT synthesis.
3. EEG (microvolts, FCz reference): lead field of radial-ish dipoles (positions and
   orientations jittered per subject) times sources, plus diffuse 1/f dipoles, white sensor
   noise, line noise (per-channel amplitude and phase) and blinks (eye dipoles: frontal).
4. BOLD: drivers d = (p - 1)/std(p) mixed by the subject's coupling (population weights +
   subject jitter, plus a common-mode part shared by all ROIs), convolved with a double-gamma
   HRF with a subject-specific peak, sampled at the volume times -> ``bold_clean``. Noise: AR(1)
   at TR, part shared across ROIs, scaled per ROI so var(bold_clean)/var(noise) = snr.
   A share ``private_coupling`` of each ROI's expected drive variance comes from the envelopes
   of ``private_sources`` subject-private generators (own position, orientation, envelopes
   and ROI weights per subject): the part of the EEG-BOLD relation only a subject's own data
   can teach, which makes LOSO harder than within-subject once a subject has enough data.
   ROIs have MNI positions (``montage.roi_positions``): the 14 subcortical ones get
   independent sparse weights; the cortical parcels after them weights that are
   Gaussian-process fields over their positions (length ``coupling_length_mm``), population,
   subject deviation and private weights alike, so neighbouring parcels resemble each other.
5. Clocks: EEG sample i is at t = i / sfreq; volume k is stamped at (k + 1/2)·TR (mid
   acquisition), as many volumes as fit in the recording. The HRF sees 64 s of envelope
   history before t = 0, so the first volumes carry no edge effect.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import scipy
import scipy.fft
from scipy import signal

import eeg2bold
from eeg2bold.simulate import montage, physics
from eeg2bold.simulate.config import SimulationConfig
from eeg2bold.simulate.subjects import (
    N_DIFFUSE,
    RUN,
    SubjectParameters,
    blink_pattern,
    compose,
    envelope_names,
    leadfield,
    montage_change,
    subject_parameters,
)
from eeg2bold.storage.schema import (
    BOLDInfo,
    DatasetInfo,
    EEGInfo,
    RunData,
    Truth,
    validate_run,
)

ENV_SFREQ = 10.0  # Hz, sampling rate of the latent envelopes and of the BOLD model
SOURCE = "eeg2bold.simulate"
ATLAS = "simulated"
TASK = "rest"
BOLD_SCALE = 1.0  # BOLD units per unit sustained drive (roughly percent signal change)

_PRE_ROLL_S = 64.0  # envelope history before t=0: covers the longest HRF (peak 10 s)
_APERIODIC_KNEE_HZ = 0.5
_ALPHA_SD_HZ = 0.8
_BETA_SD_HZ = 2.5
_BLINK_WIDTH_S = 0.12  # Gaussian SD: FWHM about 0.28 s


def subject_label(index: int) -> str:
    return f"sub-{index + 1:02d}"


def run_label(index: int) -> str:
    return f"run-{index + 1}"


def dataset_info(*, config: SimulationConfig) -> DatasetInfo:
    """The dataset contract every simulated run satisfies (and that a store is created with)."""
    return DatasetInfo(
        name=config.name,
        eeg=EEGInfo(
            sfreq=float(config.sfreq),
            channels=montage.channel_names(config.channels),
            units="uV",
            montage=montage.MONTAGE,
        ),
        bold=BOLDInfo(
            tr=float(config.tr),
            rois=montage.roi_names(config.rois),
            atlas=ATLAS,
            roi_mni=tuple(
                (float(x), float(y), float(z)) for x, y, z in montage.roi_positions(config.rois)
            ),
        ),
        source=SOURCE,
        created="",
        preprocessing={},
        provenance={
            "generator": SOURCE,
            "config": config.model_dump(mode="json"),
            "versions": {
                "eeg2bold": eeg2bold.__version__,
                "numpy": np.__version__,
                "scipy": scipy.__version__,
            },
            "eeg_reference": montage.REFERENCE,
        },
    )


def simulate_runs(*, config: SimulationConfig) -> Iterator[RunData]:
    """Every run of every subject, lazily (one run in memory at a time)."""
    for subject_index in range(config.subjects):
        params = subject_parameters(config=config, subject_index=subject_index)
        for run_index in range(config.runs):
            yield _simulate(config, params, run_index)


def simulate_run(*, config: SimulationConfig, subject_index: int, run_index: int) -> RunData:
    """One run of one subject (0-based indices), identical to the one ``simulate_runs`` yields."""
    if not 0 <= subject_index < config.subjects:
        raise ValueError(f"subject_index must be in [0, {config.subjects}), got {subject_index}")
    if not 0 <= run_index < config.runs:
        raise ValueError(f"run_index must be in [0, {config.runs}), got {run_index}")
    params = subject_parameters(config=config, subject_index=subject_index)
    return _simulate(config, params, run_index)


# ----------------------------------------------------------------------------- one run


def _envelopes(
    config: SimulationConfig,
    rng: np.random.Generator,
    n_grid: int,
    *,
    n_sources: int | None = None,
    shared: float | None = None,
) -> np.ndarray:
    """Log-normal band powers [2 n_sources, n_grid] at ENV_SFREQ with mean 1 (the population
    sources by default; ``shared`` = 0 for the subject-private ones)."""
    n_src = config.n_sources if n_sources is None else n_sources
    n_env = 2 * n_src
    pad = int(np.ceil(5 * config.envelope_timescale_s * ENV_SFREQ))
    n_fft = scipy.fft.next_fast_len(n_grid + pad, real=True)
    freqs = np.fft.rfftfreq(n_fft, 1 / ENV_SFREQ)
    amp = physics.ou_amplitude(freqs, timescale_s=config.envelope_timescale_s, cutoff_hz=1.0)
    z = physics.spectral_noise(rng, amp, rows=n_env + 2, n=n_grid, n_fft=n_fft)
    rho = config.envelope_shared if shared is None else shared
    z = np.sqrt(1 - rho) * z[:n_env] + np.sqrt(rho) * np.tile(z[n_env:], (n_src, 1))
    sigma = config.envelope_log_sd
    return np.exp(sigma * z - sigma**2 / 2)


def _simulate(config: SimulationConfig, params: SubjectParameters, run_index: int) -> RunData:
    info = dataset_info(config=config)
    n = int(round(config.minutes * 60 * config.sfreq))

    def rng(component: int) -> np.random.Generator:
        return physics.stream(config.seed, RUN, params.index, run_index, component)

    # latent envelopes on a grid from -pre-roll to past the end of the recording
    n_pre = int(round(_PRE_ROLL_S * ENV_SFREQ))
    n_post = int(np.ceil(n / config.sfreq * ENV_SFREQ)) + 1
    grid_t = (np.arange(n_pre + n_post) - n_pre) / ENV_SFREQ
    power = _envelopes(config, rng(1), n_pre + n_post)
    if config.private_sources:  # subject-private envelopes: no global factor
        private = _envelopes(
            config, rng(7), n_pre + n_post, n_sources=config.private_sources, shared=0.0
        )
        power = np.vstack([power, private])

    rotation, log_gain = compose(
        (params.cap_rotation, params.channel_log_gain),
        montage_change(
            rng(9),
            n_channels=config.channels,
            gain_sd=config.session_gain_sd,
            shift_deg=config.session_shift_deg,
        ),
    )
    eeg, lf, blinks = _eeg(
        config, params, rng, n=n, power=power, grid_t=grid_t, rotation=rotation, log_gain=log_gain
    )
    if config.session_coupling_jitter > 0:  # this session's own EEG-BOLD relation
        params = dataclasses.replace(
            params, coupling=_session_coupling(params.coupling, rng(10), config)
        )
    volume_times, bold_clean, bold, hrf, env_std = _bold(
        config, params, rng(6), n=n, power=power, grid_t=grid_t
    )
    if config.rois > montage.N_PAIRED_ROIS:  # parcels: one vectorised pass
        oracle = _row_correlations(bold_clean, bold).tolist()
    else:  # the datasets before parcels, bit for bit
        oracle = [
            float(np.corrcoef(bold_clean[r].astype(np.float64), bold[r].astype(np.float64))[0, 1])
            for r in range(config.rois)
        ]

    truth = Truth(
        arrays={
            "bold_clean": bold_clean,
            "envelopes": power[:, n_pre:].astype(np.float32),
            "coupling": params.coupling.astype(np.float32),
            "leadfield": lf.astype(np.float32),
            "hrf": hrf.astype(np.float32),
        },
        attrs=_truth_attrs(
            config=config, params=params, oracle=oracle, env_std=env_std, blinks=blinks
        )
        | _montage_attrs(rotation, log_gain),
    )
    run = RunData(
        subject=subject_label(params.index),
        run=run_label(run_index),
        eeg=eeg,
        bold=bold,
        volume_times=volume_times,
        task=TASK,
        channels=info.eeg.channels,
        rois=info.bold.rois,
        provenance={
            "generator": SOURCE,
            "seed": config.seed,
            "subject_index": params.index,
            "run_index": run_index,
        }
        | ({"site": params.site} if config.sites > 1 else {}),
        truth=truth,
    )
    return validate_run(run, info)


def _eeg(
    config: SimulationConfig,
    params: SubjectParameters,
    rng: Callable[[int], np.random.Generator],
    *,
    n: int,
    power: np.ndarray,
    grid_t: np.ndarray,
    rotation: np.ndarray | None = None,
    log_gain: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """EEG float32 [n_channels, n] in microvolts, the sources' lead field and blink times."""
    sfreq, n_ch, n_src = config.sfreq, config.channels, config.n_sources
    t = np.arange(n) / sfreq
    n_fft = scipy.fft.next_fast_len(n, real=True)
    freqs = np.fft.rfftfreq(n_fft, 1 / sfreq)
    amp_bg = physics.aperiodic_amplitude(
        freqs, exponent=params.aperiodic_exponent, knee_hz=_APERIODIC_KNEE_HZ
    )
    amp_alpha = physics.peak_amplitude(freqs, peak_hz=params.alpha_peak_hz, sd_hz=_ALPHA_SD_HZ)
    amp_beta = physics.peak_amplitude(freqs, peak_hz=params.beta_peak_hz, sd_hz=_BETA_SD_HZ)

    # sources: background + envelope-modulated alpha and beta carriers, 8 at a time
    lf = leadfield(
        n_channels=n_ch,
        positions=params.source_positions,
        moments=params.source_moments,
        rotation=rotation,
    )
    eeg = np.zeros((n_ch, n))
    src_rng = rng(2)
    for start in range(0, n_src, 8):
        idx = np.arange(start, min(start + 8, n_src))
        sources = physics.spectral_noise(src_rng, amp_bg, rows=idx.size, n=n, n_fft=n_fft)
        sources *= params.background_gain_uv[idx, None]
        for band, amp, gains in (
            (0, amp_alpha, params.alpha_gain_uv),
            (1, amp_beta, params.beta_gain_uv),
        ):
            carrier = physics.spectral_noise(src_rng, amp, rows=idx.size, n=n, n_fft=n_fft)
            for row, s in enumerate(idx):
                envelope = np.sqrt(power[2 * s + band])
                carrier[row] *= np.interp(t, grid_t, envelope) * gains[s]
            sources += carrier
            del carrier
        eeg += lf[:, idx] @ sources
        del sources
    n_priv = config.private_sources
    if n_priv:  # subject-private generators: alpha and beta carriers on their own envelopes
        lf_priv = leadfield(
            n_channels=n_ch,
            positions=params.private_positions,
            moments=params.private_moments,
            rotation=rotation,
        )
        priv_rng = rng(8)
        private = np.zeros((n_priv, n))
        for band, amp, gains in (
            (0, amp_alpha, params.private_alpha_gain_uv),
            (1, amp_beta, params.private_beta_gain_uv),
        ):
            carrier = physics.spectral_noise(priv_rng, amp, rows=n_priv, n=n, n_fft=n_fft)
            for k in range(n_priv):
                envelope = np.sqrt(power[2 * (n_src + k) + band])
                carrier[k] *= np.interp(t, grid_t, envelope) * gains[k]
            private += carrier
        eeg += lf_priv @ private
        del private
    diffuse = physics.spectral_noise(rng(3), amp_bg, rows=N_DIFFUSE, n=n, n_fft=n_fft)
    diffuse *= params.diffuse_gain_uv[:, None]
    lf_diffuse = leadfield(
        n_channels=n_ch,
        positions=params.diffuse_positions,
        moments=params.diffuse_moments,
        rotation=rotation,
    )
    eeg += lf_diffuse @ diffuse
    del diffuse

    # sensor noise (each channel and the reference), line noise, blinks
    noise_rng = rng(4)
    noise_sd = config.sensor_noise_uv * np.exp(0.3 * noise_rng.standard_normal(n_ch + 1))
    line_amp = config.line_noise_uv * np.exp(0.5 * noise_rng.standard_normal(n_ch))
    if config.line_freq >= sfreq / 2:  # removed by the recording's anti-alias filter
        line_amp = np.zeros_like(line_amp)
    line_phase = noise_rng.uniform(0, 2 * np.pi, n_ch)
    for c in range(n_ch):
        eeg[c] += noise_sd[c] * noise_rng.standard_normal(n, dtype=np.float32)
    blink_rng = rng(5)
    blinks = physics.blink_times(
        blink_rng, rate_per_min=config.blink_rate_per_min, duration_s=n / sfreq
    )
    blink_amps = params.blink_gain_uv * np.exp(0.25 * blink_rng.standard_normal(blinks.size))
    omega = 2 * np.pi * config.line_freq
    extra_rows = np.stack(
        [
            np.sin(omega * t),
            np.cos(omega * t),
            physics.pulse_train(blinks, blink_amps, n=n, sfreq=sfreq, width_s=_BLINK_WIDTH_S),
            noise_sd[-1] * noise_rng.standard_normal(n),  # reference electrode noise
        ]
    )
    extra_mix = np.column_stack(
        [
            line_amp * np.cos(line_phase),
            line_amp * np.sin(line_phase),
            blink_pattern(n_ch, rotation),
            -np.ones(n_ch),
        ]
    )
    eeg += extra_mix @ extra_rows
    if log_gain is not None:  # the amplifier sees everything through the electrode's gain
        eeg *= np.exp(log_gain)[:, None]
    return eeg.astype(np.float32), lf, blinks


def _bold(
    config: SimulationConfig,
    params: SubjectParameters,
    rng: np.random.Generator,
    *,
    n: int,
    power: np.ndarray,
    grid_t: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """Volume times, float32 bold_clean and bold, the HRF used and the envelopes' std."""
    sigma = config.envelope_log_sd
    env_std = float(np.sqrt(np.expm1(sigma**2)))  # std of a mean-1 log-normal
    drivers = (power - 1.0) / env_std
    hrf = physics.double_gamma_hrf(peak_s=params.hrf_peak_s, sfreq=ENV_SFREQ)
    t_last = (n - 1) / config.sfreq
    n_vol = int(np.floor((t_last - config.tr / 2) / config.tr)) + 1
    volume_times = (np.arange(n_vol) + 0.5) * config.tr

    def at_volumes(x: np.ndarray) -> np.ndarray:
        """HRF * rows of x, sampled at the volume times."""
        response = BOLD_SCALE * signal.fftconvolve(x, hrf[None, :], axes=-1)[:, : grid_t.size]
        return np.stack([np.interp(volume_times, grid_t, row) for row in response])

    if config.rois > montage.N_PAIRED_ROIS:  # parcels: the few drivers through the HRF, then
        clean = params.coupling @ at_volumes(drivers)  # mixed (linear: the same, far cheaper)
    else:  # the datasets before parcels, bit for bit
        clean = at_volumes(params.coupling @ drivers)

    phi = math.exp(-config.tr / config.noise_timescale_s)
    ar = physics.ar1_noise(rng, rows=config.rois + 1, n=n_vol, phi=phi)
    kappa = config.common_mode
    noise = np.sqrt(1 - kappa) * ar[:-1] + np.sqrt(kappa) * ar[-1]
    noise -= noise.mean(axis=1, keepdims=True)
    noise *= np.sqrt(clean.var(axis=1) / (config.snr * noise.var(axis=1)))[:, None]
    bold_clean = clean.astype(np.float32)
    bold = (clean + noise).astype(np.float32)
    return volume_times, bold_clean, bold, hrf, env_std


def _row_correlations(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of ``a`` with the same row of ``b`` (float64)."""
    a = a.astype(np.float64) - a.mean(axis=1, keepdims=True, dtype=np.float64)
    b = b.astype(np.float64) - b.mean(axis=1, keepdims=True, dtype=np.float64)
    return np.einsum("ij,ij->i", a, b) / np.sqrt(
        np.einsum("ij,ij->i", a, a) * np.einsum("ij,ij->i", b, b)
    )


def _session_coupling(
    coupling: np.ndarray, rng: np.random.Generator, config: SimulationConfig
) -> np.ndarray:
    """The subject's coupling with a deviation of relative size ``session_coupling_jitter``
    for one run (each row keeps its norm, so the drive variance and the SNR stay)."""
    noise = rng.standard_normal(coupling.shape) / np.sqrt(coupling.shape[1])
    norms = np.linalg.norm(coupling, axis=1, keepdims=True)
    changed = coupling + config.session_coupling_jitter * norms * noise
    return changed * norms / np.linalg.norm(changed, axis=1, keepdims=True)


def _montage_attrs(rotation: np.ndarray | None, log_gain: np.ndarray | None) -> dict[str, Any]:
    """The run's electrode gains and cap rotation, where the config asks for any."""
    out: dict[str, Any] = {}
    if log_gain is not None:
        out["channel_gain"] = np.exp(log_gain).tolist()
    if rotation is not None:
        out["cap_rotation"] = rotation.tolist()
    return out


def _truth_attrs(
    *,
    config: SimulationConfig,
    params: SubjectParameters,
    oracle: list[float],
    env_std: float,
    blinks: np.ndarray,
) -> dict[str, Any]:
    return {
        "description": (
            "drivers = (envelopes - envelope_mean) / envelope_std (population sources, then "
            "the subject-private ones); bold_clean = HRF * "
            "(coupling @ drivers) sampled at volume_times (envelopes start at t=0, "
            "env_sfreq Hz; the HRF also saw the 64 s before t=0); bold = bold_clean + noise; "
            "oracle_r = corr(bold_clean, bold) per ROI; eeg = leadfield @ sources + "
            "diffuse background + sensor, line and blink noise (FCz reference)"
        ),
        "oracle_r": oracle,
        "snr": float(config.snr),
        "hrf_peak_s": params.hrf_peak_s,
        "env_sfreq": ENV_SFREQ,
        "envelope_names": list(envelope_names(config.n_sources, config.private_sources)),
        "private_coupling": float(config.private_coupling * min(1.0, config.subject_variability))
        if config.private_sources
        else 0.0,
        "envelope_mean": 1.0,
        "envelope_std": env_std,
        "alpha_peak_hz": params.alpha_peak_hz,
        "beta_peak_hz": params.beta_peak_hz,
        "aperiodic_exponent": params.aperiodic_exponent,
        "alpha_gain_uv": params.alpha_gain_uv.tolist(),
        "beta_gain_uv": params.beta_gain_uv.tolist(),
        "source_positions": params.source_positions.tolist(),
        "blink_times_s": blinks.tolist(),
        "line_freq": float(config.line_freq),
        "eeg_reference": montage.REFERENCE,
        "bold_scale": BOLD_SCALE,
        "common_mode": float(config.common_mode),
    }

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
import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy
import scipy.fft
from scipy import signal

import eeg2bold
from eeg2bold.simulate import montage, physics
from eeg2bold.simulate.config import SimulationConfig
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
_N_DIFFUSE = 12  # background-only dipoles spread over the head
_SOURCE_RADIUS = 0.65  # fraction of the head radius
_COUPLING_DENSITY = 0.25  # fraction of drivers each ROI's specific coupling uses
_GP_NUGGET = 1e-4  # independent share of a parcel's weights: keeps the Cholesky factor stable

# Stream keys (see physics.stream): population, subject, run, then a component id.
_POP, _SUBJ, _RUN = 0, 1, 2

# Anatomically motivated directions of the first sources: occipital alpha generators,
# Rolandic beta generators, then frontal, parietal, temporal.
_DESIGNED_DIRECTIONS = (
    (-0.30, -0.80, 0.35),
    (0.30, -0.80, 0.35),
    (-0.60, 0.00, 0.75),
    (0.60, 0.00, 0.75),
    (0.00, 0.55, 0.80),
    (0.00, -0.50, 0.85),
    (-0.90, -0.15, 0.25),
    (0.90, -0.15, 0.25),
)


@dataclass(frozen=True, kw_only=True)
class SubjectParameters:
    """Everything that makes one simulated subject different from another."""

    index: int
    alpha_peak_hz: float
    beta_peak_hz: float
    aperiodic_exponent: float
    hrf_peak_s: float
    source_positions: np.ndarray  # [n_sources, 3], unit head radius
    source_moments: np.ndarray  # [n_sources, 3], unit vectors
    alpha_gain_uv: np.ndarray  # [n_sources]
    beta_gain_uv: np.ndarray  # [n_sources]
    background_gain_uv: np.ndarray  # [n_sources]
    diffuse_positions: np.ndarray  # [_N_DIFFUSE, 3]
    diffuse_moments: np.ndarray  # [_N_DIFFUSE, 3]
    diffuse_gain_uv: np.ndarray  # [_N_DIFFUSE]
    coupling: np.ndarray  # [n_rois, n_env + n_private_env]: population then private drivers
    blink_gain_uv: float
    private_positions: np.ndarray  # [private_sources, 3]
    private_moments: np.ndarray  # [private_sources, 3]
    private_alpha_gain_uv: np.ndarray  # [private_sources]
    private_beta_gain_uv: np.ndarray  # [private_sources]
    site: str = "site-1"
    cap_rotation: np.ndarray | None = None  # [3, 3] the cap on this subject's head (None: none)
    channel_log_gain: np.ndarray | None = None  # [n_channels] (None: unit gains)


def envelope_names(n_sources: int, private_sources: int = 0) -> tuple[str, ...]:
    """Names of the latent drivers, in the order of ``truth/envelopes`` rows: the population
    sources' then the subject-private ones'."""
    bands = ("alpha", "beta")
    shared = tuple(f"src{s}_{band}" for s in range(n_sources) for band in bands)
    return shared + tuple(f"private{s}_{band}" for s in range(private_sources) for band in bands)


def _driver_correlation(config: SimulationConfig) -> np.ndarray:
    """Correlation of the population drivers: envelopes of one band share the global factor
    (log-normal: corr = (e^(s² rho) - 1) / (e^(s²) - 1)); the two bands are independent."""
    n_env = 2 * config.n_sources
    s2 = config.envelope_log_sd**2
    same_band = np.expm1(s2 * config.envelope_shared) / np.expm1(s2)
    band = np.arange(n_env) % 2
    corr = np.where(band[:, None] == band[None, :], same_band, 0.0)
    np.fill_diagonal(corr, 1.0)
    return corr


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


# ----------------------------------------------------------------------------- parameters


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _source_directions(n: int, rng: np.random.Generator) -> np.ndarray:
    """Designed directions first, then a Fibonacci lattice over the upper head."""
    dirs = [np.array(d) for d in _DESIGNED_DIRECTIONS[:n]]
    extra = n - len(dirs)
    if extra > 0:
        golden = np.pi * (3.0 - np.sqrt(5.0))
        i = np.arange(extra)
        z = 0.05 + 0.85 * (i + 0.5) / extra
        phi = i * golden + rng.uniform(0, 2 * np.pi)
        rho = np.sqrt(1 - z**2)
        dirs.extend(np.stack([rho * np.cos(phi), rho * np.sin(phi), z], axis=1))
    return _unit(np.asarray(dirs, dtype=np.float64))


def _tilt(directions: np.ndarray, rng: np.random.Generator, sd_rad: float) -> np.ndarray:
    """Randomly tilt unit vectors by about ``sd_rad``."""
    return _unit(directions + sd_rad * rng.standard_normal(directions.shape))


def _parcel_smoothing(config: SimulationConfig) -> np.ndarray | None:
    """Lower Cholesky factor L [n_parcels, n_parcels] of the parcels' squared-exponential
    correlation exp(-d^2 / (2 l^2)): L @ z of white rows z is a Gaussian-process field with
    unit variance. None where there are no parcels or coupling_length_mm is 0."""
    if config.rois <= montage.N_PAIRED_ROIS or config.coupling_length_mm == 0:
        return None
    return _gp_factor(config.rois, float(config.coupling_length_mm))


@functools.lru_cache(maxsize=4)
def _gp_factor(n_rois: int, length_mm: float) -> np.ndarray:
    """The factor of ``_parcel_smoothing``, once per geometry (read-only: it is shared)."""
    pos = montage.roi_positions(n_rois)[montage.N_PAIRED_ROIS :]
    d2 = ((pos[:, None, :] - pos[None, :, :]) ** 2).sum(axis=-1)
    corr = np.exp(-d2 / (2 * length_mm**2))
    corr[np.diag_indices_from(corr)] += _GP_NUGGET
    factor = np.linalg.cholesky(corr / (1 + _GP_NUGGET))
    factor.flags.writeable = False
    return factor


def _smooth_parcels(white: np.ndarray, smoothing: np.ndarray | None) -> np.ndarray:
    """``white`` [n_rois, k] with the parcels' rows (the last ones) made a smooth field."""
    if smoothing is None:
        return white
    out = white.copy()
    n_parcels = smoothing.shape[0]
    out[-n_parcels:] = smoothing @ white[-n_parcels:]
    return out


def _population(config: SimulationConfig) -> dict[str, Any]:
    """Parameters shared by all subjects; they depend on the seed only."""
    n_src, n_env = config.n_sources, 2 * config.n_sources
    rng = physics.stream(config.seed, _POP, 1)
    dirs = _tilt(_source_directions(n_src, rng), rng, 0.05)
    radius = _SOURCE_RADIUS + 0.05 * rng.uniform(-1, 1, n_src)
    positions = dirs * radius[:, None]
    moments = _tilt(dirs, rng, 0.25)
    posterior = np.clip(-dirs[:, 1], 0, 1)
    rolandic = np.clip(1 - np.abs(dirs[:, 1]) / 0.35, 0, 1) * np.clip(dirs[:, 2], 0, 1)
    alpha = (5.0 + 12.0 * posterior) * np.exp(0.2 * rng.standard_normal(n_src))
    beta = (3.0 + 5.0 * rolandic) * np.exp(0.2 * rng.standard_normal(n_src))
    background = 6.0 * np.exp(0.1 * rng.standard_normal(n_src))

    rng = physics.stream(config.seed, _POP, 2)
    diff_dirs = _unit(rng.standard_normal((_N_DIFFUSE, 3)) + np.array([0.0, 0.0, 0.6]))
    diff_pos = diff_dirs * rng.uniform(0.3, 0.8, (_N_DIFFUSE, 1))
    diff_mom = _tilt(diff_dirs, rng, 0.5)
    diff_gain = 4.0 * np.exp(0.2 * rng.standard_normal(_N_DIFFUSE))

    # ROI coupling: sparse unit-norm rows, left/right homologues alike; the parcels' rows a
    # smooth field over their positions (unless coupling_length_mm is 0)
    smoothing = _parcel_smoothing(config)
    n_sparse = config.rois if smoothing is None else montage.N_PAIRED_ROIS
    rng = physics.stream(config.seed, _POP, 3)
    coupling = np.zeros((config.rois, n_env))
    for r in range(n_sparse):
        mask = rng.random(n_env) < _COUPLING_DENSITY
        mask[rng.integers(n_env)] = True
        row = rng.standard_normal(n_env) * mask
        if r % 2 == 1 and r < montage.N_PAIRED_ROIS:
            row = 0.6 * coupling[r - 1] + 0.8 * _unit(row)
        coupling[r] = _unit(row)
    if smoothing is not None:
        rng = physics.stream(config.seed, _POP, 5)
        coupling[n_sparse:] = _unit(
            smoothing @ rng.standard_normal((config.rois - n_sparse, n_env))
        )
    # Common mode: a global signal that falls when alpha rises (vigilance), weak beta part.
    rng = physics.stream(config.seed, _POP, 4)
    common = np.empty(n_env)
    common[0::2] = -np.abs(1.0 + 0.3 * rng.standard_normal(n_src))
    common[1::2] = 0.3 * rng.standard_normal(n_src)
    return {
        "positions": positions,
        "moments": moments,
        "alpha": alpha,
        "beta": beta,
        "background": background,
        "diff_pos": diff_pos,
        "diff_mom": diff_mom,
        "diff_gain": diff_gain,
        "coupling": coupling,
        "smoothing": smoothing,
        "common": _unit(common),
    }


def subject_parameters(*, config: SimulationConfig, subject_index: int) -> SubjectParameters:
    """Population parameters plus this subject's deviations (stream keyed by the index)."""
    pop = _population(config)
    v = config.subject_variability
    n_src, n_env = config.n_sources, 2 * config.n_sources

    rng = physics.stream(config.seed, _SUBJ, subject_index, 1)
    z = rng.standard_normal(4)
    alpha_peak = float(np.clip(config.alpha_peak_hz + v * 0.8 * z[0], 6.5, 14.0))
    beta_peak = float(np.clip(20.0 + v * 2.0 * z[1], 15.0, 28.0))
    # population mean of the sources' 1/f exponent: with the sensor and diffuse parts it gives
    # a scalp slope near -1 in 2-40 Hz (bench_generalization: the two real eyes-closed EDF
    # recordings are flatter, -0.54; typical resting EEG is -1 to -1.5)
    exponent = float(np.clip(0.8 + v * 0.2 * z[2], 0.3, 2.2))
    hrf_peak = float(np.clip(config.hrf_peak_s + v * config.hrf_peak_sd_s * z[3], 2.5, 10.0))

    rng = physics.stream(config.seed, _SUBJ, subject_index, 2)
    positions = pop["positions"] + v * 0.04 * rng.standard_normal((n_src, 3))
    norms = np.linalg.norm(positions, axis=1, keepdims=True)
    positions = positions * np.minimum(1.0, 0.85 / norms)  # stay inside the head
    moments = _tilt(pop["moments"], rng, v * 0.15)
    alpha_gain = pop["alpha"] * np.exp(v * 0.2 * rng.standard_normal(n_src))
    beta_gain = pop["beta"] * np.exp(v * 0.2 * rng.standard_normal(n_src))
    bg_gain = pop["background"] * np.exp(v * 0.1 * rng.standard_normal(n_src))

    rng = physics.stream(config.seed, _SUBJ, subject_index, 3)
    diff_pos = pop["diff_pos"] + v * 0.04 * rng.standard_normal((_N_DIFFUSE, 3))
    diff_mom = _tilt(pop["diff_mom"], rng, v * 0.15)
    diff_gain = pop["diff_gain"] * np.exp(v * 0.1 * rng.standard_normal(_N_DIFFUSE))

    rng = physics.stream(config.seed, _SUBJ, subject_index, 4)
    jitter = v * config.coupling_jitter / np.sqrt(n_env)
    deviation = _smooth_parcels(rng.standard_normal((config.rois, n_env)), pop["smoothing"])
    specific = _unit(pop["coupling"] + jitter * deviation)
    common = _unit(pop["common"] + jitter * rng.standard_normal(n_env))
    loading = 1.0 + v * 0.2 * rng.standard_normal(config.rois)
    kappa = config.common_mode
    coupling = np.sqrt(1 - kappa) * specific + np.sqrt(kappa) * loading[:, None] * common

    rotation, log_gain = _montage_change(
        physics.stream(config.seed, _SUBJ, subject_index, 7),
        n_channels=config.channels,
        gain_sd=config.subject_gain_sd,
        shift_deg=config.subject_shift_deg,
    )

    rng = physics.stream(config.seed, _SUBJ, subject_index, 5)
    blink_gain = float(config.blink_amplitude_uv * np.exp(v * 0.3 * rng.standard_normal()))

    # subject-private generators and their ROI weights (a stream of their own, so the draws
    # above are the same whatever private_sources is)
    n_priv = config.private_sources
    rng = physics.stream(config.seed, _SUBJ, subject_index, 6)
    priv_dirs = _unit(rng.standard_normal((n_priv, 3)) + np.array([0.0, 0.0, 0.5]))
    priv_positions = priv_dirs * rng.uniform(0.45, 0.75, (n_priv, 1))
    priv_moments = _tilt(priv_dirs, rng, 0.4)
    priv_alpha = 20.0 * np.exp(0.2 * rng.standard_normal(n_priv))
    priv_beta = 10.0 * np.exp(0.2 * rng.standard_normal(n_priv))
    private_weights = (
        _unit(_smooth_parcels(rng.standard_normal((config.rois, 2 * n_priv)), pop["smoothing"]))
        if n_priv
        else None
    )
    share = config.private_coupling * min(1.0, v) if n_priv else 0.0
    # each ROI's expected drive variance: 1 - share from the population drivers, share from
    # the private ones (independent, unit variance each)
    pop_var = np.einsum("re,ef,rf->r", coupling, _driver_correlation(config), coupling)
    coupling = np.sqrt(1 - share) * coupling / np.sqrt(pop_var)[:, None]
    if private_weights is not None:
        coupling = np.hstack([coupling, np.sqrt(share) * private_weights])
    return SubjectParameters(
        index=subject_index,
        alpha_peak_hz=alpha_peak,
        beta_peak_hz=beta_peak,
        aperiodic_exponent=exponent,
        hrf_peak_s=hrf_peak,
        source_positions=positions,
        source_moments=moments,
        alpha_gain_uv=alpha_gain,
        beta_gain_uv=beta_gain,
        background_gain_uv=bg_gain,
        diffuse_positions=diff_pos,
        diffuse_moments=diff_mom,
        diffuse_gain_uv=diff_gain,
        coupling=coupling,
        blink_gain_uv=blink_gain,
        private_positions=priv_positions,
        private_moments=priv_moments,
        private_alpha_gain_uv=priv_alpha,
        private_beta_gain_uv=priv_beta,
        site=f"site-{subject_index % config.sites + 1}",
        cap_rotation=rotation,
        channel_log_gain=log_gain,
    )


def _rotation(rng: np.random.Generator, sd_deg: float) -> np.ndarray:
    """A rotation about a random axis by an angle of SD ``sd_deg`` (Rodrigues' formula)."""
    axis = _unit(rng.standard_normal(3))
    angle = np.deg2rad(sd_deg) * rng.standard_normal()
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def _montage_change(
    rng: np.random.Generator, *, n_channels: int, gain_sd: float, shift_deg: float
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """A cap rotation and per-channel log gains of SDs ``shift_deg`` and ``gain_sd`` (None
    where the SD is 0, so a default dataset stays bit-identical)."""
    rotation = _rotation(rng, shift_deg) if shift_deg > 0 else None
    rng = np.random.default_rng(rng.integers(2**63))
    log_gain = gain_sd * rng.standard_normal(n_channels) if gain_sd > 0 else None
    return rotation, log_gain


def _compose(
    first: tuple[np.ndarray | None, np.ndarray | None],
    then: tuple[np.ndarray | None, np.ndarray | None],
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """A subject's montage change followed by a session's."""
    (r1, g1), (r2, g2) = first, then
    rotation = r1 if r2 is None else r2 if r1 is None else r2 @ r1
    gain = g1 if g2 is None else g2 if g1 is None else g1 + g2
    return rotation, gain


def _sensors(rotation: np.ndarray | None) -> np.ndarray:
    """Every electrode position and the reference's (last row), on a cap rotated by
    ``rotation``."""
    sensors = np.vstack([montage.all_positions(), montage.reference_position()])
    return sensors if rotation is None else sensors @ rotation.T


def leadfield(
    *,
    n_channels: int,
    positions: np.ndarray,
    moments: np.ndarray,
    rotation: np.ndarray | None = None,
) -> np.ndarray:
    """Lead field [n_channels, n_dipoles] in microvolts per unit source, FCz reference.

    Columns are scaled so each dipole's largest scalp potential (over all 64 positions and
    the reference, re infinity) is 1: source gains are then peak scalp amplitudes.
    ``rotation`` moves the cap on the head (an electrode shift).
    """
    sensors = _sensors(rotation)
    full = physics.dipole_potentials(sensors, positions, moments)
    full /= np.abs(full).max(axis=0, keepdims=True)
    return full[:n_channels] - full[-1]


def _blink_pattern(n_channels: int, rotation: np.ndarray | None = None) -> np.ndarray:
    """Scalp pattern of a blink, 1 at Fp1/Fp2, FCz reference.

    The lid sliding over the positively charged cornea acts as an upward dipole at each eye:
    re infinity it gives Fp 1, AF 0.5, Fz 0.25, Cz < 0.1, occipital about 0; the FCz
    reference then adds a small inverted copy (about -0.15) everywhere.
    """
    sensors = _sensors(rotation)
    eyes = np.array([[-0.30, 0.95, -0.20], [0.30, 0.95, -0.20]])
    moments = _unit(np.array([[0.0, 0.5, 0.87], [0.0, 0.5, 0.87]]))
    full = physics.dipole_potentials(sensors, eyes, moments).sum(axis=1)
    referenced = full - full[-1]
    return referenced[:n_channels] / referenced[:2].max()


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
        return physics.stream(config.seed, _RUN, params.index, run_index, component)

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

    rotation, log_gain = _compose(
        (params.cap_rotation, params.channel_log_gain),
        _montage_change(
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
    diffuse = physics.spectral_noise(rng(3), amp_bg, rows=_N_DIFFUSE, n=n, n_fft=n_fft)
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
            _blink_pattern(n_ch, rotation),
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

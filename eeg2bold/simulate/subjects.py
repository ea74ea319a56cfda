"""A simulated subject: everything fixed across its runs (source geometry and spectra,
montage, coupling to the ROIs, HRF), drawn from the population and the subject's own streams.
:mod:`eeg2bold.simulate.simulator` turns one into runs; its docstring gives the model.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from eeg2bold.simulate import montage, physics
from eeg2bold.simulate.config import SimulationConfig

# Stream keys (see physics.stream): population, subject, run, then a component id.
POP, SUBJ, RUN = 0, 1, 2
N_DIFFUSE = 12  # background-only dipoles spread over the head
_SOURCE_RADIUS = 0.65  # fraction of the head radius
_COUPLING_DENSITY = 0.25  # fraction of drivers each ROI's specific coupling uses
_GP_NUGGET = 1e-4  # independent share of a parcel's weights: keeps the Cholesky factor stable


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
    diffuse_positions: np.ndarray  # [N_DIFFUSE, 3]
    diffuse_moments: np.ndarray  # [N_DIFFUSE, 3]
    diffuse_gain_uv: np.ndarray  # [N_DIFFUSE]
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
    rng = physics.stream(config.seed, POP, 1)
    dirs = _tilt(_source_directions(n_src, rng), rng, 0.05)
    radius = _SOURCE_RADIUS + 0.05 * rng.uniform(-1, 1, n_src)
    positions = dirs * radius[:, None]
    moments = _tilt(dirs, rng, 0.25)
    posterior = np.clip(-dirs[:, 1], 0, 1)
    rolandic = np.clip(1 - np.abs(dirs[:, 1]) / 0.35, 0, 1) * np.clip(dirs[:, 2], 0, 1)
    alpha = (5.0 + 12.0 * posterior) * np.exp(0.2 * rng.standard_normal(n_src))
    beta = (3.0 + 5.0 * rolandic) * np.exp(0.2 * rng.standard_normal(n_src))
    background = 6.0 * np.exp(0.1 * rng.standard_normal(n_src))

    rng = physics.stream(config.seed, POP, 2)
    diff_dirs = _unit(rng.standard_normal((N_DIFFUSE, 3)) + np.array([0.0, 0.0, 0.6]))
    diff_pos = diff_dirs * rng.uniform(0.3, 0.8, (N_DIFFUSE, 1))
    diff_mom = _tilt(diff_dirs, rng, 0.5)
    diff_gain = 4.0 * np.exp(0.2 * rng.standard_normal(N_DIFFUSE))

    # ROI coupling: sparse unit-norm rows, left/right homologues alike; the parcels' rows a
    # smooth field over their positions (unless coupling_length_mm is 0)
    smoothing = _parcel_smoothing(config)
    n_sparse = config.rois if smoothing is None else montage.N_PAIRED_ROIS
    rng = physics.stream(config.seed, POP, 3)
    coupling = np.zeros((config.rois, n_env))
    for r in range(n_sparse):
        mask = rng.random(n_env) < _COUPLING_DENSITY
        mask[rng.integers(n_env)] = True
        row = rng.standard_normal(n_env) * mask
        if r % 2 == 1 and r < montage.N_PAIRED_ROIS:
            row = 0.6 * coupling[r - 1] + 0.8 * _unit(row)
        coupling[r] = _unit(row)
    if smoothing is not None:
        rng = physics.stream(config.seed, POP, 5)
        coupling[n_sparse:] = _unit(
            smoothing @ rng.standard_normal((config.rois - n_sparse, n_env))
        )
    # Common mode: a global signal that falls when alpha rises (vigilance), weak beta part.
    rng = physics.stream(config.seed, POP, 4)
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

    rng = physics.stream(config.seed, SUBJ, subject_index, 1)
    z = rng.standard_normal(4)
    alpha_peak = float(np.clip(config.alpha_peak_hz + v * 0.8 * z[0], 6.5, 14.0))
    beta_peak = float(np.clip(20.0 + v * 2.0 * z[1], 15.0, 28.0))
    # population mean of the sources' 1/f exponent: with the sensor and diffuse parts it gives
    # a scalp slope near -1 in 2-40 Hz (bench_generalization: the two real eyes-closed EDF
    # recordings are flatter, -0.54; typical resting EEG is -1 to -1.5)
    exponent = float(np.clip(0.8 + v * 0.2 * z[2], 0.3, 2.2))
    hrf_peak = float(np.clip(config.hrf_peak_s + v * config.hrf_peak_sd_s * z[3], 2.5, 10.0))

    rng = physics.stream(config.seed, SUBJ, subject_index, 2)
    positions = pop["positions"] + v * 0.04 * rng.standard_normal((n_src, 3))
    norms = np.linalg.norm(positions, axis=1, keepdims=True)
    positions = positions * np.minimum(1.0, 0.85 / norms)  # stay inside the head
    moments = _tilt(pop["moments"], rng, v * 0.15)
    alpha_gain = pop["alpha"] * np.exp(v * 0.2 * rng.standard_normal(n_src))
    beta_gain = pop["beta"] * np.exp(v * 0.2 * rng.standard_normal(n_src))
    bg_gain = pop["background"] * np.exp(v * 0.1 * rng.standard_normal(n_src))

    rng = physics.stream(config.seed, SUBJ, subject_index, 3)
    diff_pos = pop["diff_pos"] + v * 0.04 * rng.standard_normal((N_DIFFUSE, 3))
    diff_mom = _tilt(pop["diff_mom"], rng, v * 0.15)
    diff_gain = pop["diff_gain"] * np.exp(v * 0.1 * rng.standard_normal(N_DIFFUSE))

    rng = physics.stream(config.seed, SUBJ, subject_index, 4)
    jitter = v * config.coupling_jitter / np.sqrt(n_env)
    deviation = _smooth_parcels(rng.standard_normal((config.rois, n_env)), pop["smoothing"])
    specific = _unit(pop["coupling"] + jitter * deviation)
    common = _unit(pop["common"] + jitter * rng.standard_normal(n_env))
    loading = 1.0 + v * 0.2 * rng.standard_normal(config.rois)
    kappa = config.common_mode
    coupling = np.sqrt(1 - kappa) * specific + np.sqrt(kappa) * loading[:, None] * common

    rotation, log_gain = montage_change(
        physics.stream(config.seed, SUBJ, subject_index, 7),
        n_channels=config.channels,
        gain_sd=config.subject_gain_sd,
        shift_deg=config.subject_shift_deg,
    )

    rng = physics.stream(config.seed, SUBJ, subject_index, 5)
    blink_gain = float(config.blink_amplitude_uv * np.exp(v * 0.3 * rng.standard_normal()))

    # subject-private generators and their ROI weights (a stream of their own, so the draws
    # above are the same whatever private_sources is)
    n_priv = config.private_sources
    rng = physics.stream(config.seed, SUBJ, subject_index, 6)
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


def montage_change(
    rng: np.random.Generator, *, n_channels: int, gain_sd: float, shift_deg: float
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """A cap rotation and per-channel log gains of SDs ``shift_deg`` and ``gain_sd`` (None
    where the SD is 0, so a default dataset stays bit-identical)."""
    rotation = _rotation(rng, shift_deg) if shift_deg > 0 else None
    rng = np.random.default_rng(rng.integers(2**63))
    log_gain = gain_sd * rng.standard_normal(n_channels) if gain_sd > 0 else None
    return rotation, log_gain


def compose(
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


def blink_pattern(n_channels: int, rotation: np.ndarray | None = None) -> np.ndarray:
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

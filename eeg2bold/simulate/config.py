"""The simulator's configuration: every knob typed, documented and validated."""

from __future__ import annotations

from pydantic import Field, model_validator

from eeg2bold.simulate.montage import MAX_CHANNELS
from eeg2bold.storage.schema import DEFAULT_MIN_WINDOW_S
from eeg2bold.strict_config import StrictConfig


class SimulationConfig(StrictConfig):
    """What to simulate. Frozen so a config can be saved beside results and reused as is.

    The defaults describe a typical resting-state EEG-fMRI session: a 32-channel cap at
    250 Hz, TR 2 s, eight subcortical ROIs, BOLD with equal EEG-explainable and noise variance.
    """

    unknown_key = "simulation option"

    name: str = Field("simulated", min_length=1, description="Dataset name.")
    subjects: int = Field(8, ge=1, description="Number of subjects (sub-01, sub-02, ...).")
    minutes: float = Field(10.0, gt=0, description="Duration of each run in minutes.")
    runs: int = Field(1, ge=1, description="Runs per subject (run-1, run-2, ...).")
    channels: int = Field(
        32,
        ge=1,
        le=MAX_CHANNELS,
        description="EEG channels: the first N of a fixed 10-10 order (19: 10-20 set, 32: cap).",
    )
    sfreq: float = Field(250.0, ge=100.0, le=5000.0, description="EEG sampling rate in Hz.")
    tr: float = Field(2.0, ge=0.1, le=10.0, description="fMRI repetition time in seconds.")
    rois: int = Field(8, ge=1, le=1000, description="Number of BOLD regions of interest.")
    snr: float = Field(
        1.0,
        gt=0,
        description="BOLD signal-to-noise variance ratio per ROI: var(bold_clean)/var(noise).",
    )
    n_sources: int = Field(
        8, ge=1, le=64, description="Neural sources carrying alpha and beta rhythms."
    )
    private_sources: int = Field(
        2,
        ge=0,
        le=16,
        description=(
            "Subject-private sources: alpha and beta generators with their own position, "
            "orientation and band-power envelopes in every subject, unlike the population "
            "sources that all subjects share."
        ),
    )
    private_coupling: float = Field(
        0.4,
        ge=0,
        le=1.0,
        description=(
            "Share of each ROI's EEG-driven BOLD variance carried by the subject-private "
            "sources, through weights drawn per subject: what only a subject's own data can "
            "teach (scaled down with subject_variability below 1; 0 at 0)."
        ),
    )
    line_freq: float = Field(
        50.0,
        gt=0,
        description=(
            "Mains frequency in Hz (50 or 60); at or above Nyquist there is no line noise, as "
            "after the anti-alias filter of a recording at that rate."
        ),
    )
    line_noise_uv: float = Field(
        2.0, ge=0, description="Typical line-noise amplitude per channel in microvolts."
    )
    sensor_noise_uv: float = Field(
        1.5, ge=0, description="Typical white sensor-noise standard deviation in microvolts."
    )
    blink_rate_per_min: float = Field(15.0, ge=0, le=120, description="Mean blinks per minute.")
    blink_amplitude_uv: float = Field(
        100.0, ge=0, description="Typical blink amplitude at Fp1/Fp2 in microvolts."
    )
    alpha_peak_hz: float = Field(
        10.0, ge=6.0, le=14.0, description="Population mean of the individual alpha frequency."
    )
    hrf_peak_s: float = Field(
        5.0, ge=2.0, le=10.0, description="Population mean of the HRF peak delay in seconds."
    )
    hrf_peak_sd_s: float = Field(
        0.7, ge=0, le=3.0, description="Between-subject SD of the HRF peak delay in seconds."
    )
    subject_variability: float = Field(
        1.0,
        ge=0,
        le=5.0,
        description=(
            "Scales every between-subject deviation (lead field, coupling, HRF delay, rhythm "
            "frequencies and gains); 0 makes subjects differ only by their noise."
        ),
    )
    coupling_jitter: float = Field(
        1.0,
        ge=0,
        description=(
            "Size of a subject's deviation from the population ROI coupling, relative to the "
            "population weights (before subject_variability)."
        ),
    )
    coupling_length_mm: float = Field(
        35.0,
        ge=0,
        le=500.0,
        description=(
            "Length scale in mm of the cortical parcels' coupling (ROIs beyond the 14 "
            "subcortical ones, on a cortical shell in MNI space): the population weights, a "
            "subject's deviations from them and its private weights are Gaussian-process "
            "fields over the parcels' positions, so the weights of parcels d mm apart "
            "correlate by exp(-d^2 / (2 l^2)) and neighbouring parcels resemble each other. "
            "0: independent sparse rows, like the subcortical ROIs'."
        ),
    )
    envelope_timescale_s: float = Field(
        5.0,
        gt=0,
        le=600,
        description=(
            "Correlation time of the log band-power envelopes (Ornstein-Uhlenbeck): flat "
            "spectrum below 1/(2 pi tau), so 5 s gives drifts over about 30 s and slower. "
            "Longer times leave fewer independent fluctuations per minute to learn from."
        ),
    )
    envelope_shared: float = Field(
        0.8,
        ge=0,
        le=1.0,
        description=(
            "Fraction of log band-power variance shared by all sources of a band (a global "
            "arousal-like factor); the rest is source-specific."
        ),
    )
    envelope_log_sd: float = Field(
        0.5, gt=0, le=2.0, description="SD of the natural log of band power (log-normal)."
    )
    common_mode: float = Field(
        0.5,
        ge=0,
        le=1.0,
        description=(
            "Fraction of each ROI's signal and of its noise shared across ROIs (global signal)."
        ),
    )
    noise_timescale_s: float = Field(
        3.0,
        gt=0,
        description="Correlation time of the BOLD physiological noise (AR(1) at TR).",
    )
    subject_gain_sd: float = Field(
        0.0,
        ge=0,
        le=1.0,
        description=(
            "Between-subject SD of each channel's log gain (electrode impedance, amplifier): a "
            "subject-specific mixing of the scalp signals, on top of the lead field."
        ),
    )
    subject_shift_deg: float = Field(
        0.0,
        ge=0,
        le=30.0,
        description=(
            "Between-subject rotation of the cap on the head (degrees, about a random axis): "
            "every electrode, and so the lead field, moves with it."
        ),
    )
    session_gain_sd: float = Field(
        0.0,
        ge=0,
        le=1.0,
        description=(
            "Between-run SD of each channel's log gain: what changes between two sessions of "
            "one subject (a run is a session here)."
        ),
    )
    session_shift_deg: float = Field(
        0.0,
        ge=0,
        le=30.0,
        description="Between-run rotation of the cap (degrees): electrodes placed anew.",
    )
    session_coupling_jitter: float = Field(
        0.0,
        ge=0,
        le=5.0,
        description=(
            "Size of each run's deviation from the subject's EEG-BOLD coupling, relative to "
            "it (vigilance, task, state differ between sessions): what a model trained within "
            "a session learns and another session does not share."
        ),
    )
    sites: int = Field(
        1,
        ge=1,
        description=(
            "Recording sites: subject k (0-based) is at site-(k mod sites + 1), stored in each "
            "run's provenance as 'site' (what a grouped leave-one-site-out reads)."
        ),
    )
    seed: int = Field(0, ge=0, description="Seed of every random stream.")

    @model_validator(mode="after")
    def _check_consistency(self) -> SimulationConfig:
        shortest = max(DEFAULT_MIN_WINDOW_S, 3 * self.tr)
        if self.minutes * 60 < shortest:
            raise ValueError(
                f"minutes={self.minutes:g} is too short: a run needs at least {shortest:g} s "
                "(one window and a few volumes)"
            )
        return self

"""Physiologically grounded EEG-fMRI simulator: the embedded default data, with ground truth.

Known latent drivers (band-power envelopes of neural sources), a known EEG forward model and
known BOLD coupling make every later stage checkable: the store records the noise-free BOLD
and the oracle r, the best any model can reach. Typical use::

    config = SimulationConfig(subjects=4, minutes=10)
    info = dataset_info(config=config)
    for run in simulate_runs(config=config):
        ...  # write with the dataset store

Runs are deterministic: subject k depends only on ``seed`` and k (not on how many subjects
are simulated), population parameters only on ``seed``.
"""

from __future__ import annotations

from eeg2bold.simulate.config import SimulationConfig
from eeg2bold.simulate.montage import channel_names, roi_names, roi_positions
from eeg2bold.simulate.physics import double_gamma_hrf
from eeg2bold.simulate.simulator import ENV_SFREQ, dataset_info, simulate_run, simulate_runs
from eeg2bold.simulate.subjects import SubjectParameters, envelope_names, subject_parameters

__all__ = [
    "ENV_SFREQ",
    "SimulationConfig",
    "SubjectParameters",
    "channel_names",
    "dataset_info",
    "double_gamma_hrf",
    "envelope_names",
    "roi_names",
    "roi_positions",
    "simulate_run",
    "simulate_runs",
    "subject_parameters",
]

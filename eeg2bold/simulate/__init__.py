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

Names load on first use: the command line imports :mod:`.config` without scipy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eeg2bold.lazy import lazy_getattr

if TYPE_CHECKING:  # the names for type checkers; at run time, __getattr__ loads them
    from eeg2bold.simulate.config import SimulationConfig as SimulationConfig
    from eeg2bold.simulate.montage import channel_names as channel_names
    from eeg2bold.simulate.montage import roi_names as roi_names
    from eeg2bold.simulate.montage import roi_positions as roi_positions
    from eeg2bold.simulate.physics import double_gamma_hrf as double_gamma_hrf
    from eeg2bold.simulate.simulator import ENV_SFREQ as ENV_SFREQ
    from eeg2bold.simulate.simulator import dataset_info as dataset_info
    from eeg2bold.simulate.simulator import simulate_run as simulate_run
    from eeg2bold.simulate.simulator import simulate_runs as simulate_runs
    from eeg2bold.simulate.subjects import SubjectParameters as SubjectParameters
    from eeg2bold.simulate.subjects import envelope_names as envelope_names
    from eeg2bold.simulate.subjects import subject_parameters as subject_parameters

_WHERE = {
    "SimulationConfig": "eeg2bold.simulate.config",
    "channel_names": "eeg2bold.simulate.montage",
    "roi_names": "eeg2bold.simulate.montage",
    "roi_positions": "eeg2bold.simulate.montage",
    "double_gamma_hrf": "eeg2bold.simulate.physics",
    "ENV_SFREQ": "eeg2bold.simulate.simulator",
    "dataset_info": "eeg2bold.simulate.simulator",
    "simulate_run": "eeg2bold.simulate.simulator",
    "simulate_runs": "eeg2bold.simulate.simulator",
    "SubjectParameters": "eeg2bold.simulate.subjects",
    "envelope_names": "eeg2bold.simulate.subjects",
    "subject_parameters": "eeg2bold.simulate.subjects",
}
__all__ = sorted(_WHERE)

__getattr__ = lazy_getattr(__name__, _WHERE)

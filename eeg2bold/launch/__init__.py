"""Launch: sweeps with Ray Tune + Optuna, resources, storage URLs, resume, cluster templates.

Only :mod:`eeg2bold.launch.ray_tune` imports Ray; this package's ``__init__`` stays light
because every sweep worker imports it.
"""

from __future__ import annotations

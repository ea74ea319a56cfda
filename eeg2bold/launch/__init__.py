"""Launch: sweeps with Ray Tune + Optuna, resources, storage URLs, resume, cluster templates.

Only :mod:`eeg2bold.launch.tune.tuner` (the sweep) and :mod:`eeg2bold.launch.tune.fold_actor` (the
actors it starts on the nodes, without Ray Tune) import Ray; this package's ``__init__`` stays
light because every sweep worker imports it.
"""

from __future__ import annotations

"""Training: windows → batches, losses, the fit loop, metrics, checkpoints, seeding.

Never imports Ray: sweeps call :class:`~eeg2bold.training.fit.FoldTrainer` from their actors.
"""

from __future__ import annotations

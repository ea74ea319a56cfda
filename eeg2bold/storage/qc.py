"""Quality flags computed when a run is stored, so ``inspect`` can show them at a glance."""

from __future__ import annotations

from typing import Any

import numpy as np

from eeg2bold.storage.schema import DatasetInfo, RunData

NOISY_ROBUST_Z = 5.0


def compute_qc(run: RunData, info: DatasetInfo) -> dict[str, Any]:
    """Flat and noisy channels (robust z of log-std across channels) and flat ROIs.

    These are flags for a human, not decisions: nothing is dropped here.
    """
    std = run.eeg.std(axis=1, dtype=np.float64)
    ref = float(np.median(std)) if std.size else 0.0
    flat = std <= max(ref, 1e-12) * 1e-6
    log_std = np.log(np.maximum(std, 1e-30))
    live = log_std[~flat]
    noisy = np.zeros_like(flat)
    if live.size >= 4:
        med = float(np.median(live))
        mad = float(np.median(np.abs(live - med))) * 1.4826
        if mad > 0:
            noisy = ~flat & ((log_std - med) / mad > NOISY_ROBUST_Z)
    bold_std = run.bold.std(axis=1, dtype=np.float64)
    return {
        "flat_channels": [c for c, f in zip(info.eeg.channels, flat, strict=True) if f],
        "noisy_channels": [c for c, f in zip(info.eeg.channels, noisy, strict=True) if f],
        "flat_rois": [r for r, s in zip(info.bold.rois, bold_std, strict=True) if s == 0],
        "eeg_median_std": ref,
    }

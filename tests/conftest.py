"""Shared fixtures: small in-memory datasets and runs built from known numbers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from eeg2bold.storage import BOLDInfo, DatasetInfo, EEGInfo, RunData, Truth

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# One intra-op thread: tests are many small problems, and multi-threaded BLAS/LAPACK on a
# shared 2-core machine spends most of its time waiting (an 800×800 eigh: 9 s vs 0.08 s).
torch.set_num_threads(1)


@pytest.fixture
def make_info() -> Callable[..., DatasetInfo]:
    def make(
        *, n_channels: int = 4, n_rois: int = 3, sfreq: float = 100.0, tr: float = 2.0, **kw: Any
    ) -> DatasetInfo:
        return DatasetInfo(
            name=kw.pop("name", "test"),
            eeg=EEGInfo(sfreq=sfreq, channels=tuple(f"E{i}" for i in range(n_channels))),
            bold=BOLDInfo(tr=tr, rois=tuple(f"roi{i}" for i in range(n_rois))),
            **kw,
        )

    return make


@pytest.fixture
def make_run() -> Callable[..., RunData]:
    def make(
        info: DatasetInfo,
        *,
        subject: str = "sub-01",
        run: str = "run-1",
        seconds: float = 60.0,
        seed: int = 0,
        truth: bool = False,
        **kw: Any,
    ) -> RunData:
        rng = np.random.default_rng(seed)
        n_samples = int(seconds * info.eeg.sfreq)
        n_vol = int((seconds - 1.0) // info.bold.tr)
        times = 1.0 + info.bold.tr * np.arange(n_vol)
        eeg = rng.normal(0, 10, size=(len(info.eeg.channels), n_samples)).astype(np.float32)
        bold = rng.normal(size=(len(info.bold.rois), n_vol)).astype(np.float32)
        t = None
        if truth:
            t = Truth(
                arrays={"bold_clean": bold * 0.5, "envelopes": rng.random((2, 30))},
                attrs={"oracle_r": [0.5] * len(info.bold.rois), "env_sfreq": 10.0},
            )
        return RunData(
            subject=subject,
            run=run,
            eeg=kw.pop("eeg", eeg),
            bold=kw.pop("bold", bold),
            volume_times=kw.pop("volume_times", times),
            truth=t,
            **kw,
        )

    return make

"""Apply trained models to EEG: windows, batches, stitching, and the way back to BOLD units.

A prediction at time ``t`` (seconds on the recording's clock, sample 0 = 0 s) uses the EEG
window of ``window_s`` ending ``delay_s`` before ``t`` — the samples
``[round((t - delay_s)·sfreq) - n_window, round((t - delay_s)·sfreq))``, the same rounding as
training — and exists only where that window lies inside the recording. Windows are
normalised with each fold model's own training statistics; seq2seq outputs of overlapping
windows are stitched (:func:`~eeg2bold.training.metrics.stitch`) exactly as in evaluation;
each fold model's line is mapped back to BOLD units with its own target statistics, then the
fold models are averaged.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from eeg2bold.geometry import WindowGeometry
from eeg2bold.ingest.specs import MatOptions
from eeg2bold.predict.models import ModelSet, PredictError, load_models
from eeg2bold.predict.options import PredictOptions
from eeg2bold.predict.recording import Recording, read_recording
from eeg2bold.training.alignment import Alignment
from eeg2bold.training.data import COMMON_MODE
from eeg2bold.training.fit import resolve_device
from eeg2bold.training.metrics import stitch
from eeg2bold.training.trained import TrainedFold

DEFAULT_STEP_S = 1.0
DEFAULT_BATCH = 256


@dataclass
class Prediction:
    """Predicted ROI BOLD: ``values`` [n_outputs, n_times] at ``times`` (s), in the training
    data's BOLD units; ``members`` [n_models, n_outputs, n_times] holds each fold model's line
    (``values`` is their mean)."""

    times: np.ndarray
    values: np.ndarray
    outputs: tuple[str, ...]
    members: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def column(self, name: str) -> np.ndarray:
        return self.values[self.outputs.index(name)]


def prediction_times(
    models: ModelSet,
    *,
    n_samples: int,
    sfreq: float,
    step_s: float,
    origin_s: float = 0.0,
) -> np.ndarray:
    """Every ``origin_s + k·step_s`` (k any integer) whose EEG window lies in the recording."""
    if not step_s > 0:
        raise PredictError(f"the prediction step must be positive, got {step_s:g} s")
    sample = models.sample
    lo = (sample.window_s + sample.delay_s - origin_s) / step_s
    hi = (n_samples / sfreq + sample.delay_s - origin_s) / step_s
    k = np.arange(int(np.floor(lo)) - 1, int(np.ceil(hi)) + 2)
    times = origin_s + step_s * k
    return times[_valid(times, models=models, n_samples=n_samples, sfreq=sfreq)]


def _geometry(models: ModelSet, sfreq: float) -> WindowGeometry:
    """The windows the models were trained on (the one sample geometry)."""
    return WindowGeometry(models.sample.window_s, models.sample.delay_s, sfreq)


def _window_ends(times: np.ndarray, *, models: ModelSet, sfreq: float) -> np.ndarray:
    return _geometry(models, sfreq).ends(times)


def _valid(times: np.ndarray, *, models: ModelSet, n_samples: int, sfreq: float) -> np.ndarray:
    return _geometry(models, sfreq).valid(times, n_samples)


def _output_times(times: np.ndarray, models: ModelSet) -> np.ndarray:
    """[n, n_out] instants each window predicts (as the training targets are laid out)."""
    return _geometry(models, 1.0).output_times(times, models.sample.n_out)


@torch.no_grad()
def _member_line(
    member: TrainedFold,
    eeg: np.ndarray,
    *,
    alignment: Alignment | None,
    ends: np.ndarray,
    times: np.ndarray,
    models: ModelSet,
    device: torch.device,
    batch_size: int,
    tick: Callable[[], None],
) -> np.ndarray:
    """One fold model's stitched prediction [R, T] in BOLD units."""
    norm = member.normaliser
    n_window = member.n_window
    raw = torch.as_tensor(eeg, dtype=torch.float32, device=device)
    signal = member.input_map(alignment).to(device)(raw)  # as training's batches are made
    windows = signal.unfold(1, n_window, 1)  # [C, N - n + 1, n] view
    starts = torch.as_tensor(ends - n_window, device=device)
    parts = []
    for lo in range(0, starts.numel(), batch_size):
        batch = windows[:, starts[lo : lo + batch_size]].permute(1, 0, 2)
        parts.append(member.module(batch).float().cpu().numpy())
        tick()
    values = np.concatenate(parts).astype(np.float64)  # [T, R, n_out], normalised
    if not np.isfinite(values).all():
        raise PredictError(f"{member.path}: the model predicts non-finite values")
    line = stitch(values, _output_times(times, models), times)
    return line * norm.target_scale[:, None] + norm.target_mean[:, None]


def apply_models(
    models: ModelSet,
    eeg: np.ndarray,
    *,
    sfreq: float,
    times: Sequence[float] | np.ndarray | None = None,
    step_s: float | None = None,
    origin_s: float = 0.0,
    batch_size: int = DEFAULT_BATCH,
    device: torch.device | str = "auto",
    recombine: bool = True,
    progress: bool = False,
) -> Prediction:
    """Predict ROI BOLD from EEG already like the training data (channels in the model's
    order, its units and preprocessing), at ``times`` or on the grid ``origin_s + k·step_s``.

    ``step_s`` defaults to the training data's TR where the model file records it, else 1 s.
    With ``recombine`` (default), a model trained with ``common_mode`` gets its ROI columns
    back as full ROI BOLD (predicted residual + predicted common mode); the ``common_mode``
    column stays.
    """
    eeg = np.asarray(eeg, dtype=np.float32)
    if eeg.ndim != 2 or eeg.shape[0] != len(models.channels):
        raise PredictError(
            f"EEG must be [{len(models.channels)} channels, samples], got shape {eeg.shape}"
        )
    if float(sfreq) != models.sfreq:
        raise PredictError(f"EEG at {sfreq:g} Hz, the model needs {models.sfreq:g} Hz")
    if not np.isfinite(eeg).all():
        raise PredictError("EEG holds NaN or infinite samples")
    n_samples = eeg.shape[1]
    step: float | None
    if times is None:
        step = step_s if step_s is not None else (models.training_tr or DEFAULT_STEP_S)
        grid = prediction_times(
            models, n_samples=n_samples, sfreq=models.sfreq, step_s=step, origin_s=origin_s
        )
    else:
        step = step_s
        grid = np.asarray(times, dtype=np.float64)
        bad = ~_valid(grid, models=models, n_samples=n_samples, sfreq=models.sfreq)
        if bad.any():
            raise PredictError(
                f"{int(bad.sum())} requested time(s) have no full EEG window in the recording "
                f"(first {float(grid[bad][0]):g} s)"
            )
    if grid.size == 0:
        need = models.sample.window_s + models.sample.delay_s
        raise PredictError(
            f"the recording ({n_samples / models.sfreq:.1f} s) is too short for one window "
            f"(window_s {models.sample.window_s:g} s + delay_s {models.sample.delay_s:g} s = "
            f"{need:g} s)"
        )
    target = resolve_device(device) if isinstance(device, str) else device
    for m in models.members:
        m.module.to(target)
    ends = _window_ends(grid, models=models, sfreq=models.sfreq)
    # as training aligned a subject without labels: this recording's own EEG, under its windows
    alignment = models.first.recording_alignment(eeg, ends - models.first.n_window)
    n_batches = -(-grid.size // batch_size) * len(models.members)
    with tqdm(
        total=n_batches,
        desc="predict",
        unit="batch",
        file=sys.stderr,
        disable=not progress,
        leave=False,
    ) as bar:
        lines = np.stack(
            [
                _member_line(
                    m,
                    eeg,
                    alignment=alignment,
                    ends=ends,
                    times=grid,
                    models=models,
                    device=target,
                    batch_size=batch_size,
                    tick=bar.update,
                )
                for m in models.members
            ]
        )
    outputs = models.outputs
    if recombine and models.sample.common_mode and outputs and outputs[-1] == COMMON_MODE:
        lines[:, :-1] += lines[:, -1:]
    info = {
        "step_s": None if step is None else float(step),
        "origin_s": float(origin_s) if times is None else None,
        "window_s": models.sample.window_s,
        "delay_s": models.sample.delay_s,
        "target": models.sample.target,
        "n_out": models.sample.n_out,
        "common_mode_recombined": bool(recombine and models.sample.common_mode),
        "device": str(target),
        "n_models": len(models.members),
        "alignment": None
        if alignment is None
        else (
            f"euclidean, from this recording's own EEG under the predicted windows "
            f"({alignment.n_samples / models.sfreq:.0f} s)"
        ),
    }
    return Prediction(
        times=grid,
        values=lines.mean(axis=0),
        outputs=outputs,
        members=lines,
        info=info,
    )


def predict(
    source: str | ModelSet,
    recording: str | Path,
    options: PredictOptions | None = None,
    *,
    folds: Sequence[str] | None = None,
    mat: MatOptions | None = None,
    times: Sequence[float] | np.ndarray | None = None,
    origin_s: float = 0.0,
    batch_size: int = DEFAULT_BATCH,
    recombine: bool = True,
    progress: bool = False,
    echo: Callable[[str], None] | None = None,
) -> Prediction:
    """Apply a model file, a train folder or a sweep's best trial (see :func:`load_models`)
    to a recording in any supported format (see :func:`read_recording`)."""
    options = options or PredictOptions()
    say = echo or (lambda _msg: None)
    target = resolve_device(options.device)
    models = (
        source
        if isinstance(source, ModelSet)
        else load_models(
            source, protocol=options.protocol, model=options.model, folds=folds, device=target
        )
    )
    say(f"model: {models.description}")
    rec = read_recording(
        recording,
        models=models,
        fmt=options.fmt,
        mat=mat,
        bad_channels=options.bad_channels,
        preprocess=options.preprocess,
        check_amplitude=options.check_amplitude,
        echo=say,
    )
    for note in rec.notes:
        say(note)
    step_s = options.step_s
    if step_s is None and times is None and models.training_tr is None:
        say(
            f"the model file does not record the training TR: predicting every "
            f"{DEFAULT_STEP_S:g} s (choose with the step option)"
        )
    prediction = apply_models(
        models,
        rec.eeg,
        sfreq=rec.sfreq,
        times=times,
        step_s=step_s,
        origin_s=origin_s,
        batch_size=batch_size,
        device=target,
        recombine=recombine,
        progress=progress,
    )
    prediction.notes = list(rec.notes)
    prediction.info.update(describe_run(models, rec))
    return prediction


def describe_run(models: ModelSet, rec: Recording) -> dict[str, Any]:
    """Provenance of a prediction (written to the JSON sidecar)."""
    return {
        "recording": rec.path,
        "recording_duration_s": rec.duration_s,
        "model": models.description,
        "source": models.source,
        "selection": models.selection,
        "members": [m.describe() for m in models.members],
        "training_dataset": models.dataset_name,
        "channels": list(rec.channels),
        "channels_dropped": rec.dropped,
        "sfreq": rec.sfreq,
        "eeg_units": rec.units,
        "preprocessing": rec.steps,
        "bold_units": f"as the training dataset's BOLD ({models.dataset_name or 'unnamed'})",
    }

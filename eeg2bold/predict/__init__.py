"""The digital twin in use: apply trained models to a new EEG-only recording.

    from eeg2bold.predict import predict, write_outputs

    prediction = predict("sweeps/demo", "new.vhdr", protocol="loso")
    write_outputs(prediction, "bold.tsv")          # bold.tsv, bold.json, bold.png

A source is a model file (``models/*.pt``), a ``train`` output folder, or a sweep folder (its
best finished trial of one protocol, fold models averaged). The recording is read in any
format ingest reads and brought to the model's channels, sampling rate, units and the
preprocessing its training data record (:mod:`.recording`); windows, stitching and the way
back to BOLD units are in :mod:`.apply`.
"""

from __future__ import annotations

from eeg2bold.predict.apply import Prediction, apply_models, predict, prediction_times
from eeg2bold.predict.models import (
    ModelSet,
    PredictError,
    load_fold_model,
    load_models,
    read_card,
)
from eeg2bold.predict.output import (
    plot_prediction,
    read_tsv,
    summary_lines,
    write_outputs,
    write_tsv,
)
from eeg2bold.predict.recording import Recording, read_recording
from eeg2bold.training.trained import TrainedFold

__all__ = [
    "ModelSet",
    "PredictError",
    "Prediction",
    "Recording",
    "TrainedFold",
    "apply_models",
    "load_fold_model",
    "load_models",
    "plot_prediction",
    "predict",
    "prediction_times",
    "read_card",
    "read_recording",
    "read_tsv",
    "summary_lines",
    "write_outputs",
    "write_tsv",
]

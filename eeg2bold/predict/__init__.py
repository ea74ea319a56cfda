"""The digital twin in use: apply trained models to a new EEG-only recording.

    from eeg2bold.predict import PredictOptions, predict, write_outputs

    prediction = predict("sweeps/demo", "new.vhdr", PredictOptions(protocol="loso"))
    write_outputs(prediction, "bold.tsv")          # bold.tsv, bold.json, bold.png

A source is a model file (``models/*.pt``), a ``train`` output folder, or a sweep folder (its
best finished trial of one protocol, fold models averaged). The recording is read in any
format ingest reads and brought to the model's channels, sampling rate, units and the
preprocessing its training data record (:mod:`.recording`); windows, stitching and the way
back to BOLD units are in :mod:`.apply`; what a user chooses, in :mod:`.options`.

Names load on first use: the command line imports :mod:`.options` without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eeg2bold.lazy import lazy_getattr

if TYPE_CHECKING:  # the names for type checkers; at run time, __getattr__ loads them
    from eeg2bold.predict.apply import Prediction as Prediction
    from eeg2bold.predict.apply import apply_models as apply_models
    from eeg2bold.predict.apply import predict as predict
    from eeg2bold.predict.apply import prediction_times as prediction_times
    from eeg2bold.predict.models import ModelSet as ModelSet
    from eeg2bold.predict.models import PredictError as PredictError
    from eeg2bold.predict.models import load_fold_model as load_fold_model
    from eeg2bold.predict.models import load_models as load_models
    from eeg2bold.predict.models import read_card as read_card
    from eeg2bold.predict.options import ModelChoice as ModelChoice
    from eeg2bold.predict.options import PredictOptions as PredictOptions
    from eeg2bold.predict.output import plot_prediction as plot_prediction
    from eeg2bold.predict.output import read_tsv as read_tsv
    from eeg2bold.predict.output import summary_lines as summary_lines
    from eeg2bold.predict.output import write_outputs as write_outputs
    from eeg2bold.predict.output import write_tsv as write_tsv
    from eeg2bold.predict.recording import Recording as Recording
    from eeg2bold.predict.recording import read_recording as read_recording
    from eeg2bold.training.trained import TrainedFold as TrainedFold

_WHERE = {
    "Prediction": "eeg2bold.predict.apply",
    "apply_models": "eeg2bold.predict.apply",
    "predict": "eeg2bold.predict.apply",
    "prediction_times": "eeg2bold.predict.apply",
    "ModelSet": "eeg2bold.predict.models",
    "PredictError": "eeg2bold.predict.models",
    "load_fold_model": "eeg2bold.predict.models",
    "load_models": "eeg2bold.predict.models",
    "read_card": "eeg2bold.predict.models",
    "ModelChoice": "eeg2bold.predict.options",
    "PredictOptions": "eeg2bold.predict.options",
    "plot_prediction": "eeg2bold.predict.output",
    "read_tsv": "eeg2bold.predict.output",
    "summary_lines": "eeg2bold.predict.output",
    "write_outputs": "eeg2bold.predict.output",
    "write_tsv": "eeg2bold.predict.output",
    "Recording": "eeg2bold.predict.recording",
    "read_recording": "eeg2bold.predict.recording",
    "TrainedFold": "eeg2bold.training.trained",
}
__all__ = sorted(_WHERE)

__getattr__ = lazy_getattr(__name__, _WHERE)

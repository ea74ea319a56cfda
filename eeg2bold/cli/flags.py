"""Command-line flags of the commands whose options are typed models: ``flag -> field``.
The parser generates each option from its field (:func:`~eeg2bold.cli.options.add_options`);
the command builds the model from what was given (:func:`~eeg2bold.cli.options.options_of`)."""

from __future__ import annotations

TRAIN_FLAGS = {  # training.options.TrainRunOptions
    "--protocol": "protocol",
    "--calibration-minutes": "calibration_minutes",
    "--subjects": "subjects",
    "--out": "out",
    "--resume": "resume",
}
SWEEP_FLAGS = {  # launch.config.SweepOptions
    "--address": "address",
    "--resume": "resume",
    "--dry-run": "dry_run",
    "--num-cpus": "num_cpus",
    "--warm-start": "warm_start",
    "--warm-start-k": "warm_start_k",
}
BEST_FLAGS = {  # study.options.BestOptions
    "--protocol": "protocol",
    "--model": "model",
    "--top": "top",
    "--overall": "overall",
}
MODEL_CHOICE_FLAGS = {  # predict.options.ModelChoice
    "--protocol": "protocol",
    "--model-name": "model",
}
PREDICT_FLAGS = MODEL_CHOICE_FLAGS | {  # predict.options.PredictOptions
    "--step": "step_s",
    "--bad": "bad_channels",
    "--device": "device",
    "--eeg-format": "fmt",
    "--no-preprocess": "preprocess",
    "--no-amplitude-check": "check_amplitude",
}
STREAM_FLAGS = {  # live.options.StreamOptions
    "--source": "source",
    "--out-lsl": "out_lsl",
    "--no-lsl-out": "send_lsl",
    "--every": "every_s",
    "--warmup": "warmup_s",
    "--timeout": "timeout_s",
    "--duration": "duration_s",
    "--no-preprocess": "preprocess",
}
METAVARS = {
    "--calibration-minutes": "M,M,...",
    "--subjects": "SUBJECT",
    "--out": "DIR",
    "--address": "ADDRESS",
    "--num-cpus": "N",
    "--warm-start": "SWEEP",
    "--warm-start-k": "K",
    "--top": "N",
    "--step": "S",
    "--bad": "CHANNEL",
    "--device": "DEVICE",
    "--source": "NAME",
    "--out-lsl": "NAME",
    "--every": "S",
    "--warmup": "S",
    "--timeout": "S",
    "--duration": "S",
}

"""What a user chooses when applying trained models: which ones, and how to read the
recording (the ``eeg2bold predict`` and ``stream`` options). Light to import: the command
line is built from these models before torch is loaded."""

from __future__ import annotations

from pydantic import Field

from eeg2bold.eeg_formats import FileFormat
from eeg2bold.strict_config import StrictConfig


class ModelChoice(StrictConfig):
    """Which models of a sweep or train folder to apply (a model file is its own choice)."""

    protocol: str | None = Field(
        None,
        description="For a sweep or train folder: which protocol's best trial; by default its "
        "only protocol.",
    )
    model: str | None = Field(
        None,
        description="For a sweep or train folder: only this model; by default the protocol's "
        "best trial of any model.",
    )


class PredictOptions(ModelChoice):
    """The ``eeg2bold predict`` options: the models, then how the recording is read."""

    step_s: float | None = Field(
        None, gt=0, description="Seconds between predictions; by default the training TR."
    )
    bad_channels: tuple[str, ...] = Field((), description="Bad channels to interpolate.")
    device: str = Field("auto", description="Where the models run: cpu, cuda or auto.")
    fmt: FileFormat | None = Field(
        None, description="EEG format; by default the file name's extension says it."
    )
    preprocess: bool = Field(
        True, description="Preprocess the recording as the training data were."
    )
    check_amplitude: bool = Field(
        True, description="Refuse a recording whose EEG scale is far from the training data's."
    )

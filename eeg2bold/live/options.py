"""How the live twin reads, updates and sends (the ``eeg2bold stream`` options). Light to
import: the command line is built from it before torch or liblsl is loaded."""

from __future__ import annotations

from pydantic import Field

from eeg2bold.strict_config import StrictConfig

DEFAULT_EVERY_S = 1.0
DEFAULT_WARMUP_S = 60.0


class StreamOptions(StrictConfig):
    """How the live twin reads, updates and sends (the ``eeg2bold stream`` options)."""

    source: str | None = Field(
        None, description="The EEG stream's LSL name; by default the first of type EEG."
    )
    out_lsl: str = Field("eeg2bold-bold", description="Name of the BOLD stream sent out.")
    send_lsl: bool = Field(True, description="Send the BOLD updates out as an LSL stream.")
    every_s: float = Field(DEFAULT_EVERY_S, gt=0, description="Seconds per update.")
    warmup_s: float = Field(
        DEFAULT_WARMUP_S,
        gt=0,
        description="Seconds of stream to align a model trained with data.align: euclidean on.",
    )
    timeout_s: float = Field(
        30.0,
        gt=0,
        description="Seconds without a sample before giving up (exit 1).",
    )
    stall_s: float = Field(2.0, gt=0, description="Seconds without a sample before saying so.")
    duration_s: float | None = Field(
        None, gt=0, description="Stop after this many seconds of stream; by default never."
    )
    preprocess: bool = Field(True, description="Preprocess the stream as the training data were.")

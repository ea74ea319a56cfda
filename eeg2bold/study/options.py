"""What ``eeg2bold best`` shows. Light to import: the command line is built from it before
pandas or Optuna is loaded."""

from __future__ import annotations

from pydantic import Field

from eeg2bold.strict_config import StrictConfig


class BestOptions(StrictConfig):
    """Which of a sweep's best trials to show (the ``eeg2bold best`` options)."""

    protocol: str | None = Field(None, description="Only this protocol.")
    model: str | None = Field(None, description="Only this model.")
    top: int = Field(1, ge=1, description="Trials per protocol and model.")
    overall: bool = Field(
        False,
        description="One ranking across protocols and models (their val r are not comparable).",
    )

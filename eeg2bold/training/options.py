"""How ``eeg2bold train`` runs a configuration: its protocol, folds and run folder (the
configuration itself is :class:`~eeg2bold.training.config.ExperimentConfig`). Light to
import: the command line is built from it before torch is loaded."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from eeg2bold.strict_config import StrictConfig

if TYPE_CHECKING:
    from eeg2bold.training.config import ExperimentConfig

# the protocol a configuration is trained under when none is named
DEFAULT_PROTOCOL = "within"
CURVE_PROTOCOL = "loso_calibrated"  # a calibration curve's points


class TrainRunOptions(StrictConfig):
    """Which protocol and folds a run trains, and where it keeps them (the ``eeg2bold train``
    run control; the configuration itself comes from ``--set``)."""

    protocol: str = Field(
        DEFAULT_PROTOCOL,
        description="within, within_run, leave_one_run_out, loso or loso_calibrated.",
    )
    calibration_minutes: tuple[Annotated[float, Field(ge=0)], ...] | None = Field(
        None,
        min_length=1,
        description=f"The calibration curve: {CURVE_PROTOCOL} at each amount of the held-out "
        "subject's data (e.g. 0,1,2,4,8; one fixed test block), one trial per amount.",
    )
    subjects: tuple[str, ...] | None = Field(
        None, min_length=1, description="Only these folds; by default all."
    )
    out: str | None = Field(
        None, description="Output folder; by default one named by model, protocol and config hash."
    )
    resume: bool = Field(False, description="Continue an interrupted run in the output folder.")

    def experiment(self, model: str, sets: Mapping[str, str] | None = None) -> ExperimentConfig:
        """The configuration this run trains (a curve's under :data:`CURVE_PROTOCOL`)."""
        from eeg2bold.training.config import build_config

        protocol = CURVE_PROTOCOL if self.calibration_minutes else self.protocol
        return build_config(model=model, protocol=protocol, sets=sets)

    def folder(self, config: ExperimentConfig) -> str:
        """The run folder: ``out``, or the default one of this configuration."""
        from eeg2bold.run_folder.folder import default_train_folder

        kind = "calibration" if self.calibration_minutes else config.protocol
        return self.out or default_train_folder(config.model, kind, config.config_hash())

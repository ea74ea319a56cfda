"""A trained fold: one type for every use of a trained model after training.

A fold model file holds a card (``eeg2bold.model/1``): the weights with the normaliser, sample
configuration and alignment rule they were trained with. :class:`TrainedFold` rebuilds all of
it, and :meth:`TrainedFold.input_map` is how raw EEG becomes its input for ``predict``, the
report's interpretation and the live stream: the same :class:`~eeg2bold.training.inputs.InputMap`
training's batches are made with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from eeg2bold.errors import Eeg2BoldError
from eeg2bold.models import BoldModel, DataSpec, build_model
from eeg2bold.run_folder.cards import ModelFileError, load_refusal, read_card
from eeg2bold.training.alignment import Alignment, coverage, euclidean_alignment
from eeg2bold.training.data import SampleConfig
from eeg2bold.training.inputs import InputMap, Normaliser


@dataclass
class TrainedFold:
    """One trained fold model, built and loaded, with the card it came from."""

    path: str
    card: dict[str, Any]
    module: BoldModel
    normaliser: Normaliser
    sample: SampleConfig

    @classmethod
    def load(cls, path: str, *, device: torch.device | str = "cpu") -> TrainedFold:
        """Build the model a card describes and load its weights (eval mode, on ``device``);
        :class:`ModelFileError` in one line otherwise."""
        card = read_card(path)
        try:
            spec = DataSpec(**card["spec"])
            module = build_model(card["model"], spec, card["model_params"])
            module.load_state_dict(card["state_dict"])
            normaliser = Normaliser.from_state(card["normaliser"])
            sample = SampleConfig(**card["sample_config"])
        except Eeg2BoldError as exc:
            raise ModelFileError(f"{path}: {exc}") from None
        except Exception as exc:
            raise ModelFileError(
                f"{path}: cannot rebuild the model ({load_refusal(exc)})"
            ) from None
        module.eval().to(device)
        return cls(path=path, card=card, module=module, normaliser=normaliser, sample=sample)

    @property
    def fold_subject(self) -> str:
        return str(self.card.get("fold", {}).get("subject", ""))

    @property
    def n_window(self) -> int:
        return int(self.module.spec.n_times)

    def describe(self) -> dict[str, Any]:
        fold = self.card.get("fold", {})
        return {
            "file": self.path,
            "model": self.card["model"],
            "protocol": self.card.get("protocol"),
            "fold": fold.get("index"),
            "fold_subject": fold.get("subject"),
            "best_epoch": self.card.get("best_epoch"),
        }

    def recording_alignment(
        self, eeg: np.ndarray, window_starts: np.ndarray | None = None
    ) -> Alignment | None:
        """For a model trained with ``data.align: euclidean``: the alignment of a recording
        [C, N] from its own EEG under the windows starting at ``window_starts`` (every sample
        when None), as training aligned a subject it had no labels for; else None."""
        if self.sample.align != "euclidean":
            return None
        mask = None
        if window_starts is not None:
            mask = coverage(np.asarray(window_starts), self.n_window, eeg.shape[1])
        return euclidean_alignment([(eeg, mask)], source="recording")

    def input_map(self, alignment: Alignment | None = None) -> InputMap:
        """Raw EEG → this model's input, with ``alignment`` where the model aligns."""
        if (alignment is not None) != (self.sample.align == "euclidean"):
            raise ValueError(f"{self.path}: data.align is {self.sample.align!r}")
        return InputMap(self.normaliser, alignment)

    def model_input(self, eeg: np.ndarray) -> np.ndarray:
        """One recording's raw EEG [C, N] (the model's channels) as the model sees it, float32:
        aligned by its own EEG where the model aligns, normalised as in training."""
        signal = torch.as_tensor(np.asarray(eeg, dtype=np.float32))
        out = self.input_map(self.recording_alignment(eeg))(signal)
        return np.asarray(out.numpy())

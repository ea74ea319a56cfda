"""What to apply: one model file, the fold models of a ``train`` folder, or a sweep's best trial.

Every source becomes a :class:`ModelSet`: one or more fold models that share the data
interface (channels, sampling rate, units, windows, outputs, preprocessing record) and whose
predictions are averaged in BOLD units. For a sweep, the members are the fold models of the
best finished trial of one protocol (ranked by mean validation r, as ``eeg2bold best`` ranks):
for ``loso`` that is an ensemble of models none of which saw the new subject.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import fsspec
import numpy as np
import torch

from eeg2bold.errors import Eeg2BoldError
from eeg2bold.run_folder import RunFolder, cards
from eeg2bold.training.data import SampleConfig
from eeg2bold.training.trained import TrainedFold


class PredictError(Eeg2BoldError):
    """A model source or a recording that cannot be used for prediction (one line)."""


@dataclass
class ModelSet:
    """Fold models applied together (their predictions averaged in BOLD units)."""

    members: list[TrainedFold]
    source: str
    description: str
    selection: dict[str, Any] = field(default_factory=dict)

    @property
    def first(self) -> TrainedFold:
        return self.members[0]

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(self.first.card["channels"])

    @property
    def sfreq(self) -> float:
        return float(self.first.card["spec"]["sfreq"])

    @property
    def units(self) -> str:
        return str(self.first.card["units"])

    @property
    def outputs(self) -> tuple[str, ...]:
        return tuple(self.first.card["outputs"])

    @property
    def sample(self) -> SampleConfig:
        return self.first.sample

    @property
    def preprocessing(self) -> dict[str, Any]:
        """The training dataset's preprocessing record ({} for simulated data)."""
        return _json_field(self.first.card["dataset"].get("preprocessing", "{}"))

    @property
    def dataset_name(self) -> str:
        return str(self.first.card["dataset"].get("name", ""))

    @property
    def training_tr(self) -> float | None:
        """The training data's TR where the model file records it, else None.

        Read from a ``bold`` entry of the card (``DatasetInfo.bold`` attrs) when present, else
        from the ingest config (``bold.tr``) in the preprocessing record.
        """
        bold = self.first.card.get("bold")
        if bold is not None:
            tr = _json_field(bold).get("tr")
            if tr:
                return float(tr)
        tr = self.preprocessing.get("config", {}).get("bold", {}).get("tr")
        return float(tr) if tr else None


def _json_field(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    try:
        out = json.loads(value) if value else {}
    except (TypeError, ValueError):
        return {}
    return out if isinstance(out, dict) else {}


def read_card(path: str) -> dict[str, Any]:
    """A model card (format ``eeg2bold.model/1``), loaded with ``weights_only=True``."""
    try:
        return cards.read_card(path)
    except cards.ModelFileError as exc:
        raise PredictError(str(exc)) from None


def load_fold_model(path: str, *, device: torch.device | str = "cpu") -> TrainedFold:
    """:meth:`TrainedFold.load`, refusing as prediction does."""
    try:
        return TrainedFold.load(path, device=device)
    except cards.ModelFileError as exc:
        raise PredictError(str(exc)) from None


_SHARED = ("channels", "units", "outputs", "spec", "sample_config")


def model_set(
    paths: Sequence[str],
    *,
    source: str,
    description: str,
    device: torch.device | str = "cpu",
    folds: Sequence[str] | None = None,
    selection: dict[str, Any] | None = None,
) -> ModelSet:
    """Load fold models that must agree on their data interface; ``folds`` keeps only the
    fold models whose fold subject is listed."""
    members = [load_fold_model(p, device=device) for p in sorted(paths)]
    if folds:
        have = [m.fold_subject for m in members]
        unknown = [f for f in folds if f not in have]
        if unknown:
            raise PredictError(f"{source}: no fold model for {unknown}; folds: {sorted(have)}")
        members = [m for m in members if m.fold_subject in folds]
        description += f"; only fold(s) {', '.join(folds)}"
    first = members[0]
    for other in members[1:]:
        for key in _SHARED:
            if other.card[key] != first.card[key]:
                raise PredictError(
                    f"{source}: {other.path} and {first.path} differ in {key}; they cannot be "
                    "averaged (predict with one model file)"
                )
        if _json_field(other.card["dataset"].get("preprocessing", "{}")) != _json_field(
            first.card["dataset"].get("preprocessing", "{}")
        ):
            raise PredictError(
                f"{source}: {other.path} and {first.path} were trained on data preprocessed "
                "differently; they cannot be averaged"
            )
    return ModelSet(
        members=members, source=source, description=description, selection=selection or {}
    )


def load_models(
    source: str,
    *,
    protocol: str | None = None,
    model: str | None = None,
    folds: Sequence[str] | None = None,
    device: torch.device | str = "cpu",
) -> ModelSet:
    """A model file (``.pt``), a ``train`` output folder (its ``models/*.pt``) or a sweep folder
    (the best finished trial of ``protocol``, optionally of one ``model``)."""
    fs, local = fsspec.core.url_to_fs(source)
    if not fs.exists(local):
        raise PredictError(f"{source}: no such model file or folder")
    if not fs.isdir(local):
        member = load_fold_model(source, device=device)
        return model_set(
            [source], source=source, description=_describe_file(member), device=device, folds=folds
        )
    folder = RunFolder(source)
    if folder.kind == "sweep":
        return _sweep_models(folder, protocol=protocol, model=model, folds=folds, device=device)
    paths = folder.model_files()
    if not paths:
        raise PredictError(
            f"{source}: neither a model file, a sweep folder (sweep.json) nor a train output "
            "folder (models/*.pt)"
        )
    found_cards = {p: read_card(p) for p in paths}
    if protocol:
        paths = [p for p in paths if found_cards[p].get("protocol") == protocol]
        if not paths:
            have = sorted({str(c.get("protocol")) for c in found_cards.values()})
            raise PredictError(f"{source}: no model of protocol {protocol!r} (found {have})")
    if model:
        paths = [p for p in paths if found_cards[p].get("model") == model]
        if not paths:
            raise PredictError(f"{source}: no model {model!r}")
    configs = {_config_key(found_cards[p]) for p in paths}
    if len(configs) > 1:
        raise PredictError(
            f"{source}: models of {len(configs)} configurations; name one model file "
            "(or --protocol/--model)"
        )
    first = found_cards[paths[0]]
    description = (
        f"{first['model']} ({first.get('protocol')}), {len(paths)} fold model(s) of {source}"
    )
    return model_set(paths, source=source, description=description, device=device, folds=folds)


def _config_key(card: dict[str, Any]) -> str:
    text = json.dumps(_json_field(card.get("config", "{}")), sort_keys=True)
    return text


def _describe_file(member: TrainedFold) -> str:
    card = member.card
    fold = card.get("fold", {})
    where = f", fold {fold.get('subject')}" if fold.get("subject") else ""
    return f"{card['model']} ({card.get('protocol')}{where}) from {member.path}"


# -- sweeps ----------------------------------------------------------------------------------
def _sweep_models(
    folder: RunFolder,
    *,
    protocol: str | None,
    model: str | None,
    folds: Sequence[str] | None,
    device: torch.device | str,
) -> ModelSet:
    from eeg2bold.study.options import BestOptions
    from eeg2bold.study.queries import best_trials, load_sweep, no_such

    root = folder.url
    sweep = load_sweep(root)
    arms = sweep.arms()
    protocols = sorted({a["protocol"] for a in arms})
    if protocol is None:
        if len(protocols) != 1:
            raise PredictError(
                f"{root}: the sweep has protocols {protocols}: choose one with --protocol"
            )
        protocol = protocols[0]
    if protocol not in protocols:
        raise PredictError(no_such(root, "protocol", protocol, protocols))
    models = sorted({a["model"] for a in arms if a["protocol"] == protocol})
    if model is not None and model not in models:
        raise PredictError(no_such(root, "model", model, models))
    best = best_trials(sweep, BestOptions(protocol=protocol, model=model, top=1))
    if not best.empty:
        best = best[best["finished"].astype(bool)]
    what = f"protocol {protocol!r}" + (f", model {model!r}" if model else "")
    if best.empty:
        raise PredictError(
            f"{root}: no finished trial for {what} (only trials that ran to the end leave "
            "model files; see `eeg2bold trials`)"
        )
    row = best.sort_values("val_r", ascending=False).iloc[0]
    arm = next(a for a in arms if a["protocol"] == protocol and a["model"] == row["model"])
    trial_id = row["trial"]
    if not isinstance(trial_id, str) or not trial_id:
        raise PredictError(
            f"{root}: trial {int(row['number'])} of {arm['study_name']} has no trial_id user "
            "attribute, so its model files cannot be found"
        )
    paths = folder.model_files(trial_id)
    n_folds = len(arm.get("folds", [])) or len(paths)
    if not paths or len(paths) != n_folds:
        raise PredictError(
            f"{root}: trial {trial_id} left {len(paths)} of {n_folds} fold model files under "
            "models/"
        )
    selection = {
        "sweep": root,
        "protocol": protocol,
        "model": str(row["model"]),
        "trial": trial_id,
        "number": int(row["number"]),
        "val_r": float(row["val_r"]),
        "config_hash": row.get("config_hash"),
        "rule": "best finished trial by mean validation r; its fold models averaged",
    }
    description = (
        f"{row['model']} ({protocol}), trial {trial_id} of {root} "
        f"(best by val r {float(row['val_r']):.3f}): mean of {len(paths)} fold model(s)"
    )
    return model_set(
        paths,
        source=root,
        description=description,
        device=device,
        folds=folds,
        selection=selection,
    )


def normaliser_scale(models: ModelSet) -> np.ndarray:
    """Per-channel EEG scale of the training data (median over fold models)."""
    return np.median(np.stack([m.normaliser.eeg_scale for m in models.members]), axis=0)

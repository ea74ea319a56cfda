"""Train one configuration on every fold of a protocol, in this process (no Ray).

This is what ``eeg2bold train`` runs; sweeps run the same :class:`FoldTrainer` per fold inside
Ray actors instead. Results rows go to the results table fold by fold, best weights to model
files, and the in-flight fold's state to a resume checkpoint after every epoch, so an
interrupted run continues where it stopped (``resume=True``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from eeg2bold.errors import ConfigError
from eeg2bold.protocols import Fold, build_sample_table, get_protocol
from eeg2bold.storage import Dataset, RunData, RunKey
from eeg2bold.study.results import ResultsWriter
from eeg2bold.training.checkpoint import load, save_atomic
from eeg2bold.training.config import ExperimentConfig
from eeg2bold.training.data import FoldData
from eeg2bold.training.fit import EpochReport, FoldTrainer, SplitScore, resolve_device
from eeg2bold.training.metrics import fisher_mean
from eeg2bold.training.outputs import write_fold_outputs
from eeg2bold.training.rows import result_rows


@dataclass
class FoldResult:
    fold: Fold
    best_epoch: int
    val: SplitScore
    test: SplitScore
    history: list[dict[str, Any]]
    model_file: str | None = None
    resumed: bool = False


@dataclass
class ProtocolResult:
    config: ExperimentConfig
    config_hash: str
    outputs: tuple[str, ...]
    folds: list[FoldResult] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Per-output and overall test/val r across folds (Fisher-z means)."""
        out: dict[str, Any] = {"config_hash": self.config_hash, "outputs": list(self.outputs)}
        for split in ("val", "test"):
            per_fold = np.array([getattr(f, split).r for f in self.folds])
            out[f"{split}_r_per_output"] = dict(
                zip(
                    self.outputs, np.atleast_1d(fisher_mean(per_fold, axis=0)).tolist(), strict=True
                )
            )
            out[f"{split}_r_mean"] = float(fisher_mean(per_fold))
        out["folds"] = [
            {
                "fold": f.fold.index,
                "subject": f.fold.subject,
                "best_epoch": f.best_epoch,
                "n_train": int(f.fold.train.size),
                "n_val": f.val.n,
                "n_test": f.test.n,
                "val_r": dict(zip(self.outputs, f.val.r.tolist(), strict=True)),
                "test_r": dict(zip(self.outputs, f.test.r.tolist(), strict=True)),
                "val_r_mean": f.val.mean,
                "test_r_mean": f.test.mean,
                "model_file": f.model_file,
            }
            for f in self.folds
        ]
        return out


def train_protocol(
    dataset: Dataset,
    config: ExperimentConfig,
    *,
    out_dir: str | Path | None = None,
    subjects: list[str] | None = None,
    resume: bool = False,
    on_epoch: Callable[[Fold, EpochReport], None] | None = None,
    on_fold: Callable[[FoldResult], None] | None = None,
) -> ProtocolResult:
    """Fit ``config`` on every fold of its protocol (or the folds of ``subjects``)."""
    config = config.resolved()
    config_hash = config.config_hash()
    samples = build_sample_table(
        dataset, window_s=config.data.window_s, delay_s=config.data.delay_s
    )
    folds = get_protocol(config.protocol, **config.protocol_options).folds(samples)
    if subjects:
        unknown = sorted(set(subjects) - set(samples.subjects))
        if unknown:
            raise ConfigError(f"unknown subject(s) {unknown}; the dataset has {samples.subjects}")
        folds = [f for f in folds if f.subject in subjects]
    device = resolve_device(config.train.device)
    out = Path(out_dir) if out_dir is not None else None
    writer = ResultsWriter(out / "results") if out is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(config.model_dump(mode="json"), indent=2))

    @cache
    def read_run(key: RunKey) -> RunData:
        return dataset.read_run(key)

    result = ProtocolResult(config=config, config_hash=config_hash, outputs=())
    for fold in folds:
        data = FoldData(
            dataset, samples, fold, config=config.data, device=device, read_run=read_run
        )
        result.outputs = data.outputs
        stem = f"{config.protocol}-{fold.subject}-{config_hash}"
        state_file = out / "checkpoints" / f"{stem}.state.pt" if out is not None else None
        trainer = FoldTrainer(
            data=data,
            model_name=config.model,
            model_params=config.model_params,
            config=config.train,
        )
        resumed = bool(resume and state_file is not None and state_file.exists())
        if resumed:
            assert state_file is not None
            trainer.load_state_dict(load(state_file))
        while not trainer.done:
            report = trainer.step()
            if state_file is not None:
                save_atomic(trainer.state_dict(), state_file)
            if on_epoch is not None:
                on_epoch(fold, report)
        final = trainer.finish()
        fold_result = FoldResult(
            fold=fold,
            best_epoch=trainer.best_epoch,
            val=final["val"],
            test=final["test"],
            history=trainer.history,
            resumed=resumed,
        )
        if out is not None:
            written = write_fold_outputs(
                trainer, dataset=dataset, config=config, root=str(out), stem=stem
            )
            fold_result.model_file = written["model"]
        if writer is not None and not (resumed and out is not None and _already_written(out, stem)):
            writer.write(
                result_rows(
                    config=config,
                    config_hash=config_hash,
                    fold=fold,
                    outputs=data.outputs,
                    history=trainer.history,
                    final=final,
                    best_epoch=trainer.best_epoch,
                ),
                tag=stem,
            )
        result.folds.append(fold_result)
        if on_fold is not None:
            on_fold(fold_result)
    return result


def _already_written(out: Path, stem: str) -> bool:
    return any((out / "results").glob(f"{stem}-*.parquet"))

"""The work of one fold inside a sweep trial, as a plain class (Ray wraps it as an actor).

Kept free of Ray, Tune and Optuna imports: every trial starts one actor per fold, and each
actor process imports only what training needs.
"""

from __future__ import annotations

import io
import time
from typing import Any

import torch


class FoldWorker:
    """One fold of one trial: builds its data and trainer, then steps on request."""

    def __init__(self, threads: int, has_gpu: bool):
        torch.set_num_threads(max(1, threads))
        self.has_gpu = has_gpu
        self._datasets: dict[str, Any] = {}
        self._runs: dict[tuple[str, Any], Any] = {}  # runs read by earlier trials

    def setup(self, dataset_url: str, experiment_json: str, fold_index: int) -> str:
        """Build the fold's data and trainer (a method, not ``__init__``, so that errors
        arrive as task errors with their cause); returns the fold's subject."""
        from eeg2bold.launch.optuna_storage import expand_env
        from eeg2bold.protocols import build_sample_table, get_protocol
        from eeg2bold.storage import open_dataset
        from eeg2bold.training.config import ExperimentConfig
        from eeg2bold.training.data import FoldData
        from eeg2bold.training.fit import FoldTrainer, resolve_device

        self.config = ExperimentConfig.model_validate_json(experiment_json)
        if dataset_url not in self._datasets:
            self._datasets[dataset_url] = open_dataset(expand_env(dataset_url))
        dataset = self._datasets[dataset_url]
        self.dataset = dataset

        def read_run(key: Any) -> Any:
            if (dataset_url, key) not in self._runs:
                self._runs[(dataset_url, key)] = dataset.read_run(key)
            return self._runs[(dataset_url, key)]

        cfg = self.config
        samples = build_sample_table(dataset, window_s=cfg.data.window_s, delay_s=cfg.data.delay_s)
        self.fold = get_protocol(cfg.protocol, **cfg.protocol_options).folds(samples)[fold_index]
        device_name = cfg.train.device
        if device_name == "auto" and not self.has_gpu:
            device_name = "cpu"
        data = FoldData(
            dataset,
            samples,
            self.fold,
            config=cfg.data,
            device=resolve_device(device_name),
            read_run=read_run,
        )
        self.outputs = data.outputs
        self.trainer = FoldTrainer(
            data=data, model_name=cfg.model, model_params=cfg.model_params, config=cfg.train
        )
        return self.fold.subject

    def step(self) -> dict[str, Any]:
        report = self.trainer.step()
        return {
            "epoch": report.epoch,
            "val_r": report.val.r.tolist(),
            "val_mean": report.val.mean,
            "best": self.trainer.best_score,
            "done": report.stop,
            "train_loss": report.train_loss,
            "seconds": report.seconds,
            "data_seconds": report.data_seconds,
            "outputs": list(self.outputs),
            "subject": self.fold.subject,
            "n_val": report.val.n,
        }

    def state(self) -> bytes:
        buffer = io.BytesIO()
        torch.save(self.trainer.state_dict(), buffer)
        return buffer.getvalue()

    def load(self, blob: bytes) -> int:
        self.trainer.load_state_dict(torch.load(io.BytesIO(blob), weights_only=True))
        return self.trainer.epoch

    def finish(
        self, sweep: str, trial: str, config_hash: str, results: str | None = None
    ) -> dict[str, Any]:
        """Best-val weights scored on val and test; with ``results``, the model file and the
        predictions are written there too (``models/``, ``predictions/``)."""
        from eeg2bold.training.outputs import write_fold_outputs
        from eeg2bold.training.rows import result_rows

        started = time.perf_counter()
        final = self.trainer.finish()
        if results is not None:
            write_fold_outputs(
                self.trainer,
                dataset=self.dataset,
                config=self.config,
                root=results,
                stem=f"{trial}-fold{self.fold.index}",
            )
        rows = result_rows(
            config=self.config,
            config_hash=config_hash,
            fold=self.fold,
            outputs=self.outputs,
            history=[],
            final=final,
            best_epoch=self.trainer.best_epoch,
            sweep=sweep,
            trial=trial,
        )
        return {
            "rows": rows,
            "val": final["val"].mean,
            "test": final["test"].mean,
            "best_epoch": self.trainer.best_epoch,
            "seconds": time.perf_counter() - started,  # final scoring + model/prediction files
        }

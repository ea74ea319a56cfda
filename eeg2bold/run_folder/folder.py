"""A run folder: everything one ``eeg2bold train`` run or one sweep leaves behind, found only
through :class:`RunFolder` (nobody builds these paths by hand).

```
<run folder>/                 a local path (recorded absolute) or an fsspec URL
  sweep.json | run.json       the manifest: what ran (sweeps: plan, study config, state)
  table/*.parquet             the results table (:mod:`eeg2bold.run_folder.table`)
  configs/<config_hash>.json  the resolved experiment config every row's hash resolves to
  models/<trial>-fold<k>.pt   best weights + card of a finished fold (:mod:`.cards`)
  predictions/<trial>-fold<k>.npz   val/test truth and predictions at the volume times
  checkpoints/<trial>-fold<k>.pt    resume state, rewritten after every epoch
  done/<trial>-fold<k>.json   resume marker: the fold finished (written last)
  failures/<trial>.json       why a trial failed (configuration, training, data)
  ray/                        Ray Tune's experiment folder (sweeps only)
  logs/ray.log                Ray's own console output (sweeps only)
  launch/                     the staged study config of `launch slurm|k8s` (its default place)
  optuna.db                   the default Optuna storage (sweeps only)
```

One trial identity names every file: ``trial`` is the Ray Tune trial id in sweeps and
``train-<config_hash>`` for ``eeg2bold train``; ``fold`` is the protocol's fold index.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

import fsspec
import numpy as np

from eeg2bold.errors import DatasetError
from eeg2bold.run_folder.cards import card_bytes, read_card
from eeg2bold.run_folder.files import absolute, read_bytes, read_json, write_bytes, write_json
from eeg2bold.run_folder.table import ResultsWriter, part_name, read_results

MANIFESTS = {"sweep": "sweep.json", "train": "run.json"}
OPTUNA_DB = "optuna.db"


def default_train_folder(model: str, kind: str, config_hash: str) -> str:
    """Where ``eeg2bold train`` writes without ``--out`` (relative to the working folder)."""
    return f"eeg2bold_runs/{model}-{kind}-{config_hash}"


def default_sweep_folder(name: str) -> str:
    """Where a sweep writes without ``storage.results`` (relative to the working folder)."""
    return f"sweeps/{name}"


def train_trial_id(config_hash: str) -> str:
    """The trial id of an ``eeg2bold train`` run (sweeps use Ray Tune's trial id)."""
    return f"train-{config_hash}"


def fold_stem(trial: str, fold: int) -> str:
    """The name every file of one fold of one trial shares."""
    return f"{trial}-fold{int(fold)}"


class RunFolder:
    """One run folder (see the module docstring for its layout)."""

    def __init__(self, url: str | os.PathLike[str]):
        self.url = absolute(url).rstrip("/")

    def __repr__(self) -> str:
        return f"RunFolder({self.url!r})"

    def path(self, *parts: str) -> str:
        return "/".join([self.url, *parts])

    def _glob(self, pattern: str) -> list[str]:
        fs, root = fsspec.core.url_to_fs(self.url)
        found = sorted(fs.glob(f"{root.rstrip('/')}/{pattern}"))
        return [p if "://" not in self.url else fs.unstrip_protocol(p) for p in found]

    def exists(self, *parts: str) -> bool:
        fs, root = fsspec.core.url_to_fs(self.path(*parts))
        return bool(fs.exists(root))

    # -- the manifest ----------------------------------------------------------------------
    @property
    def kind(self) -> str | None:
        """``sweep``, ``train`` or None (not a run folder yet)."""
        for kind, name in MANIFESTS.items():
            if self.exists(name):
                return kind
        return None

    def read_manifest(self) -> dict[str, Any]:
        kind = self.kind
        if kind is None:
            raise DatasetError(
                f"{self.url}: not a run folder (no sweep.json from `eeg2bold sweep`, no "
                "run.json from `eeg2bold train`)"
            )
        return dict(read_json(self.path(MANIFESTS[kind])), kind=kind)

    def write_manifest(self, kind: str, manifest: Mapping[str, Any]) -> str:
        body = {k: v for k, v in manifest.items() if k != "kind"}
        return write_json(self.path(MANIFESTS[kind]), body, what="the run manifest")

    @property
    def manifest_path(self) -> str:
        """Where this folder's manifest is (``sweep.json`` unless it is a train run's)."""
        return self.path(MANIFESTS[self.kind or "sweep"])

    # -- what a sweep's tools keep here ----------------------------------------------------
    @property
    def optuna_url(self) -> str:
        """The default Optuna storage: SQLite in the folder (local folders only)."""
        return f"sqlite:///{self.path(OPTUNA_DB)}"

    @property
    def ray_dir(self) -> str:
        """Ray Tune's ``storage_path``."""
        return self.path("ray")

    @property
    def ray_log(self) -> str:
        return self.path("logs", "ray.log")

    @property
    def stage_dir(self) -> str:
        """Where ``launch slurm|k8s`` stages the study config by default."""
        return self.path("launch")

    # -- the results table -----------------------------------------------------------------
    @property
    def table(self) -> str:
        return self.path("table")

    def writer(self) -> ResultsWriter:
        return ResultsWriter(self.table)

    def write_rows(self, rows: list[dict[str, Any]], *parts: str | int) -> str | None:
        """Publish rows as the part named by ``parts`` (rewriting it replaces its rows)."""
        return self.writer().write(rows, part=part_name(*parts))

    def replace_epoch_parts(self, rows: list[dict[str, Any]], trial: str, fold: int) -> str:
        """Publish a finished fold's rows (its whole val curve and final scores) as the one
        part ``<trial>-fold<k>``, then remove its per-epoch parts, so a report over thousands
        of trials reads one file per fold. A crash in between leaves rows twice on disk,
        which :func:`read_results` reads once."""
        written = self.write_rows(rows, trial, f"fold{int(fold)}")
        assert written is not None
        fs = fsspec.core.url_to_fs(self.url)[0]
        for p in self._glob(
            f"table/{part_name(trial, f'fold{int(fold)}').removesuffix('.parquet')}-epoch*.parquet"
        ):
            fs.rm(fsspec.core.url_to_fs(p)[1])
        return written

    def results(self) -> Any:
        """The results table (a DataFrame, unique by row key; empty if nothing ran yet)."""
        from eeg2bold.run_folder.table import SCHEMA

        if not self.exists("table"):
            return SCHEMA.empty_table().to_pandas()
        return read_results(self.table)

    # -- resolved configs ------------------------------------------------------------------
    def write_config(self, config_hash: str, config: Mapping[str, Any]) -> str:
        """``configs/<hash>.json``: the resolved experiment config a row's hash names."""
        return write_json(self.path("configs", f"{config_hash}.json"), dict(config))

    def read_config(self, config_hash: str) -> dict[str, Any]:
        value = read_json(self.path("configs", f"{config_hash}.json"))
        if value is None:
            raise DatasetError(f"{self.url}: no saved config for config hash {config_hash}")
        return dict(value)

    # -- fold files ------------------------------------------------------------------------
    def model_path(self, trial: str, fold: int) -> str:
        return self.path("models", f"{fold_stem(trial, fold)}.pt")

    def predictions_path(self, trial: str, fold: int) -> str:
        return self.path("predictions", f"{fold_stem(trial, fold)}.npz")

    def write_model(self, trial: str, fold: int, card: dict[str, Any]) -> str:
        return write_bytes(self.model_path(trial, fold), card_bytes(card), what="a model file")

    def read_model(self, trial: str, fold: int) -> dict[str, Any]:
        return read_card(self.model_path(trial, fold))

    def model_files(self, trial: str | None = None) -> list[str]:
        """Model files, all or of one trial, sorted by fold."""
        found = self._glob(f"models/{trial + '-fold' if trial else ''}*.pt")
        return sorted(found, key=_fold_order)

    def write_predictions(self, trial: str, fold: int, arrays: Mapping[str, np.ndarray]) -> str:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]  # numpy's stub: kwds
        return write_bytes(self.predictions_path(trial, fold), buffer.getvalue())

    def predictions(self) -> PredictionFiles:
        return PredictionFiles(self)

    # -- resume: checkpoints and done markers ----------------------------------------------
    def state_path(self, trial: str, fold: int) -> str:
        """Where a fold's resume state lives (deleting it restarts that fold)."""
        return self.path("checkpoints", f"{fold_stem(trial, fold)}.pt")

    def save_state(self, trial: str, fold: int, blob: bytes) -> str:
        return write_bytes(self.state_path(trial, fold), blob)

    def load_state(self, trial: str, fold: int) -> bytes | None:
        return read_bytes(self.state_path(trial, fold))

    def mark_done(self, trial: str, fold: int, outcome: Mapping[str, Any]) -> str:
        """The resume marker of a finished fold (written after its rows and files)."""
        return write_json(self.path("done", f"{fold_stem(trial, fold)}.json"), dict(outcome))

    def done(self, trial: str, fold: int) -> dict[str, Any] | None:
        """The outcome recorded when the fold finished, or None."""
        value = read_json(self.path("done", f"{fold_stem(trial, fold)}.json"))
        return None if value is None else dict(value)

    def has_records(self, trial: str) -> bool:
        """Whether any checkpoint, done marker or model file of ``trial`` exists."""
        return any(self._glob(f"{sub}/{trial}-fold*") for sub in ("checkpoints", "done", "models"))

    # -- failures --------------------------------------------------------------------------
    def record_failure(self, trial: str, info: Mapping[str, Any]) -> str:
        return write_json(self.path("failures", f"{trial}.json"), dict(info))

    def read_failure(self, trial: str) -> dict[str, Any] | None:
        value = read_json(self.path("failures", f"{trial}.json"))
        return None if value is None else dict(value)

    def failures(self) -> dict[str, dict[str, Any]]:
        out = {}
        for p in self._glob("failures/*.json"):
            name = p.rsplit("/", 1)[-1].removesuffix(".json")
            out[name] = json.loads(read_bytes(p) or b"{}")
        return out


def _fold_order(path: str) -> tuple[str, int]:
    stem = path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    trial, _, fold = stem.rpartition("-fold")
    return (trial, int(fold) if fold.isdigit() else -1)


class PredictionFiles(Mapping[str, dict[str, np.ndarray]]):
    """The prediction files of a run folder by fold stem (``<trial>-fold<k>``), read on access
    (a report needs only a few of thousands)."""

    def __init__(self, folder: RunFolder):
        self.folder = folder
        found = folder._glob("predictions/*.npz")
        self._paths = {p.rsplit("/", 1)[-1].removesuffix(".npz"): p for p in found}

    def __getitem__(self, stem: str) -> dict[str, np.ndarray]:
        blob = read_bytes(self._paths[stem])
        assert blob is not None
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)

    def __contains__(self, stem: object) -> bool:
        return stem in self._paths

"""Queries over a finished (or running) sweep: its trials and the best configurations.

A sweep folder (a run folder, :mod:`eeg2bold.run_folder`) holds ``sweep.json`` (plan and
config), the results table (``table/``) and, by default, the Optuna storage. A trial is named
by its one id (``trial``, the Ray Tune trial id, also in every file and row); ``number`` is
Optuna's own counter within its study. Trials come from Optuna — the value is the mean validation r,
which is what selects; test r is shown beside it and never used to rank.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from eeg2bold.errors import ConfigError, did_you_mean
from eeg2bold.run_folder import RunFolder, optuna_attrs
from eeg2bold.storage.optuna_db import optuna_storage
from eeg2bold.study.options import BestOptions


@dataclass(frozen=True)
class SweepRecord:
    """What a run folder says about itself: a sweep's plan and study config, or an
    ``eeg2bold train`` run seen as a sweep of one configuration with no search."""

    root: str
    config: dict[str, Any]
    plan: dict[str, Any]
    provenance: dict[str, Any] = field(default_factory=dict)
    kind: str = "sweep"

    @property
    def folder(self) -> RunFolder:
        return RunFolder(self.root)

    @property
    def optuna_url(self) -> str:
        url = self.config.get("storage", {}).get("optuna")
        return url or self.folder.optuna_url

    @property
    def table(self) -> str:
        return self.folder.table

    @property
    def dataset(self) -> str:
        return str(self.config.get("dataset", ""))

    @property
    def targets(self) -> dict[str, Any]:
        """What the models predicted: ``rois`` (None: all) and ``common_mode``."""
        if self.kind == "train":
            data = self.config.get("experiment", {}).get("data", {})
        else:
            data = self.config.get("targets") or {}
        return {"rois": data.get("rois"), "common_mode": bool(data.get("common_mode"))}

    def arms(self) -> list[dict[str, Any]]:
        """The plan's arms; ``protocol`` is the protocol as results name it (a calibration
        curve's amount included: ``loso_calibrated@2min``), ``splitter`` the registered one."""
        out = []
        for arm in self.plan.get("arms", []):
            label = arm.get("label") or arm["protocol"]
            out.append({**arm, "protocol": label, "splitter": arm["protocol"]})
        return out


def load_sweep(path: str | os.PathLike[str]) -> SweepRecord:
    """Open a run folder (a sweep's, a train run's); the CLI turns a study config into its
    results folder first (``launch`` owns the study config)."""
    folder = RunFolder(os.fspath(path))
    manifest = folder.read_manifest()  # a one-line error when it is not a run folder
    if manifest["kind"] == "train":
        experiment = manifest["config"]
        config = {
            "name": Path(folder.url).name,
            "dataset": manifest.get("dataset", ""),
            "seed": experiment.get("train", {}).get("seed"),
            "experiment": experiment,
        }
        plan: dict[str, Any] = {"sweep_id": None, "arms": [], "kind": "train"}
        return SweepRecord(
            root=folder.url,
            config=config,
            plan=plan,
            provenance=manifest.get("provenance", {}),
            kind="train",
        )
    return SweepRecord(
        root=folder.url,
        config=manifest["config"],
        plan=manifest["plan"],
        provenance=manifest.get("provenance", {}),
    )


TRIAL_COLUMNS = [
    "protocol",
    "model",
    "trial",
    "number",
    "origin",
    "state",
    "val_r",
    "test_r",
    "defaults_val_r",
    "defaults_test_r",
    "bought_test_r",
    "epochs",
    "best_epoch",
    "finished",
    "config_hash",
    "failure_reason",
    "duration_s",
    "retries",
    "lost_nodes",
]


def trials_table(sweep: SweepRecord) -> pd.DataFrame:
    """One row per Optuna trial of every arm, with its parameters (``param.*`` columns)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna_storage(sweep.optuna_url)
    rows = []
    for arm in sweep.arms():
        try:
            study = optuna.load_study(study_name=arm["study_name"], storage=storage)
        except KeyError:  # the arm has not started yet
            continue
        for t in study.get_trials(deepcopy=False):
            a = t.user_attrs
            duration = (
                (t.datetime_complete - t.datetime_start).total_seconds()
                if t.datetime_complete and t.datetime_start
                else None
            )
            row = {
                "protocol": arm["protocol"],
                "model": arm["model"],
                "trial": a.get(optuna_attrs.TRIAL_ID) or a.get(optuna_attrs.TUNE_TRIAL_ID),
                "number": t.number,
                # defaults (trial 0 of every arm), warm_start or sampled
                "origin": a.get(optuna_attrs.ORIGIN, optuna_attrs.SAMPLED),
                "state": t.state.name,
                "val_r": t.value,
                "test_r": a.get(optuna_attrs.TEST_R),
                "epochs": a.get(optuna_attrs.EPOCHS_TRAINED, a.get("epochs")),
                "best_epoch": a.get(optuna_attrs.BEST_EPOCH),
                "finished": a.get(optuna_attrs.FINISHED, False),
                "config_hash": a.get(optuna_attrs.CONFIG_HASH),
                "failure_reason": a.get(optuna_attrs.FAILURE_REASON)
                or ("orphaned by a killed driver" if a.get(optuna_attrs.ORPHANED) else None),
                "duration_s": duration,
                # resumptions after a dead worker or node (each also says which; see the report)
                "retries": len(a.get(optuna_attrs.RETRIES, [])),
                "lost_nodes": sum(1 for e in a.get(optuna_attrs.RETRIES, []) if e.get("lost_node")),
            }
            row.update({f"param.{k}": v for k, v in t.params.items()})
            row["params"] = dict(t.params)  # native types, this trial's own parameters only
            rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=TRIAL_COLUMNS)
    return frame


def no_such(root: str, what: str, name: str, names: Sequence[str]) -> str:
    """The one wording for a protocol or model a sweep does not have: the nearest name and
    what it has (``best``, ``predict`` and ``stream`` say it alike)."""
    hint = did_you_mean(name, names).strip(" ()")
    listing = f"it has {', '.join(names) or 'none'}"
    return f"{root}: the sweep has no {what} {name!r} ({f'{hint} ' if hint else ''}{listing})"


def best_trials(sweep: SweepRecord, options: BestOptions | None = None) -> pd.DataFrame:
    """The ``top`` completed trials by mean validation r per (protocol, model), each arm
    ranked on its own (``rank`` 1 is its best); with ``overall``, the ``top`` of all arms in
    one ranking (scores of different protocols are not comparable: use it knowingly)."""
    options = options or BestOptions()
    protocol, model, top = options.protocol, options.model, options.top
    every = trials_table(sweep)
    for what, name in (("protocol", protocol), ("model", model)):
        # the plan's arms (some may not have run yet) and the trials' (a train run has no plan)
        names = sorted({a[what] for a in sweep.arms()} | set(every.get(what, ())))
        if name and names and name not in names:  # a typo is an error, not an empty answer
            raise ConfigError(no_such(sweep.root, what, name, names))
    if every.empty:
        return every
    frame = every[(every["state"] == "COMPLETE") & every["val_r"].notna()]
    # trials that ran to the end (not stopped by ASHA) are the candidates when there are any
    finished = frame[frame["finished"].astype(bool)]
    frame = finished if not finished.empty else frame
    if protocol:
        frame = frame[frame["protocol"] == protocol]
    if model:
        frame = frame[frame["model"] == model]
    if options.overall:
        frame = frame.sort_values("val_r", ascending=False).head(top).copy()
        frame.insert(0, "rank", range(1, len(frame) + 1))
        return _beside_defaults(frame, every).reset_index(drop=True)
    frame = frame.sort_values(["protocol", "model", "val_r"], ascending=[True, True, False])
    frame = frame.groupby(["protocol", "model"], sort=True).head(top).copy()
    frame.insert(0, "rank", frame.groupby(["protocol", "model"]).cumcount() + 1)
    return _beside_defaults(frame, every).reset_index(drop=True)


def _beside_defaults(frame: pd.DataFrame, every: pd.DataFrame) -> pd.DataFrame:
    """What the search bought: each arm's defaults trial (trial 0, ``origin`` defaults) val
    and test r beside every row, and the row's test r minus the defaults'."""
    if "origin" not in frame:
        return frame
    return (
        frame.drop(columns=[c for c in GAIN_ADDED if c in frame])
        .merge(_defaults(every), on=["protocol", "model"], how="left")
        .assign(bought_test_r=lambda f: f["test_r"] - f["defaults_test_r"])
    )


GAIN_ADDED = ["defaults_val_r", "defaults_test_r", "bought_test_r"]


def defaults_rows(trials: pd.DataFrame) -> pd.DataFrame:
    """Per arm, the row of its completed defaults trial (trial 0 of its search; none for
    sweeps made before the defaults went first)."""
    if trials.empty or "origin" not in trials:
        return trials.iloc[0:0]
    mine = trials[(trials["origin"] == "defaults") & (trials["state"] == "COMPLETE")]
    return mine.sort_values("number").groupby(["protocol", "model"], sort=True).head(1)


def defaults_trials(trials: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(protocol, model) -> the id of its defaults trial (see :func:`defaults_rows`)."""
    return {
        (str(t.protocol), str(t.model)): str(t.trial) for t in defaults_rows(trials).itertuples()
    }


def _defaults(trials: pd.DataFrame) -> pd.DataFrame:
    """Per arm, the defaults trial's val and test r (NaN where it did not finish)."""
    mine = defaults_rows(trials)
    return mine[["protocol", "model", "val_r", "test_r"]].rename(
        columns={"val_r": "defaults_val_r", "test_r": "defaults_test_r"}
    )


def format_gain(best: pd.DataFrame) -> str | None:
    """One line: what the search bought in test r over the defaults, over the arms whose
    best and defaults trials both have a test r (``best``: :func:`best_trials`, rank 1)."""
    if "bought_test_r" not in best:
        return None
    top = best[best["rank"] == 1] if "rank" in best else best
    bought = top["bought_test_r"].dropna()
    if bought.empty:
        return None
    return (
        f"what the search bought over the defaults (trial 0): test r {bought.mean():+.3f} "
        f"on average over {len(bought)} arm(s), from {bought.min():+.3f} to "
        f"{bought.max():+.3f} (val r {(top['val_r'] - top['defaults_val_r']).mean():+.3f})"
    )


def trial_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts: native types, NaN as null, and under ``params`` only the
    parameters that trial has (no other model's columns)."""
    columns = [c for c in ("rank", *TRIAL_COLUMNS) if c in frame.columns]
    records = []
    for _, row in frame.iterrows():
        record = {c: _native(row[c]) for c in columns}
        params = row.get("params")
        record["params"] = (
            {k: _native(v) for k, v in params.items()} if isinstance(params, dict) else {}
        )
        records.append(record)
    return records


def _native(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if value is pd.NaT or value is None:
        return None
    return value


_SHORT_HEADERS = {
    "number": "no.",
    "best_epoch": "best ep",
    "duration_s": "secs",
    "defaults_val_r": "defaults val r",
    "defaults_test_r": "defaults test r",
    "bought_test_r": "bought",
}


def format_trials(frame: pd.DataFrame, *, params: bool = False, width: int | None = None) -> str:
    """A readable table; with ``params``, each trial's parameters follow as a block wrapped
    to the terminal (they are many). Columns with nothing to say are left out."""
    import shutil
    import textwrap

    if frame.empty:
        return "(no trials)"
    cols = [c for c in ("rank", *TRIAL_COLUMNS) if c in frame.columns and c != "config_hash"]
    quiet = {
        "failure_reason": frame.get("failure_reason", pd.Series(dtype=object)).isna().all(),
        "retries": (frame.get("retries", pd.Series([0])).fillna(0) == 0).all(),
        "lost_nodes": (frame.get("lost_nodes", pd.Series([0])).fillna(0) == 0).all(),
    } | {c: frame[c].isna().all() for c in GAIN_ADDED if c in frame}
    shown = frame[[c for c in cols if not quiet.get(c, False)]].copy()
    for c in ("val_r", "test_r", "defaults_val_r", "defaults_test_r", "bought_test_r"):
        if c in shown:
            sign = "+" if c.startswith("bought") else ""
            shown[c] = shown[c].map(lambda v, s=sign: "" if _missing(v) else f"{v:{s}.3f}")
    if "duration_s" in shown:
        shown["duration_s"] = shown["duration_s"].map(
            lambda v: "" if v is None or pd.isna(v) else f"{v:.0f}"
        )
    if "failure_reason" in shown:
        shown["failure_reason"] = shown["failure_reason"].fillna("")
    # short headers for people (the JSON keeps the full names)
    shown = shown.rename(columns=_SHORT_HEADERS)
    text = shown.to_string(index=False, max_colwidth=60)
    if not params:
        return text
    width = width or max(60, min(shutil.get_terminal_size((100, 24)).columns, 120))
    blocks = []
    for _, row in frame.iterrows():
        values = row.get("params") if isinstance(row.get("params"), dict) else {}
        line = " ".join(f"{k}={_short(v)}" for k, v in sorted(values.items()))
        head = f"trial {row['trial']} ({row['protocol']} × {row['model']}): "
        blocks.append(
            textwrap.fill(
                line or "(no parameters)",
                width=width,
                initial_indent=head,
                subsequent_indent="    ",
                break_on_hyphens=False,
            )
        )
    return text + "\n\nparameters:\n" + "\n".join(blocks)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and pd.isna(value))


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)

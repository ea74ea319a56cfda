"""Files a prediction leaves: the TSV table, a JSON sidecar and a plot, each written atomically.

``bold.tsv``: a ``time`` column (seconds on the recording's clock) and one column per output,
one row per prediction time. ``bold.json``: how it was made (model files, trial, windows,
preprocessing, notes). ``bold.png``: one panel per output (the fold models' range shaded
when several were averaged).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

import eeg2bold
from eeg2bold.predict.apply import Prediction
from eeg2bold.predict.models import PredictError
from eeg2bold.run_folder.files import write_bytes

PREDICTION_FORMAT = "eeg2bold.prediction/1"


def _publish(path: Path, payload: bytes) -> Path:
    write_bytes(path, payload, error=PredictError)
    return path


def tsv_text(prediction: Prediction) -> str:
    header = "\t".join(["time", *prediction.outputs])
    rows = [
        "\t".join([f"{t:.6f}", *(f"{v:.7g}" for v in prediction.values[:, i])])
        for i, t in enumerate(prediction.times)
    ]
    return "\n".join([header, *rows]) + "\n"


def write_tsv(prediction: Prediction, path: str | os.PathLike[str]) -> Path:
    return _publish(Path(path), tsv_text(prediction).encode())


def read_tsv(path: str | os.PathLike[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``time`` and the output columns of a prediction TSV (for scripts and tests)."""
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
    data = np.loadtxt(path, delimiter="\t", skiprows=1, ndmin=2)
    columns = {name: data[:, i] for i, name in enumerate(header)}
    return columns.pop("time"), columns


def sidecar(prediction: Prediction) -> dict[str, Any]:
    return {
        "format": PREDICTION_FORMAT,
        "eeg2bold": eeg2bold.__version__,
        "columns": ["time", *prediction.outputs],
        "time": "seconds on the recording's clock (its first sample is 0 s); the row at t "
        "predicts BOLD at t from the EEG window [t - delay_s - window_s, t - delay_s]",
        "n_rows": int(prediction.times.size),
        **prediction.info,
        "notes": prediction.notes,
    }


def plot_prediction(prediction: Prediction, *, title: str = "") -> Any:
    """A matplotlib Figure (Agg canvas, no pyplot state): one panel per output."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(prediction.outputs)
    fig = Figure(figsize=(10, 1.1 + 1.3 * n), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(n, 1, sharex=True, squeeze=False)[:, 0]
    t = prediction.times
    several = prediction.members.shape[0] > 1
    for i, (ax, name) in enumerate(zip(axes, prediction.outputs, strict=True)):
        if several:
            ax.fill_between(
                t,
                prediction.members[:, i].min(axis=0),
                prediction.members[:, i].max(axis=0),
                color="C0",
                alpha=0.2,
                linewidth=0,
                label="fold models (range)",
            )
        ax.plot(t, prediction.values[i], color="C0", linewidth=1.0, label="prediction")
        ax.set_ylabel(name, rotation=0, ha="right", va="center")
        ax.spines[["top", "right"]].set_visible(False)
    if several:
        axes[0].legend(loc="upper right", fontsize="small", frameon=False)
    axes[-1].set_xlabel("time (s, recording clock)")
    if title:
        fig.suptitle(title, fontsize="medium")
    return fig


def write_outputs(
    prediction: Prediction,
    tsv: str | os.PathLike[str],
    *,
    plot: bool = True,
    title: str = "",
) -> dict[str, Path]:
    """``tsv``, its ``.json`` sidecar and (with ``plot``) its ``.png``, side by side; the plot's
    title defaults to the recording's file name and the model."""
    tsv = Path(tsv)
    if not title and prediction.info.get("recording"):
        title = f"{Path(prediction.info['recording']).name}: {prediction.info.get('model', '')}"
    if tsv.suffix.lower() in (".json", ".png"):
        raise PredictError(f"{tsv}: the output table needs another suffix (e.g. .tsv)")
    written = {"tsv": write_tsv(prediction, tsv)}
    text = json.dumps(sidecar(prediction), indent=2, default=_jsonable)
    written["json"] = _publish(tsv.with_suffix(".json"), text.encode())
    if plot:
        buffer = io.BytesIO()
        plot_prediction(prediction, title=title).savefig(buffer, format="png", dpi=100)
        written["png"] = _publish(tsv.with_suffix(".png"), buffer.getvalue())
    return written


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def summary_lines(prediction: Prediction, written: dict[str, Path]) -> list[str]:
    """What the command prints when it is done."""
    t = prediction.times
    step = prediction.info.get("step_s")
    every = f", every {step:g} s" if step else ""
    source = Path(str(prediction.info.get("recording", ""))).name or "the EEG"
    return [
        f"predicted {len(prediction.outputs)} output(s) at {t.size} time(s) "
        f"({t[0]:.1f}-{t[-1]:.1f} s{every}) from {source}",
        f"model: {prediction.info.get('model', '?')}",
        "wrote " + ", ".join(str(p) for p in written.values()),
    ]

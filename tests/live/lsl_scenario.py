"""Live-stream scenarios, run in one process inside a loopback-only network namespace by
``test_live_stream.py`` (LSL discovery must never leave the machine). Per scenario an EEG outlet and
a consumer of the BOLD stream run in a thread while ``eeg2bold stream`` runs in the main
thread (its signal handling needs it; SIGTERM is sent to this process).

    python lsl_scenario.py MODEL EEG.npy OUT_DIR SCENARIO ...

``match``: the whole recording pushed; ``stall``: a 3 s silence, then the stream resumes 4.5 s
of samples later; ``sigterm``: the command terminated mid-stream; ``channels``: a stream
lacking a channel; ``rate`` and ``fewer``: the source comes back (same name and id, a new
outlet) at another rate or without a channel; ``player``: MNE-LSL's PlayerLSL replays a real
EDF recording. Each writes ``OUT_DIR/SCENARIO/result.json`` (and the command's ``live.tsv``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

SFREQ = 100.0
CHUNK = 50
T0 = 1000.0
REAL_EDF = Path(__file__).resolve().parents[3] / "shared/data/real/eeg/eyes-closed-1.edf"


def outlet(name: str, channels: list[str], sfreq: float = SFREQ) -> Any:
    from mne_lsl.lsl import StreamInfo, StreamOutlet

    info = StreamInfo(name, "EEG", len(channels), sfreq, "float32", f"{name}-1")
    info.set_channel_names(channels)
    info.set_channel_units("microvolts")
    return StreamOutlet(info, chunk_size=CHUNK)


def push(lsl_out: Any, eeg: np.ndarray, start: int, stop: int) -> None:
    """Samples [start, stop) of ``eeg`` (microvolts), sample i stamped T0 + i / SFREQ, faster
    than real time and in order."""
    for i in range(start, stop, CHUNK):
        j = min(i + CHUNK, stop)
        stamps = T0 + np.arange(i, j) / SFREQ
        lsl_out.push_chunk(np.ascontiguousarray(eeg[:, i:j].T), timestamp=stamps)
        time.sleep(0.002)


def stream_args(model: str, out: Path, name: str, *extra: str) -> list[str]:
    return ["stream", model, "--source", f"eeg-{name}", "--out-lsl", f"bold-{name}",
            "--out", str(out / "live.tsv"), "--timeout", "20", *extra]  # fmt: skip


def run_here(args: list[str]) -> tuple[int, str]:
    """``eeg2bold ARGS`` in this process's main thread: its exit code and stderr."""
    from eeg2bold.cli.main import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(args)
    return code, err.getvalue()


def _lines(path: Path) -> int:
    return path.read_text().count("\n") if path.exists() else 0


def feeder(scenario: str, eeg: np.ndarray, channels: list[str], box: dict) -> None:
    """The EEG source and the BOLD consumer of one scenario (a thread)."""
    from mne_lsl.lsl import StreamInlet, resolve_streams

    lsl_out = outlet(f"eeg-{scenario}", channels)
    box["outlet"] = lsl_out
    if not lsl_out.wait_for_consumers(timeout=30):
        box["error"] = "eeg2bold stream never connected"
        return
    if scenario in ("rate", "fewer"):  # a new outlet of the same name and id replaces it
        time.sleep(2.0)  # eeg2bold stream has read the description of this outlet
        push(lsl_out, eeg, 0, 3000)
        del lsl_out, box["outlet"]
        time.sleep(0.5)
        keep, sfreq = (channels, 2 * SFREQ) if scenario == "rate" else (channels[:-1], SFREQ)
        box["outlet"] = lsl_out = outlet(f"eeg-{scenario}", keep, sfreq)
        rows = np.asarray([channels.index(c) for c in keep])
        i, n = 3000, eeg.shape[1]
        while not box.get("done") and i + CHUNK <= n:
            lsl_out.push_chunk(np.ascontiguousarray(eeg[rows, i : i + CHUNK].T))
            i += CHUNK
            time.sleep(CHUNK / sfreq)
        return
    found = resolve_streams(timeout=20, name=f"bold-{scenario}")
    inlet = StreamInlet(found[0])
    inlet.open_stream(timeout=10)
    box["bold_names"] = list(inlet.get_sinfo(timeout=10).get_channel_names())
    n = eeg.shape[1]
    if scenario == "stall":
        push(lsl_out, eeg, 0, 3000)
        time.sleep(3.0)  # the stream stalls ...
        push(lsl_out, eeg, 3450, n)  # ... and comes back 4.5 s of samples later
    else:
        push(lsl_out, eeg, 0, n if scenario == "match" else n // 2)
    if scenario == "sigterm":  # terminated mid-stream, once the pushed half is written
        table, expected = box["out"] / "live.tsv", 1 + (n // 2 - 800) // 100 + 1
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _lines(table) < expected:
            time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGTERM)  # to the process, handled in the main thread
    rows, stamps = [], []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not box.get("done"):
        data, ts = inlet.pull_chunk(timeout=0.2)
        rows += np.asarray(data).tolist()
        stamps += np.asarray(ts).tolist()
    data, ts = inlet.pull_chunk(timeout=0.5)
    box["bold_rows"] = rows + np.asarray(data).tolist()
    box["bold_stamps"] = stamps + np.asarray(ts).tolist()


def scenario_result(scenario: str, model: str, eeg: np.ndarray, channels: list, out: Path) -> dict:
    n = eeg.shape[1]
    if scenario == "channels":
        keep = outlet(f"eeg-{scenario}", channels[:-1])
        code, err = run_here(stream_args(model, out, scenario))
        del keep
        return {"code": code, "stderr": err}
    if scenario in ("rate", "fewer"):
        box = {"out": out}
        thread = threading.Thread(target=feeder, args=(scenario, eeg, channels, box), daemon=True)
        thread.start()
        code, err = run_here(stream_args(model, out, scenario, "--no-lsl-out"))
        box["done"] = True
        thread.join(timeout=30)
        return {"code": code, "stderr": err, "error": box.get("error")}
    if scenario == "player":
        from mne_lsl.player import PlayerLSL

        player = PlayerLSL(REAL_EDF, chunk_size=100, name=f"eeg-{scenario}", source_id="edf-1")
        player.start()
        try:
            code, err = run_here(stream_args(model, out, scenario, "--no-lsl-out"))
        finally:
            player.stop()
        return {"code": code, "stderr": err}
    box: dict[str, Any] = {"out": out}
    thread = threading.Thread(target=feeder, args=(scenario, eeg, channels, box), daemon=True)
    thread.start()
    # the stream's clock counts lost samples too: both end at the recording's end
    until = [] if scenario == "sigterm" else ["--duration", f"{n / SFREQ:g}"]
    code, err = run_here(stream_args(model, out, scenario, *until))
    box["done"] = True
    thread.join(timeout=30)
    return {"code": code, "stderr": err, "t0": T0} | {
        k: box.get(k) for k in ("bold_names", "bold_rows", "bold_stamps", "error")
    }


def main() -> int:
    model, eeg_path, root = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    eeg = np.load(eeg_path)
    channels = json.loads(eeg_path.with_suffix(".json").read_text())
    for scenario in sys.argv[4:]:
        out = root / scenario
        out.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        result = scenario_result(scenario, model, eeg, channels, out)
        result["seconds"] = time.monotonic() - started
        (out / "result.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

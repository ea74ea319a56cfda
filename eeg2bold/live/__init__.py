"""The live digital twin: predicted BOLD from an EEG stream as it arrives.

    eeg2bold stream sweeps/demo --source my-amplifier --out live.tsv

:class:`LiveTwin` applies a trained model set causally to chunks of EEG (no I/O);
:func:`run_stream` connects it to the Lab Streaming Layer through MNE-LSL.
"""

from __future__ import annotations

from eeg2bold.live.lsl import StreamError, find_source, plan_source, run_stream
from eeg2bold.live.output import LiveWriter
from eeg2bold.live.twin import LiveTwin, Update

__all__ = [
    "LiveTwin",
    "LiveWriter",
    "StreamError",
    "Update",
    "find_source",
    "plan_source",
    "run_stream",
]

"""The live digital twin: predicted BOLD from an EEG stream as it arrives.

    eeg2bold stream sweeps/demo --source my-amplifier --out live.tsv

:class:`LiveTwin` applies a trained model set causally to chunks of EEG (no I/O);
:func:`run_stream` connects it to the Lab Streaming Layer through MNE-LSL; its options are
:class:`StreamOptions`. Names load on first use: the command line imports :mod:`.options`
without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eeg2bold.lazy import lazy_getattr

if TYPE_CHECKING:  # the names for type checkers; at run time, __getattr__ loads them
    from eeg2bold.live.lsl import StreamError as StreamError
    from eeg2bold.live.lsl import find_source as find_source
    from eeg2bold.live.lsl import plan_source as plan_source
    from eeg2bold.live.lsl import run_stream as run_stream
    from eeg2bold.live.options import StreamOptions as StreamOptions
    from eeg2bold.live.output import LiveWriter as LiveWriter
    from eeg2bold.live.twin import LiveTwin as LiveTwin
    from eeg2bold.live.twin import Update as Update

_WHERE = {
    "StreamError": "eeg2bold.live.lsl",
    "find_source": "eeg2bold.live.lsl",
    "plan_source": "eeg2bold.live.lsl",
    "run_stream": "eeg2bold.live.lsl",
    "StreamOptions": "eeg2bold.live.options",
    "LiveWriter": "eeg2bold.live.output",
    "LiveTwin": "eeg2bold.live.twin",
    "Update": "eeg2bold.live.twin",
}
__all__ = sorted(_WHERE)
__getattr__ = lazy_getattr(__name__, _WHERE)

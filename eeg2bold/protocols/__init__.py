"""Evaluation protocols (``within``, ``within_run``, ``leave_one_run_out``, ``loso``,
``loso_calibrated``) as index generators."""

from __future__ import annotations

# The registered protocols, explicitly.
from eeg2bold.protocols import loso, sessions, within  # noqa: F401
from eeg2bold.protocols.base import (
    MIN_GAP_S,
    Fold,
    Splitter,
    get_protocol,
    guard_gap,
    pools_selection,
    protocol_names,
    register_protocol,
    timeline_blocks,
)
from eeg2bold.protocols.loso import label_amount_s, protocol_label
from eeg2bold.protocols.samples import SampleTable, build_sample_table

__all__ = [
    "MIN_GAP_S",
    "Fold",
    "SampleTable",
    "Splitter",
    "build_sample_table",
    "get_protocol",
    "guard_gap",
    "label_amount_s",
    "pools_selection",
    "protocol_label",
    "protocol_names",
    "register_protocol",
    "timeline_blocks",
]

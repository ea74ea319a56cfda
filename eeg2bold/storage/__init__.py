"""The dataset store: Zarr v3 schema, atomic run writes, validation and readers.

Knows nothing about models. See :mod:`eeg2bold.storage.schema` for the layout and invariants.
"""

from __future__ import annotations

from eeg2bold.storage.location import mask_url
from eeg2bold.storage.schema import (
    SCHEMA,
    BOLDInfo,
    DatasetInfo,
    EEGInfo,
    RunData,
    RunKey,
    Truth,
    validate_run,
)
from eeg2bold.storage.store import (
    Dataset,
    WritableDataset,
    create_dataset,
    iter_runs,
    open_dataset,
)

__all__ = [
    "SCHEMA",
    "BOLDInfo",
    "Dataset",
    "DatasetInfo",
    "EEGInfo",
    "RunData",
    "RunKey",
    "Truth",
    "WritableDataset",
    "create_dataset",
    "iter_runs",
    "mask_url",
    "open_dataset",
    "validate_run",
]

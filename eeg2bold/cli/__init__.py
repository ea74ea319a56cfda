"""The ``eeg2bold`` command: parsing and printing only; the work lives in the subpackages.

:mod:`.main` runs a command and turns errors into one line; :mod:`.parser` builds the parser,
with options generated from the typed configs by :mod:`.options`; :mod:`.commands` holds one
function per command; :mod:`.ingest_options` merges ingest's layout defaults, config file and
flags.
"""

from __future__ import annotations

from eeg2bold.cli.main import main
from eeg2bold.cli.parser import (
    INGEST_FLAGS,
    K8S_FLAGS,
    SIMULATE_FLAGS,
    SLURM_FLAGS,
    build_parser,
)

__all__ = ["INGEST_FLAGS", "K8S_FLAGS", "SIMULATE_FLAGS", "SLURM_FLAGS", "build_parser", "main"]

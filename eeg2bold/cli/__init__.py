"""The ``eeg2bold`` command: parsing and printing only; the work lives in the subpackages.

:mod:`.main` holds the commands and the parser, :mod:`.options` generates options from the
typed configs, :mod:`.ingest_options` merges ingest's layout defaults, config file and flags.
"""

from __future__ import annotations

from eeg2bold.cli.main import (
    INGEST_FLAGS,
    K8S_FLAGS,
    SIMULATE_FLAGS,
    SLURM_FLAGS,
    build_parser,
    main,
)

__all__ = ["INGEST_FLAGS", "K8S_FLAGS", "SIMULATE_FLAGS", "SLURM_FLAGS", "build_parser", "main"]

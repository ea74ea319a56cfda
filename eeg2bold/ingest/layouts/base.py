"""The layout contract: a plain object that finds runs on disk and yields run specs.

A layout reads no signal and writes nothing. It names the files of each run (pairing EEG with
BOLD by its own rule), and reports runs it cannot assemble as specs with a ``problem`` so the
engine lists them as failed while the other runs still land.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from eeg2bold.ingest.specs import MatOptions, RunSpec

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@runtime_checkable
class Layout(Protocol):
    """Finds the runs of one dataset layout.

    ``name`` identifies the layout in provenance and on the command line
    (``eeg2bold ingest NAME``); ``root`` is the folder input paths are recorded relative to;
    ``specs()`` yields one :class:`RunSpec` per run, in a stable order;
    ``timing_defaults()`` is the layout's own IngestConfig defaults (how its volumes are timed),
    below a config file and the flags; ``from_options`` builds it from command-line options.
    """

    name: str
    root: Path

    def specs(self) -> Iterator[RunSpec]: ...

    def timing_defaults(self) -> dict[str, Any]: ...

    @classmethod
    def from_options(cls, options: Mapping[str, Any], *, mat: MatOptions | None) -> Layout: ...


def safe_key(text: str) -> str:
    """A subject/run name usable as a store key (letters, digits, '_', '-', '.')."""
    key = _UNSAFE.sub("-", text).strip("-._")
    return key or "x"

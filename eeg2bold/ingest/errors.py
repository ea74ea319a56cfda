"""The one error type of ingest: a run (or the whole ingest) cannot proceed as asked.

Messages name the file and the problem on one line, so the CLI can print them as they are.
"""

from __future__ import annotations

from eeg2bold.errors import Eeg2BoldError


class IngestError(Eeg2BoldError):
    """Bad input or a refused request while ingesting recordings."""

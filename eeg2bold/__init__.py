"""eeg2bold: predict deep-brain BOLD from scalp EEG, with honest within- and cross-subject
numbers."""

from __future__ import annotations

__version__ = "0.1.0"

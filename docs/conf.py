"""Sphinx configuration: the user guide (Markdown, MyST) and a reference generated from the
code (``_ext/eeg2bold_reference.py``). Offline: no intersphinx, no theme download."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

project = "eeg2bold"
extensions = ["myst_parser", "eeg2bold_reference"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
myst_heading_anchors = 4  # GitHub-style anchors, so links work on GitHub and here alike
myst_enable_extensions = ["colon_fence"]
html_theme = "alabaster"  # ships with Sphinx
html_static_path: list[str] = []

"""The documentation site builds offline with no warning, and its reference is the code's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_docs_build_without_a_warning_and_reference_every_config_field(tmp_path):
    pytest.importorskip("sphinx", reason="sphinx is in the test extras: `make test` installs it")
    pytest.importorskip("myst_parser", reason="myst-parser is in the test extras")
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html", "-d", str(tmp_path / "tree")]
        + [str(ROOT / "docs"), str(tmp_path / "html")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "html" / "index.html").exists()
    sys.path.insert(0, str(ROOT / "docs" / "_ext"))
    try:
        from eeg2bold_reference import config_page, configs
    finally:
        sys.path.pop(0)
    page = config_page()
    assert len(configs()) >= 20
    for config in configs():
        for name in config.model_fields:
            assert f"| `{name}` |" in page, f"{config.__qualname__}.{name}"
    html = (tmp_path / "html" / "reference" / "cli.html").read_text()
    assert "eeg2bold report" in html and "--selection" in html

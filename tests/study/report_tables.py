"""Reading a report's HTML back: its tables, to compare with its JSON cell by cell, and its
rendering in headless Chromium (shared by the report tests)."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest


class Tables(HTMLParser):
    """Every <table> of a page: the heading above it, its header cells and its rows."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict] = []
        self.heading, self._text, self._cell, self._row = "", None, None, None

    def handle_starttag(self, tag, attrs):
        if tag in ("h2", "h3"):
            self._text = []
        elif tag == "table":
            self.tables.append({"heading": self.heading, "headers": [], "rows": []})
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("h2", "h3") and self._text is not None:
            self.heading, self._text = "".join(self._text).strip(), None
        elif tag in ("td", "th") and self._cell is not None:
            self._row.append(("".join(self._cell).strip(), tag))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            table = self.tables[-1]
            if all(kind == "th" for _, kind in self._row):
                table["headers"] = [text for text, _ in self._row]
            else:
                table["rows"].append([text for text, _ in self._row])
            self._row = None

    def handle_data(self, data):
        for part in (self._text, self._cell):
            if part is not None:
                part.append(data)


def table_with(tables, headers, heading=None):
    found = [
        t
        for t in tables
        if t["headers"][: len(headers)] == headers and (heading is None or t["heading"] == heading)
    ]
    assert len(found) == 1, (headers, heading, [t["headers"] for t in tables])
    return found[0]


def same(cell: str, value) -> bool:
    """A cell shows ``value`` as the report formats it (rounded to the digits it shows)."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return cell == "–"
    if isinstance(value, str):
        return cell == value
    number = float(cell)
    decimals = len(cell.split("e")[0].split(".")[1]) if "." in cell else 0
    tolerance = 0.5 * 10.0**-decimals if "e" not in cell else abs(value) * 0.051
    return abs(number - float(value)) <= tolerance + 1e-12


def check_rows(table, records, fields):
    assert len(table["rows"]) == len(records)
    for row, record in zip(table["rows"], records, strict=True):
        for column, (cell, field) in enumerate(zip(row, fields, strict=True)):
            value = record[field] if isinstance(field, str) else field(record)
            assert same(cell, value), (table["headers"][column], cell, value, record)


def _chromium() -> str | None:
    """Debian's chromium, installed by the set-up command (`make test`) where it may be."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


CHECK = """<script>
window.addEventListener("load", () => {
  const imgs = [...document.images];
  const bad = imgs.filter(i => !i.complete || i.naturalWidth === 0).length;
  const sections = document.querySelectorAll("section").length;
  const text = `images=${imgs.length} broken=${bad} sections=${sections}`;
  document.body.setAttribute("data-check", text);
});
</script></body>"""


def chromium_check(page_html: str, tmp_path: Path) -> dict[str, int]:
    """Open a report in headless Chromium (skip where there is none): the images it shows,
    how many failed to load, its sections; no resource may be missing."""
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium: `make test` installs Debian's chromium when run as root")
    page = tmp_path / "checked.html"
    page.write_text(page_html.replace("</body>", CHECK))
    run = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--virtual-time-budget=5000",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    found = re.search(r'data-check="images=(\d+) broken=(\d+) sections=(\d+)"', run.stdout)
    assert found, run.stdout[-500:]
    assert "ERR_FILE_NOT_FOUND" not in run.stderr and "Failed to load resource" not in run.stderr
    images, broken, sections = map(int, found.groups())
    return {"images": images, "broken": broken, "sections": sections}

"""Reading a report's HTML tables back, to compare them with its JSON cell by cell (shared by
the report tests)."""

from __future__ import annotations

from html.parser import HTMLParser

import numpy as np


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

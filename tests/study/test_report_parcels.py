"""The report of a parcellated dataset: parcels on the glass brain (when the dataset records
ROI positions), tables that stay short at 400 parcels, and nothing fetched from the network.

The sweeps are written by ``report_tables.write_parcel_study`` (no simulator, no training),
so each report here builds in seconds."""

from __future__ import annotations

import base64
import io
import json
import re
import socket
import time

import pandas as pd
import pytest
from report_tables import (
    Tables,
    check_rows,
    numbers_not_in_json,
    table_with,
    write_parcel_study,
)

from eeg2bold.cli import main
from eeg2bold.geometry import COMMON_MODE
from eeg2bold.study.report import BRAIN_SECTION, SECTIONS, TABLE_ROWS, sections

STATS = ["--n-boot", "200", "--n-surrogates", "40", "-q"]


def _no_network(*_args, **_kwargs):
    raise AssertionError("the report tried to reach the network")


def _report(root, **study) -> dict:
    """Write a parcel study under ``root`` and build its report with the network cut off."""
    sizes = write_parcel_study(root, **study)
    html_path, json_path = root / "report.html", root / "report.json"
    started = time.perf_counter()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", _no_network)
        patch.setattr(socket, "create_connection", _no_network)
        code = main(
            ["report", str(sizes["sweep"]), "-o", str(html_path), "--json", str(json_path)] + STATS
        )
    assert code == 0
    return {
        "sizes": sizes,
        "seconds": time.perf_counter() - started,
        "html": html_path.read_text(),
        "json": json.loads(json_path.read_text()),
    }


@pytest.fixture(scope="module")
def brain(tmp_path_factory):
    """12 parcels with positions (half of them skilled) and the common mode, 8 subjects:
    within and LOSO × ridge."""
    root = tmp_path_factory.mktemp("parcels")
    return _report(root, rois=12, subjects=8, trials_per_arm=2, models=("ridge",), common_mode=True)


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    """400 parcels, 3 subjects, LOSO × ridge: the scale of a Schaefer-400 study."""
    root = tmp_path_factory.mktemp("parcels400")
    return _report(
        root, rois=400, subjects=3, trials_per_arm=2, protocols=("loso",), models=("ridge",)
    )


def _images(page: str) -> dict[str, bytes]:
    found = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)"', page)
    return {alt: base64.b64decode(data, validate=True) for alt, data in found}


def test_one_brain_figure_per_protocol_and_model(brain):
    data, page = brain["json"], brain["html"]
    arms = {(a["protocol"], a["model"]) for a in data["statistics"]["arms"]}
    assert arms == {("within", "ridge"), ("loso", "ridge")}
    entries = data["brain"]["figures"]
    assert sorted((e["protocol"], e["model"]) for e in entries) == sorted(arms)
    assert sections(data).index(BRAIN_SECTION) == [k for k, _ in SECTIONS].index("results") + 1
    assert '<section id="brain">' in page and "On the brain" in page
    images = _images(page)
    for e in entries:
        assert e["figure"] in data["figures"]
        alt = f"parcels on the brain {e['protocol']} {e['model']}"
        assert images[alt].startswith(b"\x89PNG")
        # the common mode has no position: left out of the brain, every parcel in it
        assert e["left_out"] == [COMMON_MODE] and e["n_parcels"] == 12
    assert COMMON_MODE in page.split('<section id="brain">')[1].split("</section>")[0]
    # one colour scale for all figures, symmetric, covering every parcel's r
    b = data["brain"]
    assert b["vmin"] == -b["vmax"]
    assert (
        max(abs(r["r"]) for r in data["statistics"]["rois"] if r["roi"] != COMMON_MODE)
        <= (b["vmax"])
    )


def test_marked_parcels_are_exactly_those_with_q_below_alpha(brain):
    data = brain["json"]
    alpha = data["statistics"]["settings"]["alpha"]
    assert alpha == data["brain"]["alpha"] == 0.05
    marked = 0
    for e in data["brain"]["figures"]:
        rows = [
            r
            for r in data["statistics"]["rois"]
            if (r["protocol"], r["model"]) == (e["protocol"], e["model"])
            and r["roi"] != COMMON_MODE
        ]
        expected = [
            r["roi"] for r in rows if r["sign_flip_q"] is not None and r["sign_flip_q"] < alpha
        ]
        assert e["significant"] == expected
        assert e["n_significant"] == len(expected)
        marked += len(expected)
        # the skilled half passes, the rest mostly not: the mark separates something
        assert 0 < len(expected) < len(rows)
    assert marked > 0


def test_brain_report_numbers_and_tables_are_the_json(brain):
    tokens, missing = numbers_not_in_json(brain["html"], brain["json"])
    assert tokens and not missing, missing[:20]
    parser = Tables()
    parser.feed(brain["html"])
    fields = ["roi", "n_subjects", "r", "ci_low", "ci_high", "chance_low", "chance_high"]
    fields += ["sign_flip_p", "sign_flip_q", "surrogate_q"]
    for entry in brain["json"]["results"]:
        records = [
            r
            for r in brain["json"]["statistics"]["rois"]
            if (r["protocol"], r["model"]) == (entry["protocol"], entry["model"])
        ]
        heading = f"{entry['model']}, {entry['protocol']}"
        assert entry["figure_kind"] == "bars" and len(records) == 13  # all shown: few ROIs
        check_rows(table_with(parser.tables, ["ROI", "subjects", "r"], heading), records, fields)


def test_no_brain_section_without_roi_positions(tmp_path):
    got = _report(
        tmp_path,
        rois=4,
        subjects=3,
        trials_per_arm=1,
        protocols=("loso",),
        models=("ridge",),
        mni=False,
    )
    data, page = got["json"], got["html"]
    assert "skipped" in data["brain"] and "roi_mni" in data["brain"]["skipped"]
    assert sections(data) == list(SECTIONS)
    assert '<section id="brain">' not in page and 'href="#brain"' not in page
    assert not any(k.startswith("brain-") for k in data["figures"])


def test_a_400_parcel_report_stays_small(many):
    data, page = many["json"], many["html"]
    assert many["sizes"]["outputs"] == 400
    assert many["seconds"] < 60  # ~2 s here; benchmarks/bench_parcels_report.py times it
    (entry,) = data["results"]
    assert entry["n_rois"] == 400 and entry["figure_kind"] == "ranked"
    # the per-ROI figure has a fixed size (one bar per parcel was 26,000 px wide)
    from PIL import Image

    images = _images(page)
    for alt, png in images.items():
        with Image.open(io.BytesIO(png)) as image:
            assert max(image.size) < 2000, (alt, image.size)
    assert "parcels on the brain loso ridge" in images
    # the table: the TABLE_ROWS parcels with the highest r, each row its JSON record
    rois = {r["roi"]: r for r in data["statistics"]["rois"]}
    assert len(entry["shown"]) == TABLE_ROWS
    best = sorted(rois.values(), key=lambda r: -r["r"])[:TABLE_ROWS]
    assert entry["shown"] == [r["roi"] for r in best]
    parser = Tables()
    parser.feed(page)
    table = table_with(parser.tables, ["ROI", "subjects", "r"], "ridge, loso")
    check_rows(
        table,
        best,
        ["roi", "n_subjects", "r", "ci_low", "ci_high"]
        + ["chance_low", "chance_high", "sign_flip_p", "sign_flip_q", "surrogate_q"],
    )
    # every parcel in the CSV the page carries, equal to the JSON
    (link,) = re.findall(r'download="rois.csv" href="data:text/csv;base64,([^"]+)"', page)
    csv = pd.read_csv(io.BytesIO(base64.b64decode(link)))
    assert len(csv) == 400 and list(csv["roi"]) == list(rois)
    assert csv["r"].to_numpy() == pytest.approx([r["r"] for r in rois.values()])
    traces = table_with(parser.tables, ["ROI", "test r (whole test split)"])
    assert len(traces["rows"]) == TABLE_ROWS
    assert "(400 in all)" in page  # the dataset's ROI list is cut short
    tokens, missing = numbers_not_in_json(page, data)
    assert tokens and not missing, missing[:20]
    assert len(page) < 2_000_000

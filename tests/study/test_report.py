"""``eeg2bold report`` on a real (small) sweep: every section, valid figures, every number of the
HTML in the JSON, statistics equal to a direct calculation, and a clean render in Chromium."""

from __future__ import annotations

import base64
import html
import io
import json
import re

import numpy as np
import pytest
import scipy.stats
import yaml
from report_tables import Tables, check_rows, chromium_check, numbers_not_in_json, table_with

from eeg2bold.cli import main
from eeg2bold.run_folder.table import read_results
from eeg2bold.simulate import SimulationConfig
from eeg2bold.simulate.write import simulate_to_store
from eeg2bold.study.report import sections
from eeg2bold.study.selection import nested_selection
from eeg2bold.training.metrics import fisher_mean

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def study(ray_cluster, tmp_path_factory):
    """within + LOSO × ridge + beira, 3 trials per arm, on 3 subjects × 4 min."""
    root = tmp_path_factory.mktemp("report")
    store = root / "sim.zarr"
    config = SimulationConfig(subjects=3, minutes=4, channels=8, sfreq=100, rois=3, seed=5)
    simulate_to_store(store, config, progress=False)
    study = {
        "name": "report-test",
        "dataset": str(store),
        "protocols": ["within", "loso"],
        "models": ["ridge", "beira"],
        "search": {"data.window_s": 10.0, "train.steps_per_epoch": 3},
        "budget": {"num_samples": 3},
        "scheduler": {"type": "fifo", "max_epochs": 2},
        "resources": {"cpu": 0.3, "trial_cpu": 0.05},
        "max_concurrent_trials": 2,
        "storage": {"results": str(root / "sweep")},
        "seed": 3,
    }
    path = root / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    assert main(["sweep", str(path)]) == 0
    out = root / "out"
    code = main(
        [
            "report",
            str(root / "sweep"),
            "-o",
            str(out / "report.html"),
            "--json",
            str(out / "report.json"),
            "--n-boot",
            "400",
            "--n-surrogates",
            "60",
            "-q",
        ]
    )
    assert code == 0
    return {
        "sweep": root / "sweep",
        "html": (out / "report.html").read_text(),
        "json": json.loads((out / "report.json").read_text()),
        "html_path": out / "report.html",
    }


def _images(text: str) -> list[bytes]:
    sources = re.findall(r'<img[^>]*\ssrc="([^"]+)"', text)
    prefix = "data:image/png;base64,"
    assert all(s.startswith(prefix) for s in sources), "every image is embedded as a PNG"
    return [base64.b64decode(s[len(prefix) :], validate=True) for s in sources]


def test_every_section_and_figure_is_there(study):
    text, data = study["html"], study["json"]
    for key, title in sections(data):
        assert f'<section id="{key}">' in text
        assert html.escape(title) in text
    figures = set(data["figures"])
    arms = {(a["protocol"], a["model"]) for a in data["sweep"]["arms"]}
    assert arms == {(p, m) for p in ("within", "loso") for m in ("ridge", "beira")}
    # FIFO: every trial ran its epochs to the end (ASHA would stop some)
    assert all(a["n_ran_to_end"] == a["states"]["COMPLETE"] == 3 for a in data["sweep"]["arms"])
    for protocol, model in arms:
        assert f"rois-{protocol}-{model}" in figures
    assert {"overview", "histories", "loso_vs_within", "traces", "spectra", "topomaps"} <= figures
    # 3 trials per arm: importances would be noise, so they are skipped with a note
    assert not any(k.startswith("importances-") for k in figures)
    assert "at least 10 completed trials" in study["html"]
    assert "skipped" in data["calibration"]  # no calibration curve in this study
    assert [a["protocol"] for a in data["overview"]["arms"]] == sorted(
        a["protocol"] for a in data["overview"]["arms"]
    )
    assert data["interpretation"]["model"] == "beira"
    assert data["dataset"]["n_subjects"] == 3 and len(data["dataset"]["oracle_r"]) == 3
    assert data["reproducibility"]["study_seed"] == 3
    assert data["reproducibility"]["report"]["versions"]["eeg2bold"]
    assert "sweep" in data["reproducibility"] and data["reproducibility"]["sweep"]["versions"]


def test_the_report_says_what_the_search_bought(study):
    """Per arm, the selected configurations' mean test r beside the defaults trial's."""
    data = study["json"]
    gain = {(g["protocol"], g["model"]): g for g in data["search_gain"]["arms"]}
    arms = {(a["protocol"], a["model"]): a for a in data["statistics"]["arms"]}
    assert set(gain) == set(arms)
    for key, g in gain.items():
        assert g["r"] == pytest.approx(arms[key]["r"])  # same subjects: every fold finished
        assert g["bought_r"] == pytest.approx(g["r"] - g["defaults_r"])
        assert -1 < g["defaults_r"] < 1
        assert g["bought_low"] <= g["bought_r"] <= g["bought_high"]
    mean = sum(g["bought_r"] for g in gain.values()) / len(gain)
    assert data["search_gain"]["mean_bought_r"] == pytest.approx(mean)
    assert f"test r is {mean:+.3f} from the models" in study["html"]
    # the note names the rule this report selected with, and the interval has its column
    assert data["search_gain"]["rule"] == "best"
    assert "each fold takes the configuration best on val" in study["html"]
    assert "more than one standard error" not in study["html"].split("What the search bought")[1]
    assert "paired 95% bootstrap of the difference across subjects" in study["html"]


def test_figures_are_valid_pngs(study):
    import matplotlib.image as mpimg

    images = _images(study["html"])
    assert len(images) == len(study["json"]["figures"])
    for png in images:
        assert png.startswith(PNG)
        pixels = mpimg.imread(io.BytesIO(png), format="png")
        assert pixels.ndim == 3 and min(pixels.shape[:2]) > 50
        assert pixels.std() > 0  # not a blank canvas
    assert "http://" not in study["html"] and "https://" not in study["html"]
    assert "<script" not in study["html"]


def test_every_number_in_the_html_is_in_the_json(study):
    tokens, missing = numbers_not_in_json(study["html"], study["json"])
    assert len(tokens) > 100
    assert not missing, f"numbers shown but not in the JSON: {missing[:20]}"


def test_html_tables_show_the_json_field_by_field(study):
    """Each table cell is the JSON value of its own row and column: a swapped CI column, val
    shown as test or another ROI's row fails here."""
    parser = Tables()
    parser.feed(study["html"])
    tables, data = parser.tables, study["json"]
    summary = table_with(tables, ["protocol", "model", "subjects", "mean r", "min ROI r"])
    check_rows(
        summary,
        data["summary"],
        ["protocol", "model", "n_subjects", "mean_r", "min_r", "max_r"]
        + [lambda r: f"{r['n_above_chance']} of {r['n_rois']}", "mean_gap", "oracle_r"],
    )
    roi_fields = ["roi", "n_subjects", "r", "ci_low", "ci_high", "chance_low", "chance_high"]
    roi_fields += ["sign_flip_p", "sign_flip_q", "surrogate_q"]
    for entry in data["results"]:
        heading = f"{entry['model']}, {entry['protocol']}"
        records = [
            r
            for r in data["statistics"]["rois"]
            if (r["protocol"], r["model"]) == (entry["protocol"], entry["model"])
        ]
        check_rows(table_with(tables, ["ROI", "subjects", "r"], heading), records, roi_fields)
    gap = table_with(tables, ["model", "protocol", "ROI", "pairs"])
    check_rows(
        gap,
        data["statistics"]["comparisons"],
        ["model", "protocol", "roi", "n_pairs", "reference_r", "protocol_r", "gap", "gap_low"]
        + ["gap_high", "wilcoxon_two_sided_p", "wilcoxon_two_sided_q", "sign_flip_two_sided_p"]
        + ["sign_flip_two_sided_q"],
    )
    best = table_with(tables, ["protocol", "model", "trials", "states", "best trial"])
    check_rows(
        best,
        data["sweep"]["arms"],
        ["protocol", "model", "n_trials", lambda a: best_states(a)]
        + [lambda a: a["best"]["trial"], lambda a: a["best"]["val_r"]]
        + [lambda a: a["best"]["test_r"], lambda a: best_params(a)],
    )
    gain = table_with(tables, ["protocol", "model", "subjects", "defaults kept", "defaults r"])
    check_rows(
        gain,
        data["search_gain"]["arms"],
        ["protocol", "model", "n_subjects", lambda g: f"{g['defaults_kept']} of {g['n_folds']}"]
        + ["defaults_r", "r", "bought_r", "bought_low", "bought_high"],
    )
    traces = table_with(tables, ["ROI", "test r (whole test split)"])
    check_rows(traces, data["traces"]["rois"], ["roi", "r"])
    overview = table_with(tables, ["protocol", "model", "subjects", "mean r", "CI low"])
    check_rows(
        overview,
        data["overview"]["arms"],
        ["protocol", "model", "n_subjects", "r", "ci_low", "ci_high", "chance_low", "chance_high"],
    )


def best_states(arm):
    states = ", ".join(f"{k} {v}" for k, v in sorted(arm["states"].items()))
    return f"{states} ({arm['n_ran_to_end']} ran to the end)"


def best_params(arm):
    def short(v):
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    return ", ".join(f"{k}={short(v)}" for k, v in arm["best"]["params"].items()) or "–"


def test_roi_numbers_equal_a_direct_nested_selection(study):
    """The per-ROI r is the Fisher mean over held-out subjects of the val-selected test r."""
    selection = nested_selection(read_results(study["sweep"] / "table"))
    rois = study["json"]["statistics"]["rois"]
    assert len(rois) == 4 * 3
    for row in rois:
        chosen = selection[
            (selection["protocol"] == row["protocol"])
            & (selection["model"] == row["model"])
            & (selection["roi"] == row["roi"])
        ]
        assert row["n_subjects"] == len(chosen) == 3
        assert row["r"] == pytest.approx(float(fisher_mean(chosen["test_r"].to_numpy())))
        assert row["ci_low"] <= row["r"] <= row["ci_high"]
        if row["protocol"] == "loso":  # a whole held-out run: long enough for ≥ 30 s shifts
            assert row["n_chance"] == 3
            assert row["chance_low"] < row["chance_r"] < row["chance_high"]
            assert abs(row["chance_r"]) < 0.2
        else:  # within: 4-min runs leave test segments under 60 s, and the report says so
            assert row["chance_r"] is None
    notes = study["json"]["notes"]
    assert any("within/ridge" in n and "no surrogate chance level" in n for n in notes)
    headline = {(h["protocol"], h["model"]): h for h in study["json"]["summary"]}
    assert len(headline) == 4
    for (protocol, model), h in headline.items():
        mine = [r["r"] for r in rois if r["protocol"] == protocol and r["model"] == model]
        assert h["mean_r"] == pytest.approx(float(fisher_mean(np.array(mine))))
        assert h["min_r"] <= h["mean_r"] <= h["max_r"] and h["n_rois"] == 3
        assert (h["mean_gap"] is None) == (protocol == "within")
    trace = study["json"]["traces"]
    assert trace["protocol"] == "loso"  # the cross-subject claim is what the traces show
    arrays = np.load(study["sweep"] / trace["file"])  # the r shown is the file's, by scipy
    assert [r["roi"] for r in trace["rois"]] == [str(o) for o in arrays["outputs"]]
    for roi, truth, pred in zip(
        trace["rois"], arrays["test_truth"], arrays["test_pred"], strict=True
    ):
        assert roi["r"] == pytest.approx(scipy.stats.pearsonr(truth, pred)[0], abs=1e-9)


def test_unwritable_output_is_one_line(study, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    out = blocker / "report.html"
    assert main(["report", str(study["sweep"]), "-o", str(out), "-q", "--n-boot", "50"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write the report" in err[-1] and str(out) in err[-1]
    assert blocker.read_text() == "not a folder"


def test_report_errors_are_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path), "-o", str(tmp_path / "r.html")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a run folder" in err[0]
    assert not (tmp_path / "r.html").exists()


def test_opens_in_headless_chromium_without_missing_resources(study, tmp_path):
    checked = chromium_check(study["html"], tmp_path)
    assert checked["images"] == len(study["json"]["figures"]) and checked["broken"] == 0
    assert checked["sections"] == len(sections(study["json"]))


def test_the_one_se_selection_rule_reaches_the_statistics_and_the_gain_table(study):
    """``--selection one_se``: the report's per-ROI r and its "defaults kept" counts are those
    of nested selection under the rule, computed directly here."""
    from eeg2bold.run_folder import RunFolder
    from eeg2bold.study.queries import defaults_trials, load_sweep, trials_table
    from eeg2bold.study.report import ReportOptions, build_report

    defaults = defaults_trials(trials_table(load_sweep(RunFolder(study["sweep"]).url)))
    assert len(defaults) == 4  # every arm has its defaults trial
    options = ReportOptions(n_boot=50, n_surrogates=10, selection="one_se")
    data = build_report(study["sweep"], options=options).data
    results = read_results(study["sweep"] / "table")
    selection = nested_selection(results, rule="one_se", defaults=defaults)
    for row in data["statistics"]["rois"]:
        chosen = selection[
            (selection["protocol"] == row["protocol"])
            & (selection["model"] == row["model"])
            & (selection["roi"] == row["roi"])
        ]
        assert row["r"] == pytest.approx(float(fisher_mean(chosen["test_r"].to_numpy())))
    folds = selection.drop_duplicates(["protocol", "model", "fold"])
    for arm in data["search_gain"]["arms"]:
        mine = folds[(folds["protocol"] == arm["protocol"]) & (folds["model"] == arm["model"])]
        assert arm["defaults_kept"] == int((mine["chosen_by"] == "defaults").sum())
    assert "one SE" in data["statistics"]["settings"]["selection"]
    assert data["search_gain"]["rule"] == "one_se"

"""The report's HTML: every number it shows read from :attr:`Report.data` (the JSON), figures
embedded as data URIs, tables trimmed to their best :data:`~eeg2bold.study.report.TABLE_ROWS`
rows with the rest in embedded CSV. Rendering only: the numbers are built in
:mod:`eeg2bold.study.report`.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from eeg2bold.study.report import (
    LISTED_NAMES,
    MIN_IMPORTANCE_TRIALS,
    TABLE_ROWS,
    Report,
    sections,
)


# -- HTML ----------------------------------------------------------------------------------
def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–"
        if value != 0 and abs(value) < 10**-digits:
            return f"{value:.1e}"
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, digits: int = 3) -> str:
    body = "".join(
        "<tr>" + "".join(f"<td>{_fmt(v, digits)}</td>" for v in row) + "</tr>" for row in rows
    )
    if not any(headers):  # a key-value table
        return f"<table><tbody>{body}</tbody></table>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(report: Report, key: str, alt: str) -> str:
    data = base64.b64encode(report.figures[key]).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def _download(name: str, records: Sequence[Mapping[str, Any]], what: str) -> str:
    """A link that saves ``records`` as ``name`` (CSV inside the page: still one file)."""
    payload = pd.DataFrame(list(records)).to_csv(index=False).encode("utf-8")
    data = base64.b64encode(payload).decode("ascii")
    return (
        f'<p class="note">{html.escape(what)}: <a download="{html.escape(name)}" '
        f'href="data:text/csv;base64,{data}">{html.escape(name)}</a></p>'
    )


def _shown_note(shown: int, total: int, what: str, order: str) -> str:
    if shown >= total:
        return ""
    return _note(f"The {shown} of {total} {what} with the {order} shown; every row is in the CSV.")


def _arm_rows(arms: Sequence[Mapping[str, Any]], *, minutes: bool = False) -> str:
    headers = ["protocol", "model"] + (["minutes"] if minutes else [])
    headers += ["subjects", "mean r", "CI low", "CI high", "chance low", "chance high"]
    rows = [
        [a["protocol"], a["model"]]
        + ([a["minutes"]] if minutes else [])
        + [a["n_subjects"], a["r"], a["ci_low"], a["ci_high"], a["chance_low"], a["chance_high"]]
        for a in arms
    ]
    return _table(headers, rows)


def _html_overview(report: Report) -> str:
    o = report.data["overview"]
    if "skipped" in o:
        return _note(f"Overview skipped: {o['skipped']}.")
    out = _img(report, o["figure"], "mean test r per model and protocol")
    out += _note(
        "Per model × protocol: each subject's mean test r over ROIs (Fisher z), averaged over "
        "subjects, with its 95% bootstrap CI across subjects and the chance band of that mean "
        "(circular-shift surrogates); the dashed line is the oracle r (simulated data)."
    )
    return out + _arm_rows(o["arms"])


def _html_calibration(report: Report) -> str:
    c = report.data["calibration"]
    if "skipped" in c:
        return _note(f"Skipped: {c['skipped']}.")
    out = _img(report, c["figure"], "calibration curve")
    out += _note(
        "How much of a new subject's own data buys back: loso_calibrated at each amount of the "
        "held-out subject's data in training, scored on one fixed test block of that subject "
        "(0 min: LOSO on the same block); selection never sees the new subject. Dashed: "
        "within-subject, dotted: plain LOSO (their own test blocks), for the same model."
    )
    return out + _arm_rows(c["points"], minutes=True)


def _html_summary(report: Report) -> str:
    rows = report.data["summary"]
    alpha = report.data["statistics"]["settings"]["alpha"]
    reference = report.data["statistics"]["settings"]["reference"]
    out = _note(
        "Per protocol × model, after nested selection: mean test r over ROIs (Fisher z of the "
        f"per-ROI means across subjects), its range over ROIs, ROIs whose sign-flip q < {alpha} "
        f"(FDR across ROIs), and the mean generalisation gap ({reference} − protocol) over ROIs."
    )
    small = [r for r in rows if r["min_possible_p"] > alpha]
    if small:
        worst = min(small, key=lambda r: r["n_subjects"])
        out += _note(
            f"With {worst['n_subjects']} subjects the smallest possible sign-flip p is "
            f"{worst['min_possible_p']}, so no ROI can pass q < {alpha}: more subjects are needed "
            "before significance can be read."
        )
    with_oracle = any(r["oracle_r"] is not None for r in rows)
    headers = ["protocol", "model", "subjects", "mean r", "min ROI r", "max ROI r"]
    headers += ["ROIs above chance", "mean gap"] + (["oracle r"] if with_oracle else [])
    table = [
        [
            r["protocol"],
            r["model"],
            r["n_subjects"],
            r["mean_r"],
            r["min_r"],
            r["max_r"],
            f"{r['n_above_chance']} of {r['n_rois']}",
            r["mean_gap"],
        ]
        + ([r["oracle_r"]] if with_oracle else [])
        for r in rows
    ]
    return _html_overview(report) + out + _table(headers, table) + _html_gain(report)


def _html_gain(report: Report) -> str:
    section = report.data.get("search_gain") or {}
    gain = section.get("arms") or []
    if not gain:
        return ""
    bought = [g["bought_r"] for g in gain]
    level = report.data["statistics"]["settings"]["level"]
    rule = (
        "a fold keeps the defaults unless a configuration beats them on val by more than one "
        "standard error"
        if section.get("rule") == "one_se"
        else "each fold takes the configuration best on val (the defaults among them)"
    )
    out = _note(
        f"What the search bought: over {len(gain)} arm(s), the selected configurations' mean "
        f"test r is {section['mean_bought_r']:+.3f} from the models' defaults on average "
        f"(from {min(bought):+.3f} to {max(bought):+.3f}). The defaults are trial 0 of every "
        "arm's search (what eeg2bold train gives), trained to the end and scored on the same "
        f"subjects; selection is nested and never sees test, and {rule}. CI: a paired "
        f"{level:.0%} bootstrap of the difference across subjects; where it spans 0, these "
        "subjects cannot tell the selected configurations from the defaults."
    )
    rows = [
        [
            g["protocol"],
            g["model"],
            g["n_subjects"],
            f"{g['defaults_kept']} of {g['n_folds']}",
            g["defaults_r"],
            g["r"],
            g["bought_r"],
            g["bought_low"],
            g["bought_high"],
        ]
        for g in gain
    ]
    headers = ["protocol", "model", "subjects", "defaults kept", "defaults r", "selected r"]
    headers += ["bought", "CI low", "CI high"]
    return out + _table(headers, rows)


def _html_dataset(d: Mapping[str, Any]) -> str:
    if "error" in d:
        return _note(f"dataset {d['url']} could not be read: {d['error']}")
    eeg, bold = d["eeg"], d["bold"]
    facts = [
        ("store", d["url"]),
        ("name", d["name"]),
        ("subjects", d["n_subjects"]),
        ("runs", d["n_runs"]),
        ("total duration (min)", d["total_duration_s"] / 60.0),
        ("EEG channels", len(eeg.get("channels", []))),
        ("EEG sampling rate (Hz)", eeg.get("sfreq")),
        ("TR (s)", bold.get("tr")),
        ("ROIs", _names(list(bold.get("rois", [])))),
    ]
    out = _table(["", ""], facts, digits=2)
    runs = [
        [
            r["subject"],
            r["run"],
            r["duration_s"] / 60.0,
            r.get("n_volumes"),
            ", ".join(r.get("bad_channels") or []) or "none",
            "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in r["qc_flags"].items()) or "none",
        ]
        for r in d["runs"]
    ]
    out += _table(
        ["subject", "run", "minutes", "volumes", "bad channels", "QC flags"], runs, digits=1
    )
    if d.get("oracle_r"):
        out += (
            "<p>Simulated data: the oracle r (noise-free BOLD against the noisy one, the best "
            "any model can reach) per ROI, averaged over runs (Fisher z):</p>"
        )
        oracle = list(d["oracle_r"].items())
        out += _table(["ROI", "oracle r"], oracle[:TABLE_ROWS])
        if len(oracle) > TABLE_ROWS:
            out += _note(f"The first {TABLE_ROWS} of {len(oracle)} ROIs; all are in the JSON.")
    return out


def _names(names: Sequence[str]) -> str:
    if len(names) <= LISTED_NAMES:
        return ", ".join(names)
    return ", ".join(names[:LISTED_NAMES]) + f", … ({len(names)} in all)"


def _html_sweep(report: Report) -> str:
    s = report.data["sweep"]
    if not s["arms"]:
        return _note(
            "Trained with eeg2bold train: one configuration, no search (its settings are in "
            "the reproducibility section)."
        )
    out = f"<p>Sweep {_fmt(s['name'])} (id {_fmt(s['sweep_id'])}): {s['n_trials']} trials.</p>"
    rows = []
    for arm in s["arms"]:
        best = arm["best"] or {}
        params = ", ".join(f"{k}={_short(v)}" for k, v in (best.get("params") or {}).items())
        rows.append(
            [
                arm["protocol"],
                arm["model"],
                arm["n_trials"],
                ", ".join(f"{k} {v}" for k, v in sorted(arm["states"].items()))
                + f" ({arm['n_ran_to_end']} ran to the end)"
                + _retries_text(arm),
                best.get("trial"),
                best.get("val_r"),
                best.get("test_r"),
                params or "–",
            ]
        )
    out += "<h3>Best configuration per protocol × model (ranked by mean validation r)</h3>"
    out += _table(
        ["protocol", "model", "trials", "states", "best trial", "val r", "test r", "parameters"],
        rows,
    )
    out += _note(
        "Test r is shown beside the best trial for information only; it never selects. The "
        "per-ROI results below use nested selection: per held-out subject, the configuration "
        "with the best validation score on that fold."
    )
    out += "<h3>Optimisation history</h3>"
    if s.get("figure_histories"):
        out += _img(report, s["figure_histories"], "optimisation histories")
    shown = [a for a in s["arms"] if a.get("figure_importances")]
    skipped = [a for a in s["arms"] if "skipped" in a["importances"]]
    out += "<h3>Parameter importances</h3>"
    if shown:
        out += (
            '<div class="figs">'
            + "".join(
                _img(report, a["figure_importances"], f"importances {a['protocol']} {a['model']}")
                for a in shown
            )
            + "</div>"
        )
    if skipped:
        out += _note(
            f"Importances shown only for arms with at least {MIN_IMPORTANCE_TRIALS} completed "
            "trials (fewer give noise); skipped: "
            + "; ".join(f"{a['protocol']} × {a['model']}" for a in skipped)
            + "."
        )
    if s["failures"]:
        out += "<h3>Failed trials</h3>" + _table(
            ["protocol", "model", "trial", "reason"],
            [[f["protocol"], f["model"], f["trial"], f["reason"]] for f in s["failures"]],
        )
    return out


def _retries_text(arm: Mapping[str, Any]) -> str:
    n, lost = arm.get("n_retries", 0), arm.get("n_lost_nodes", 0)
    if not n:
        return ""
    return (
        f"; {n} retried ({lost} after losing their node, {n - lost} after losing a worker), "
        "each resumed from its last epoch checkpoint"
    )


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _html_results(report: Report) -> str:
    stats = report.data["statistics"]
    settings = stats["settings"]
    out = _note(
        "Mean test r across subjects, one per fold (Fisher z); "
        f"{settings['level']:.0%} bootstrap CI ({settings['n_boot']} resamples across "
        "subjects); chance band from "
        f"{settings['n_surrogates']} circular shifts (≥ {settings['min_shift_s']:g} s) of each "
        "selected fold's test predictions; p from sign flips of subject z (H1: r > 0) with "
        "Benjamini–Hochberg q across ROIs; * marks q < 0.05."
    )
    if report.data.get("notes"):
        out += "<details><summary>Notes on the statistics</summary><ul>"
        out += (
            "".join(f"<li>{html.escape(n)}</li>" for n in report.data["notes"]) + "</ul></details>"
        )
    out += _download("rois.csv", stats["rois"], "Every ROI of every protocol × model")
    for entry in report.data["results"]:
        out += f"<h3>{html.escape(entry['model'])}, {html.escape(entry['protocol'])}</h3>"
        out += _img(report, entry["figure"], f"ROI bars {entry['protocol']} {entry['model']}")
        if entry.get("figure_kind") == "ranked":
            out += _note(
                f"{entry['n_rois']} ROIs ranked by test r: line, its 95% CI (band) and the "
                f"chance band; dots: q < {settings['alpha']:g}."
            )
        mine = {
            r["roi"]: r
            for r in stats["rois"]
            if r["protocol"] == entry["protocol"] and r["model"] == entry["model"]
        }
        rows = [
            [
                r["roi"],
                r["n_subjects"],
                r["r"],
                r["ci_low"],
                r["ci_high"],
                r["chance_low"],
                r["chance_high"],
                r["sign_flip_p"],
                r["sign_flip_q"],
                r["surrogate_q"],
            ]
            for r in (mine[roi] for roi in entry["shown"])
        ]
        out += _shown_note(len(rows), len(mine), "ROIs", "highest r")
        out += _table(
            [
                "ROI",
                "subjects",
                "r",
                "CI low",
                "CI high",
                "chance low",
                "chance high",
                "sign-flip p",
                "q (FDR)",
                "surrogate q",
            ],
            rows,
        )
    return out


def _html_generalization(report: Report) -> str:
    g = report.data["generalization"]
    stats = report.data["statistics"]
    if not g["points"]:
        return _note(
            f"Needs the {g['reference']} protocol and another one for the same model; this "
            "sweep has no such pair."
        )
    out = _img(report, g["figure"], "LOSO vs within scatter")
    out += _note(
        "One point per subject and model: its mean test r over ROIs within-subject (x) and "
        "with that subject left out (y). Below the diagonal: lost on an unseen subject."
    )
    by_key = {(c["model"], c["protocol"], c["roi"]): c for c in stats["comparisons"]}
    shown = g["shown"]
    chosen = [by_key[s["model"], s["protocol"], roi] for s in shown for roi in s["rois"]]
    rows = [
        [
            c["model"],
            c["protocol"],
            c["roi"],
            c["n_pairs"],
            c["reference_r"],
            c["protocol_r"],
            c["gap"],
            c["gap_low"],
            c["gap_high"],
            c["wilcoxon_two_sided_p"],
            c["wilcoxon_two_sided_q"],
            c["sign_flip_two_sided_p"],
            c["sign_flip_two_sided_q"],
        ]
        for c in chosen
    ]
    out += "<h3>Generalisation gap per ROI (within − other protocol)</h3>"
    out += _download("comparisons.csv", stats["comparisons"], "Every ROI's comparison")
    out += "".join(
        _shown_note(
            len(s["rois"]), s["n_rois"], f"ROIs of {s['model']} × {s['protocol']}", "largest gap"
        )
        for s in shown
    )
    out += _table(
        [
            "model",
            "protocol",
            "ROI",
            "pairs",
            f"{g['reference']} r",
            "other r",
            "gap",
            "gap CI low",
            "gap CI high",
            "Wilcoxon p",
            "Wilcoxon q",
            "sign-flip p",
            "sign-flip q",
        ],
        rows,
    )
    return out


def _html_traces(report: Report) -> str:
    t = report.data["traces"]
    if "skipped" in t:
        return _note(f"Skipped: {t['skipped']}.")
    which = "Best arm" if t["protocol"] == "within" else "Best cross-subject arm"
    out = _note(
        f"{which} {t['model']} ({t['protocol']}); the fold with the median test score "
        f"(subject {t['subject']}, trial {t['trial']}), not the best one; first contiguous "
        "test segment, z-scored for display."
    )
    out += _img(report, t["figure"], "predicted vs true BOLD")
    by_roi = {r["roi"]: r["r"] for r in t["rois"]}
    shown = t["shown"]
    if len(shown) < len(by_roi):
        out += _note(
            f"The {len(shown)} of {len(by_roi)} outputs with the highest test r in this fold "
            "are listed; all are in the JSON."
        )
    out += _table(["ROI", "test r (whole test split)"], [[roi, by_roi[roi]] for roi in shown])
    return out


def _html_brain(report: Report) -> str:
    b = report.data["brain"]
    alpha = b["alpha"]
    out = _note(
        "Each parcel's test r (Fisher mean across subjects, as in the per-ROI results) at its "
        f"MNI position, on one colour scale for every figure ({b['vmin']:g} to {b['vmax']:g}). "
        f"Large outlined markers: sign-flip q < {alpha:g} (Benjamini–Hochberg FDR across "
        "parcels); small faded ones: not significant."
    )
    left_out = sorted({roi for e in b["figures"] for roi in e["left_out"]})
    if left_out:
        out += _note("Without a position, not drawn: " + ", ".join(left_out) + ".")
    unscored = sorted({roi for e in b["figures"] for roi in e.get("unscored", [])})
    if unscored:
        out += _note("Without a test r, not drawn: " + _names(unscored) + ".")
    for e in b["figures"]:
        out += f"<h3>{html.escape(e['model'])}, {html.escape(e['protocol'])}</h3>"
        out += _img(report, e["figure"], f"parcels on the brain {e['protocol']} {e['model']}")
        out += _note(
            f"{e['n_significant']} of {e['n_parcels']} parcels with q < {alpha:g}"
            + (": " + _names(e["significant"]) if e["significant"] else "")
            + "."
        )
    return out


def _html_interpretation(report: Report) -> str:
    i = report.data["interpretation"]
    if "skipped" in i:
        return _note(f"Skipped: {i['skipped']}.")
    out = _note(
        f"{i['model']} ({i['protocol']}), fold model of {i['subject']} "
        f"({i['file']}): Haufe forward patterns of the front-end's spatial filters (covariance "
        "of that subject's EEG) and the magnitude responses of its band-pass filters."
    )
    if i.get("topomaps_skipped"):
        out += _note(f"Topomaps skipped: {i['topomaps_skipped']}.")
    out += '<div class="figs">' + "".join(_img(report, k, k) for k in i["figures"]) + "</div>"
    out += _table(
        ["branch", "peak frequency (Hz)"],
        [[b["branch"], b["peak_hz"]] for b in i["branches"]],
        digits=1,
    )
    return out


def _html_reproducibility(report: Report) -> str:
    r = report.data["reproducibility"]
    env = r["report"]
    git = env.get("git") or {}
    sweep_git = (r.get("sweep") or {}).get("git") or {}
    facts = [
        ("report built", env.get("time_utc")),
        ("report code commit", _commit(git)),
        ("sweep code commit", _commit(sweep_git) if r.get("sweep") else "not recorded"),
        ("study seed", r.get("study_seed")),
        ("statistics seed", r["statistics"].get("seed")),
        ("platform", env.get("platform")),
    ]
    facts += [(name, v or "not installed") for name, v in env["versions"].items()]
    out = _table(["", ""], facts)
    out += "<h3>Selected configuration per fold</h3>"
    out += _table(
        ["protocol", "model", "fold", "subject", "trial", "config hash", "seed"],
        [
            [
                c["protocol"],
                c["model"],
                c["fold"],
                c["subject"],
                c["trial"],
                c["config_hash"],
                c["seed"],
            ]
            for c in r["selected_configs"]
        ],
    )
    out += (
        "<h3>Study config</h3><pre>"
        + html.escape(json.dumps(r["study_config"], indent=2))
        + "</pre>"
    )
    return out


def _commit(git: Mapping[str, Any]) -> str:
    if not git:
        return "not a git checkout"
    return f"{git['commit']}{' (uncommitted changes)' if git.get('dirty') else ''}"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem auto;
max-width:1100px;padding:0 1rem;color:#222;line-height:1.4}
h1{font-size:1.6rem}h2{border-bottom:1px solid #ccc;padding-bottom:.2rem;margin-top:2.2rem}
h3{font-size:1.05rem;margin-top:1.4rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.85rem}
th,td{border:1px solid #ddd;padding:.2rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f4f4}img{max-width:100%;margin:.4rem .4rem .4rem 0}
.figs{display:flex;flex-wrap:wrap;align-items:flex-start}.note{color:#555;font-size:.9rem}
nav a{margin-right:1rem}pre{background:#f7f7f7;padding:.6rem;font-size:.75rem;overflow:auto}
"""


def render_html(report: Report) -> str:
    """The report as one HTML document: no script, no external resource."""
    d = report.data
    title = f"eeg2bold report: {d['sweep'].get('name') or d['study']}"
    parts = {
        "summary": _html_summary(report),
        "calibration": _html_calibration(report),
        "dataset": _html_dataset(d["dataset"]),
        "sweep": _html_sweep(report),
        "results": _html_results(report),
        "brain": _html_brain(report) if (d.get("brain") or {}).get("figures") else "",
        "generalization": _html_generalization(report),
        "traces": _html_traces(report),
        "interpretation": _html_interpretation(report),
        "reproducibility": _html_reproducibility(report),
    }
    shown = sections(d)
    nav = "".join(f'<a href="#{k}">{html.escape(v)}</a>' for k, v in shown)
    body = "".join(
        f'<section id="{k}"><h2>{html.escape(v)}</h2>{parts[k]}</section>' for k, v in shown
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><nav>{nav}</nav>{body}</body></html>"
    )

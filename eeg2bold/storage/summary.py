"""A dataset at a glance: what ``eeg2bold inspect`` prints (text) or emits (``--json``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from eeg2bold.storage.store import Dataset


def summarize(dataset: Dataset, *, verify: bool = False) -> dict[str, Any]:
    """Subjects, runs, durations, channels, ROIs, rates and QC flags; reads metadata only.

    With ``verify`` every run is re-read in full and checked against its content hash.
    """
    info = dataset.info
    runs = []
    for key in dataset.runs():
        attrs = dataset.run_attrs(key)
        qc = attrs.get("qc", {})
        flags = {k: v for k, v in qc.items() if isinstance(v, list) and v}
        entry: dict[str, Any] = {
            "subject": key.subject,
            "run": key.run,
            "session": attrs.get("session"),
            "task": attrs.get("task"),
            "duration_s": attrs.get("n_samples", 0) / info.eeg.sfreq,
            "n_volumes": attrs.get("n_volumes"),
            "bad_channels": attrs.get("bad_channels", []),
            "qc_flags": flags,
            "has_truth": False,
        }
        truth = _truth_attrs(dataset, key.subject, key.run)
        if truth is not None:
            entry["has_truth"] = True
            oracle = truth.get("oracle_r")
            if oracle:
                entry["oracle_r"] = oracle
        if verify:
            entry["problems"] = dataset.verify(key)
        runs.append(entry)
    return {
        "url": dataset.url,
        "name": info.name,
        "schema": info.to_attrs()["schema"],
        "created": info.created,
        "source": info.source,
        "n_subjects": len({r["subject"] for r in runs}),
        "n_runs": len(runs),
        "total_duration_s": sum(r["duration_s"] for r in runs),
        "eeg": info.eeg.to_attrs(),
        "bold": info.bold.to_attrs(),
        "min_window_s": info.min_window_s,
        "preprocessing": info.preprocessing,
        "runs": runs,
        "stale_temporaries": len(dataset.stale_temporaries()),
        "live_temporaries": len(dataset.live_temporaries()),
    }


def _truth_attrs(dataset: Dataset, subject: str, run: str) -> dict[str, Any] | None:
    try:
        meta = dataset.location.read_json(subject, run, "truth", "zarr.json")
    except FileNotFoundError:
        return None
    return dict(meta.get("attributes", {}))


def _names(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", … (+{len(names) - limit})" if len(names) > limit else "")


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable text of :func:`summarize`'s result."""
    eeg, bold = summary["eeg"], summary["bold"]
    lines = [
        f"dataset   {summary['name']}  ({summary['url']})",
        f"source    {summary['source']}, created {summary['created'] or '?'}",
        f"subjects  {summary['n_subjects']}   runs {summary['n_runs']}   "
        f"total {summary['total_duration_s'] / 60:.1f} min",
        f"EEG       {len(eeg['channels'])} channels @ {eeg['sfreq']:g} Hz, {eeg['units']}"
        + (f", montage {eeg['montage']}" if eeg.get("montage") else ""),
        f"          {_names(eeg['channels'])}",
        f"BOLD      {len(bold['rois'])} ROIs, TR {bold['tr']:g} s"
        + (f", atlas {bold['atlas']}" if bold.get("atlas") else ""),
        f"          {_names(bold['rois'])}",
    ]
    if summary["preprocessing"]:
        steps = ", ".join(summary["preprocessing"])
        lines.append(f"preproc   {steps}")
    # runs are published one at a time (atomically), so there is no consolidated metadata to
    # go stale; xarray's default looks for it first and warns on every open
    lines.append(
        f'xarray    xr.open_datatree("{summary["url"]}", engine="zarr", consolidated=False)'
    )
    lines.append("")
    header = f"{'subject':<12}{'run':<16}{'minutes':>8}{'volumes':>9}  flags"
    lines.append(header)
    lines.append("-" * len(header))
    for r in summary["runs"]:
        flags = [f"{k}={_names(v, 4)}" for k, v in r["qc_flags"].items()]
        if r["bad_channels"]:
            flags.append(f"bad={_names(r['bad_channels'], 4)}")
        if r.get("oracle_r"):
            flags.append(f"truth (oracle r {float(np.mean(r['oracle_r'])):.2f})")
        elif r["has_truth"]:
            flags.append("truth")
        if r.get("problems"):
            flags.append("PROBLEM: " + "; ".join(r["problems"]))
        elif "problems" in r:
            flags.append("verified")
        lines.append(
            f"{r['subject']:<12}{r['run']:<16}{r['duration_s'] / 60:>8.1f}"
            f"{r['n_volumes'] or 0:>9}  {' '.join(flags) or '-'}"
        )
    if not summary["runs"]:
        lines.append("(no runs)")
    if summary["stale_temporaries"]:
        lines.append(
            f"\nnote: {summary['stale_temporaries']} leftover temporary write(s) of crashed "
            "writers (invisible; the next write removes them, or `eeg2bold inspect STORE "
            "--repair`)"
        )
    if summary.get("live_temporaries"):
        lines.append(
            f"\nnote: {summary['live_temporaries']} write(s) in progress (or of another host, "
            "untouched for less than a day): left alone"
        )
    return "\n".join(lines)

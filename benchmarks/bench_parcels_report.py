"""Report build time at atlas scale: 400 parcels × 8 subjects × 100 trials per arm. Target: < 60 s.

The sweep folder is written by ``tests/study/report_tables.write_parcel_study`` (the report
tests' generator; no simulator, no training): a dataset of 8 subjects × one ``--minutes`` run
with 400 parcels and their MNI positions (``bold.roi_mni``, so the "On the brain" section is
built); the manifest of a real plan (within, loso × ridge, beira: 4 arms, 8 folds each); per
arm ``--trials-per-arm`` completed Optuna trials with parameters from the real search space
(so fANOVA importances compute); per trial × fold one results part as a finished fold leaves
it — the val curve (``final=False``, up to ``--max-epochs`` epochs × 400 parcels, beira only:
ridge is closed-form) and the final val and test rows per parcel.

"100 trials" are 100 sweep (Optuna) trials per arm, 400 in all, 3,200 trial folds, about 9
million result rows: what the report reads. Predictions files are written only for the trial
each fold selects (32 files): the report opens no other (``PredictionFiles`` reads on
access; surrogates and traces use the selected folds), and 3,200 files of 400 parcels would
be 7 GB of random numbers that change no timing but the folder listing. Their test r is
computed from the arrays with the report's metric, so table and files agree as after a real
sweep. No model files: the interpretation section is skipped (recorded in the JSON).

Timed: ``build_report`` (default n_boot=10000, n_surrogates=1000, seed 0; per-phase times
from its progress messages) and ``write_report`` (HTML + JSON), once each after the folder
is written. The target applies to the sum, the wait of ``eeg2bold report``. Absolute times
on a shared machine are noisy; ``--profile`` adds a cProfiled second build.

    python benchmarks/bench_parcels_report.py [--out FILE] [--rois 400] [--subjects 8]
        [--trials-per-arm 100] [--minutes 10] [--n-boot 10000] [--n-surrogates 1000]
        [--profile] [--keep DIR]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

from bench_report import _phases, _profile  # the same timing and profile (same folder)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "study"))  # the report tests' study generator

TARGET_S = 60.0
PROTOCOLS, MODELS = ("within", "loso"), ("ridge", "beira")
MAX_EPOCHS = 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/parcels_report.json")
    parser.add_argument("--rois", type=int, default=400)
    parser.add_argument("--subjects", type=int, default=8)
    parser.add_argument("--trials-per-arm", type=int, default=100, help="4 arms: 400 trials")
    parser.add_argument("--minutes", type=float, default=10.0, help="per subject")
    parser.add_argument("--n-boot", type=int, default=10000)
    parser.add_argument("--n-surrogates", type=int, default=1000)
    parser.add_argument("--profile", action="store_true", help="add a cProfiled second build")
    parser.add_argument("--keep", help="write the folder here and keep it (default: temporary)")
    args = parser.parse_args()

    from report_tables import write_parcel_study

    from eeg2bold.study.report import ReportOptions, build_report, write_report

    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        root.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        sizes = write_parcel_study(
            root,
            rois=args.rois,
            subjects=args.subjects,
            trials_per_arm=args.trials_per_arm,
            protocols=PROTOCOLS,
            models=MODELS,
            minutes=args.minutes,
            max_epochs=MAX_EPOCHS,
        )
        generate_s = time.perf_counter() - t0
        study = Path(sizes.pop("sweep"))
        gc.collect()
        marks: list[tuple[str, float]] = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t0 = time.perf_counter()
            report = build_report(
                study,
                options=ReportOptions(n_boot=args.n_boot, n_surrogates=args.n_surrogates),
                echo=lambda msg: marks.append((msg, time.perf_counter())),
            )
            t1 = time.perf_counter()
            written = write_report(report, study / "report.html", study / "report.json")
            t2 = time.perf_counter()
        build_s, write_s = t1 - t0, t2 - t1
        profile = (
            _profile(study, n_boot=args.n_boot, n_surrogates=args.n_surrogates, top=30)
            if args.profile
            else None
        )
        data = report.data
        out = {
            "benchmark": "parcels_report_build",
            "sizes": sizes | {"generate_s": generate_s},
            "settings": {"n_boot": args.n_boot, "n_surrogates": args.n_surrogates, "seed": 0},
            "build_report_s": build_s,
            "write_report_s": write_s,
            "total_s": build_s + write_s,
            "build_phases": _phases([("(start, before the first message)", t0), *marks], t1),
            "target_s": TARGET_S,
            "target_applies_to": "build_report + write_report",
            "passed": bool(build_s + write_s < TARGET_S),
            "html_mb": written["html"].stat().st_size / 1e6,
            "json_mb": written["json"].stat().st_size / 1e6,
            "figures": len(report.figures),
            "brain_figures": len((data.get("brain") or {}).get("figures") or []),
            "sections_skipped": {
                k: data[k]["skipped"]
                for k in ("brain", "traces", "interpretation")
                if isinstance(data.get(k), dict) and "skipped" in data[k]
            },
            "report_notes": {
                "count": len(data.get("notes") or []),
                "first": (data.get("notes") or [])[:5],
            },
            "warnings": {"count": len(caught), "first": [str(w.message) for w in caught[:5]]},
            "profile_top_cumulative": profile,
            "load_average": {"start": load_start, "end": os.getloadavg()},
            "platform": {
                "machine": platform.machine(),
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
            },
            "note": "absolute times on a shared machine are noisy",
        }
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    verdict = "pass" if out["passed"] else "FAIL"
    print(
        f"report of {args.trials_per_arm * len(PROTOCOLS) * len(MODELS)} trials × "
        f"{args.subjects} subjects × {args.rois} parcels ({sizes['results_rows']:,} result rows): "
        f"build {build_s:.1f} s + write {write_s:.1f} s = {build_s + write_s:.1f} s "
        f"(target < {TARGET_S:g} s: {verdict}) ({path})"
    )


if __name__ == "__main__":
    main()

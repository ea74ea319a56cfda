"""``eeg2bold ingest``: end to end through the command line, exit codes, one-line errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from eeg2bold.cli import main
from eeg2bold.storage import open_dataset


def _table(make, path, n=30):
    return make.table(path, np.random.default_rng(0).normal(size=(n, 3)), make.ROI_NAMES)


def _one_line_errors(err: str) -> list[str]:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert all(ln.startswith("eeg2bold: ") for ln in lines), lines
    assert "Traceback" not in err
    return lines


def test_ingest_files_real_edf_then_resume(real_data, tmp_path, capsys):
    out = tmp_path / "edf.zarr"
    argv = [
        "ingest",
        "files",
        str(out),
        "--eeg",
        str(real_data / "eeg" / "eyes-closed-1.edf"),
        "--bold",
        str(real_data / "vu_rest_bold" / "sub-03_scan-02_atlas-difumo64_timeseries.tsv"),
        "--tr",
        "2.1",
        "--start",
        "2",
        "--marker-mismatch",
        "first",
        "--rois",
        "Thalamus,Putamen",
        "--sfreq",
        "200",
        "--subject",
        "sub-03",
        "--run",
        "rest",
    ]
    assert main([*argv, "-q"]) == 0
    ds = open_dataset(out)
    assert ds.info.eeg.sfreq == 200
    assert [str(k) for k in ds.runs()] == ["sub-03/rest"]
    assert ds.read_run(ds.runs()[0]).bold.shape == (2, 23)  # volumes at 2 + 2.1 k s <= 50 s
    capsys.readouterr()
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "0 written, 1 skipped, 0 failed" in captured.out
    assert "sub-03/rest" in captured.out
    assert main(["inspect", "--verify", str(out)]) == 0


def test_ingest_files_errors_are_one_line_with_exit_status_1(tmp_path, make, capsys):
    vhdr = make.brainvision(tmp_path, "rec", make.eeg(seconds=70), markers=make.onsets(30))
    table = _table(make, tmp_path / "rois.tsv")
    out = str(tmp_path / "cli.zarr")
    base = ["ingest", "files", out, "--eeg", str(vhdr), "--tr", "2", "-q"]

    assert main([*base, "--bold", str(table)]) == 1  # no timing source given
    lines = _one_line_errors(capsys.readouterr().err)
    assert lines == [
        "eeg2bold: error: say where the volumes are on the EEG clock: --marker "
        "NAME (scanner markers) or --start SECONDS (first volume, then one per TR)"
    ]

    assert main([*base, "--bold", str(table), "--marker", "R128", "--h-freq", "200"]) == 1
    (line,) = _one_line_errors(capsys.readouterr().err)
    assert line == (
        "eeg2bold: error: options: invalid option(s): eeg: h_freq 200 Hz must be "
        "below the output Nyquist frequency (125 Hz)"
    )

    assert main([*base, "--bold", str(table), "--marker", "R128", "--bad-channels", "Q9"]) == 1
    (line,) = _one_line_errors(capsys.readouterr().err)
    assert line.startswith(
        f"eeg2bold: run sub-01/run-1 failed: {vhdr}: unknown channel(s) in bad_channels: 'Q9'"
    )

    short = _table(make, tmp_path / "short.tsv", n=28)
    assert main([*base, "--bold", str(short), "--marker", "R128"]) == 1
    (line,) = _one_line_errors(capsys.readouterr().err)
    assert f"{short}: 28 volumes (fewer than the 30 'R128' markers in rec.vhdr)" in line
    assert (
        main([*base, "--bold", str(short), "--marker", "R128", "--marker-mismatch", "first"]) == 0
    )
    (note,) = _one_line_errors(capsys.readouterr().err)
    assert "rule 'first' dropped 2 marker(s) at the end" in note
    assert open_dataset(out).read_run(open_dataset(out).runs()[0]).bold.shape == (3, 28)

    assert (
        main(
            [
                "ingest",
                "files",
                str(tmp_path / "x.zarr"),
                "--eeg",
                str(vhdr),
                "--bold",
                str(table),
                "--marker",
                "R128",
                "-q",
            ]
        )
        == 1
    )  # no TR
    (line,) = _one_line_errors(capsys.readouterr().err)
    assert line.endswith(f"{table}: TR unknown: give it (--tr SECONDS)")

    fresh = ["ingest", "files", str(tmp_path / "new.zarr"), "--eeg", str(vhdr), "--tr", "2", "-q"]
    assert main([*fresh, "--bold", str(table), "--marker", "R128", "--subject", "sub 01"]) == 1
    (line,) = _one_line_errors(capsys.readouterr().err)
    assert "invalid subject name 'sub 01'" in line

    # confounds cannot be regressed from a region table: refused, never silently ignored
    motion = tmp_path / "rp_run.txt"
    motion.write_text("0 0 0 0 0 0\n" * 30)
    fresh2 = [*fresh[:2], str(tmp_path / "conf.zarr"), *fresh[3:]]
    args = [*fresh2, "--bold", str(table), "--marker", "R128", "--confounds", str(motion)]
    assert main(args) == 1
    (line,) = _one_line_errors(capsys.readouterr().err)
    assert f"{motion}: --confounds given with the region table {table}" in line
    assert not (tmp_path / "conf.zarr").exists() or not open_dataset(tmp_path / "conf.zarr").runs()

    with pytest.raises(SystemExit):
        main(["ingest", "files", out, "--eeg", str(vhdr)])  # argparse: --bold is required


def test_ingest_natview_layout_through_a_subprocess(tmp_path, make):
    root = tmp_path / "natview"
    prefix = "sub-07_ses-01_task-rest_run-01"
    make.brainvision(root / "sub-07" / "ses-01" / "eeg", f"{prefix}_eeg", make.eeg(seconds=70))
    make.table(
        root / "rois" / f"{prefix}.csv",
        np.ones((25, 2)) * [[1.0, 2.0]],
        ("L", "R"),
        Nvol=25,
        Tstart=6.0,
    )
    out = tmp_path / "nv.zarr"
    cmd = [
        sys.executable,
        "-m",
        "eeg2bold.cli",
        "ingest",
        "natview",
        str(out),
        str(root),
        "--tr",
        "2.1",
        "--sfreq",
        "100",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "ingest natview" in done.stdout
    assert "1 written" in done.stdout
    run = open_dataset(out).read_run(open_dataset(out).runs()[0])
    np.testing.assert_allclose(run.volume_times, 6.0 + 2.1 * np.arange(25))
    verify = subprocess.run(
        [sys.executable, "-m", "eeg2bold.cli", "inspect", "--verify", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # a second natview run whose EEG is too short for its table fails; the first is kept
    prefix2 = "sub-08_ses-01_task-rest_run-01"
    make.brainvision(root / "sub-08" / "ses-01" / "eeg", f"{prefix2}_eeg", make.eeg(seconds=30))
    make.table(root / "rois" / f"{prefix2}.csv", np.ones((25, 2)), ("L", "R"), Nvol=25, Tstart=6.0)
    done = subprocess.run([*cmd, "-q"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    (line,) = _one_line_errors(done.stderr)
    assert line.startswith("eeg2bold: run sub-08/ses-01_task-rest_run-01 failed: ")
    assert "EEG ends at 30.000 s" in line
    assert [str(k) for k in open_dataset(out).runs()] == ["sub-07/ses-01_task-rest_run-01"]


def test_ingest_table_many_runs_in_one_call(tmp_path, make, capsys):
    """A manifest of three runs (relative paths, per-row TR and start, one broken row):
    two written and one failure naming its row and file, one summary; run again, every
    stored run is skipped; editing one row's start re-processes that run only."""
    data = tmp_path / "data"
    for sub in ("01", "02", "03"):
        make.brainvision(data / f"sub-{sub}", "rec", make.eeg(seconds=70, seed=int(sub)))
        _table(make, data / f"sub-{sub}" / "rois.tsv")
    manifest = data / "runs.tsv"
    rows = [
        "subject\trun\teeg\tbold\ttr\tstart",
        "sub-01\trest\tsub-01/rec.vhdr\tsub-01/rois.tsv\t2\t4",
        "sub-02\trest\tsub-02/rec.vhdr\tsub-02/rois.tsv\t2\t5",
        "sub-03\trest\tsub-03/missing.vhdr\tsub-03/rois.tsv\t2\t4",
    ]
    manifest.write_text("\n".join(rows) + "\n")
    out = tmp_path / "many.zarr"
    assert main(["ingest", "table", str(out), str(manifest)]) == 1  # one run failed
    captured = capsys.readouterr()
    assert "2 written, 1 failed" in captured.out
    assert f"{data / 'sub-03' / 'missing.vhdr'}: eeg file not found" in captured.out
    ds = open_dataset(out)
    assert [str(k) for k in ds.runs()] == ["sub-01/rest", "sub-02/rest"]
    first = ds.read_run(ds.runs()[1]).volume_times[0]
    assert first == pytest.approx(5.0)  # the row's start, on the EEG clock
    assert ds.info.bold.units == "as given (region table)"  # recorded, for xarray's units

    assert main(["ingest", "table", str(out), str(manifest)]) == 1
    summary = capsys.readouterr().out.splitlines()[0]
    assert "0 written" in summary and "2 skipped" in summary and "1 failed" in summary

    rows[2] = rows[2].replace("\t2\t5", "\t2\t6")  # sub-02 now starts at 6 s
    rows = rows[:3]
    manifest.write_text("\n".join(rows) + "\n")
    assert main(["ingest", "table", str(out), str(manifest)]) == 1  # changed: refused
    assert "--overwrite" in capsys.readouterr().out
    assert main(["ingest", "table", str(out), str(manifest), "--overwrite"]) == 0
    summary = capsys.readouterr().out.splitlines()[0]
    assert "1 replaced" in summary or "1 written" in summary, summary
    assert "1 skipped" in summary  # sub-01 untouched
    assert open_dataset(out).read_run(ds.runs()[1]).volume_times[0] == pytest.approx(6.0)


def test_ingest_table_names_the_row_whose_channels_differ(tmp_path, make, capsys):
    """The manifest is refused (as the README says), and the message names the rows."""
    data = tmp_path / "data"
    names = list(make.CHANNELS)
    for sub, chans in (("01", names), ("02", names[:-1])):
        eeg = make.eeg(chans, seconds=70, seed=int(sub))
        make.brainvision(data / f"sub-{sub}", "rec", eeg, names=chans)
        _table(make, data / f"sub-{sub}" / "rois.tsv")
    manifest = data / "runs.tsv"
    manifest.write_text(
        "subject\trun\teeg\tbold\ttr\tstart\n"
        + "".join(
            f"sub-{s}\trest\tsub-{s}/rec.vhdr\tsub-{s}/rois.tsv\t2\t4\n" for s in ("01", "02")
        )
    )
    assert main(["ingest", "table", str(tmp_path / "x.zarr"), str(manifest)]) == 1
    err = capsys.readouterr().err
    assert "channel sets differ between runs (compared with sub-01/rest (row 2))" in err, err
    assert f"sub-02/rest (row 3) lacks ['{names[-1]}']" in err, err


def test_ingest_files_into_a_store_made_by_ingest_table(tmp_path, make, capsys):
    """A manifest's per-row TR and start are a run's own values, not the store's options:
    `ingest files` with its own --tr and --start adds a run to the table's store (issue
    26.3: refused as `bold.tr: None -> 2`); other processing options still refuse."""
    data = tmp_path / "data"
    for sub in ("01", "02"):
        make.brainvision(data / f"sub-{sub}", "rec", make.eeg(seconds=70, seed=int(sub)))
        _table(make, data / f"sub-{sub}" / "rois.tsv")
    manifest = data / "runs.tsv"
    manifest.write_text(
        "subject\trun\teeg\tbold\ttr\tstart\nsub-01\trest\tsub-01/rec.vhdr\tsub-01/rois.tsv\t2\t4\n"
    )
    out = tmp_path / "mixed.zarr"
    assert main(["ingest", "table", str(out), str(manifest)]) == 0
    files = ["ingest", "files", str(out), "--eeg", str(data / "sub-02" / "rec.vhdr")]
    files += ["--bold", str(data / "sub-02" / "rois.tsv"), "--subject", "sub-02"]
    files += ["--run", "rest", "--tr", "2", "--start", "5", "-q"]
    assert main(files) == 0, capsys.readouterr()
    ds = open_dataset(out)
    assert [str(k) for k in ds.runs()] == ["sub-01/rest", "sub-02/rest"]
    assert ds.read_run(ds.runs()[1]).volume_times[0] == pytest.approx(5.0)
    capsys.readouterr()
    other = [*files[:-1], "--low-pass", "30", "-q"]
    other[other.index("sub-02")] = "sub-03"
    assert main(other) == 1
    assert "ingested with other options" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("subject\teeg\tbold\nsub-01\ta.vhdr\tb.tsv\n", "lacks column(s) run"),
        ("subject\trun\teeg\tbold\tcolour\n", "unknown manifest column(s) colour"),
        ("subject\trun\teeg\tbold\nsub-01\t\ta.vhdr\tb.tsv\n", "row 2: no value for run"),
        (
            "subject\trun\teeg\tbold\nsub-01\tr\ta.vhdr\tb.tsv\nsub-01\tr\tc.vhdr\td.tsv\n",
            "run(s) listed twice: sub-01/r (rows 2, 3)",  # the rows named (issue 26, 8)
        ),
    ],
)
def test_ingest_table_manifest_errors_name_the_file(tmp_path, capsys, text, message):
    manifest = tmp_path / "runs.tsv"
    manifest.write_text(text)
    assert main(["ingest", "table", str(tmp_path / "x.zarr"), str(manifest), "-q"]) == 1
    (line,) = _one_line_errors(capsys.readouterr().err)
    assert line.startswith(f"eeg2bold: error: {manifest}") and message in line
    assert not (tmp_path / "x.zarr").exists()


def test_every_registered_layout_has_its_subcommand_and_contract():
    """Read from the registry: each layout is an ``eeg2bold ingest`` subcommand, builds
    itself from options and says how its volumes are timed; no subcommand lacks a layout."""
    import argparse

    from eeg2bold.cli import build_parser
    from eeg2bold.ingest.layouts import LAYOUTS

    (ingest,) = [
        a.choices["ingest"]
        for a in build_parser()._actions
        if isinstance(a, argparse._SubParsersAction)
    ]
    (subcommands,) = [
        a.choices for a in ingest._actions if isinstance(a, argparse._SubParsersAction)
    ]
    assert set(subcommands) == set(LAYOUTS)
    for name, cls in LAYOUTS.items():
        assert cls.name == name
        assert callable(cls.from_options) and callable(cls.timing_defaults), name

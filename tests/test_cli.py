"""The ``eeg2bold`` command: simulate, inspect, and one-line errors without tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from eeg2bold.cli import main
from eeg2bold.storage import RunKey, open_dataset

SIM_OPTIONS = ("--rois", "3", "--channels", "8", "--sfreq", "128", "--minutes", "1.5")


def _simulate(out, *extra: str) -> int:
    return main(["simulate", str(out), *SIM_OPTIONS, *extra])


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eeg2bold.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "sim.zarr"
    code = _simulate(out, "--subjects", "2", "--seed", "3", "-q")
    assert code == 0
    return out


def test_simulate_writes_the_requested_dataset(simulated):
    ds = open_dataset(simulated)
    assert ds.subjects() == ["sub-01", "sub-02"]
    assert len(ds.info.eeg.channels) == 8
    assert ds.info.eeg.sfreq == 128.0
    assert len(ds.info.bold.rois) == 3
    run = ds.read_run(RunKey("sub-01", "run-1"), truth=True)
    assert run.eeg.shape == (8, 11520)
    assert run.truth is not None
    assert len(run.truth.attrs["oracle_r"]) == 3


def test_simulate_again_is_idempotent(simulated, capsys):
    eeg_meta = simulated / "sub-01" / "run-1" / "eeg" / "zarr.json"
    before = eeg_meta.stat().st_mtime_ns
    code = _simulate(simulated, "--subjects", "2", "--seed", "3")
    assert code == 0
    assert eeg_meta.stat().st_mtime_ns == before
    out = capsys.readouterr().out
    assert "subjects  2" in out  # the summary follows the simulation


def test_simulate_with_another_seed_refuses_to_overwrite(simulated, capsys):
    code = _simulate(simulated, "--subjects", "1", "--seed", "4", "-q")
    assert code == 1
    err = capsys.readouterr().err
    assert "already exists with different content" in err
    assert open_dataset(simulated).verify(RunKey("sub-01", "run-1")) == []


def test_inspect_text_and_json(simulated, capsys):
    assert main(["inspect", str(simulated)]) == 0
    text = capsys.readouterr().out
    fragments = ("subjects  2", "8 channels @ 128 Hz", "3 ROIs, TR 2 s", "sub-02", "oracle r 0.")
    for fragment in fragments:
        assert fragment in text
    assert main(["inspect", "--json", "--verify", str(simulated)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["n_subjects"] == 2
    assert data["n_runs"] == 2
    assert data["eeg"]["sfreq"] == 128.0
    assert data["runs"][0]["duration_s"] == pytest.approx(90.0)
    assert data["runs"][0]["problems"] == []
    assert data["runs"][0]["n_volumes"] > 40


def test_inspect_verify_reports_corruption_and_fails(tmp_path, simulated, capsys):
    import shutil

    copy = tmp_path / "copy.zarr"
    shutil.copytree(simulated, copy)
    chunks = copy / "sub-02" / "run-1" / "eeg" / "c" / "0"
    os.remove(sorted(chunks.iterdir())[0])
    assert main(["inspect", "--verify", str(copy)]) == 1
    out = capsys.readouterr().out
    assert "PROBLEM" in out
    assert "sub-02/run-1" in out


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "no such file or folder"),
        (lambda p: p.mkdir(), "is not an eeg2bold dataset (no zarr.json)"),
        (lambda p: (p.mkdir(), (p / "zarr.json").write_text("][")), "corrupt store"),
    ],
    ids=["missing", "not-a-dataset", "corrupt"],
)
def test_bad_input_is_one_line_without_traceback(tmp_path, setup, message):
    path = tmp_path / "thing.zarr"
    setup(path)
    proc = _run_cli("inspect", str(path))
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.startswith("eeg2bold: error: ")
    assert proc.stderr.count("\n") == 1
    assert str(path) in proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_debug_shows_the_traceback(tmp_path):
    proc = _run_cli("--debug", "inspect", str(tmp_path / "missing.zarr"))
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr
    assert "DatasetError" in proc.stderr


def test_invalid_options_are_one_line(tmp_path, capsys):
    code = main(["simulate", str(tmp_path / "x.zarr"), "--subjects", "0", "--minutes", "-1"])
    assert code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "subjects" in err
    assert "minutes" in err
    assert not (tmp_path / "x.zarr").exists()


def test_version_and_help():
    proc = _run_cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.startswith("eeg2bold ")
    proc = _run_cli("--help")
    assert "simulate" in proc.stdout
    assert "inspect" in proc.stdout


def test_ingest_and_simulate_options_come_from_the_configs(capsys, monkeypatch):
    """Each generated option names its field's default and help; unset options stay unset,
    so the config's own default applies (one place for each default)."""
    from eeg2bold.cli import INGEST_FLAGS, SIMULATE_FLAGS, build_parser
    from eeg2bold.cli.options import OFF, field_at, given
    from eeg2bold.ingest.config import IngestConfig
    from eeg2bold.simulate.config import SimulationConfig

    monkeypatch.setenv("COLUMNS", "2000")  # help lines unwrapped
    parser = build_parser()
    args = parser.parse_args(["ingest", "files", "o.zarr", "--eeg", "e.vhdr", "--bold", "b.tsv"])
    assert given(args) == {}
    args = parser.parse_args(
        ["ingest", "cwl", "o.zarr", "root", "--sfreq", "100", "--l-freq", "none", "--no-motion"]
        + ["--keep", "eog,ecg", "--bads", "drop"]
    )
    assert given(args) == {
        "eeg.sfreq": 100.0,
        "eeg.l_freq": OFF,
        "bold.motion": False,
        "channels.keep_types": ("eog", "ecg"),
        "channels.bads": "drop",
    }
    with pytest.raises(SystemExit):
        parser.parse_args(["ingest", "files", "--help"])
    text = " ".join(capsys.readouterr().out.split()).lower()
    for flags in INGEST_FLAGS.values():
        for flag, path in flags.items():
            info = field_at(IngestConfig, path)
            assert flag in text
            assert " ".join(info.description.rstrip(".").split()).lower() in text, flag
    assert "(default 250)" in text and "(default interpolate)" in text
    with pytest.raises(SystemExit):
        parser.parse_args(["simulate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag, name in SIMULATE_FLAGS.items():
        info = SimulationConfig.model_fields[name]
        assert f"{flag} " in text and info.description.rstrip(".") in text
        if name not in ("subjects", "minutes", "name"):
            assert f"{info.description.rstrip('.')} (default {info.default:g})" in text
    args = parser.parse_args(["simulate", "x.zarr", "--subjects", "2", "--minutes", "1"])
    assert given(args) == {"subjects": 2, "minutes": 1.0}


def test_launch_options_come_from_the_renderers_option_models(capsys, monkeypatch):
    from eeg2bold.cli import K8S_FLAGS, SLURM_FLAGS, build_parser
    from eeg2bold.cli.options import given
    from eeg2bold.launch.cluster import K8sOptions, SlurmOptions

    monkeypatch.setenv("COLUMNS", "2000")
    parser = build_parser()
    for target, flags, model in (
        ("slurm", SLURM_FLAGS, SlurmOptions),
        ("k8s", K8S_FLAGS, K8sOptions),
    ):
        with pytest.raises(SystemExit):
            parser.parse_args(["launch", target, "--help"])
        text = " ".join(capsys.readouterr().out.split()).lower()
        for flag, name in flags.items():
            description = model.model_fields[name].description.rstrip(".")
            assert f"{flag} " in text and description[1:].lower() in text, flag
    args = parser.parse_args(
        ["launch", "slurm", "s.yaml", "--nodes", "2", "--cpus-per-node", "8", "--setup", "a"]
        + ["--setup", "b", "--shared-nodes", "--resume"]
    )
    assert given(args) == {
        "nodes": 2,
        "cpus_per_node": 8,
        "setup": ["a", "b"],
        "exclusive": False,
        "resume": True,
    }
    assert SlurmOptions(**{**given(args), "setup": ("a", "b")}).time == "24:00:00"


# Defaults the command line owns itself: each is a fact of the CLI, held nowhere else.
CLI_OWNED_DEFAULTS = {
    ("report", "out"): "report.html",  # the HTML file a bare `eeg2bold report` writes
}


def _every_action(parser, path=()):
    """(command path, action) for every option of every (sub)command."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _every_action(sub, (*path, name))
        else:
            yield path, action


def test_no_option_redeclares_a_default_that_another_module_owns(capsys, monkeypatch):
    """An option either has no default (None, or a switch's False: the owner's default
    applies), is generated from a config field (``cfg:``), or its default is the CLI's own
    (listed above). Each owned option's help shows its owner's current default, read at
    help time, so the help and the behaviour cannot drift apart."""
    from eeg2bold.cli import build_parser
    from eeg2bold.cli.options import PREFIX, owned_default

    monkeypatch.setenv("COLUMNS", "2000")
    owned = []
    for path, action in _every_action(build_parser()):
        if action.dest in ("help", "version") or action.dest.startswith(PREFIX):
            continue
        if action.default in (None, False):
            if hasattr(action, "owned"):
                owned.append((path, action))
            continue
        command = path[-1] if path else ""
        assert CLI_OWNED_DEFAULTS.get((command, action.dest)) == action.default, (
            f"eeg2bold {' '.join(path)} {action.option_strings}: default {action.default!r} "
            "declared here; take it from its owner (cli.options.owned_option)"
        )
    assert len(owned) >= 10
    for path, action in owned:
        value = owned_default(action.owned.owner, action.owned.name)
        assert value is not inspect_empty(), (path, action.option_strings)
        if action.choices:
            assert value in action.choices, (path, action.option_strings, value)
    cases = {
        ("predict",): "cpu, cuda or auto (default auto)",
        ("report",): "bootstrap resamples and sign flips (default 10000)",
        ("best",): "trials per protocol and model (default 1)",
        ("ingest", "files"): "subject name (default sub-01)",
    }
    for command, expected in cases.items():
        with pytest.raises(SystemExit):
            build_parser().parse_args([*command, "--help"])
        assert expected in " ".join(capsys.readouterr().out.split())


def inspect_empty():
    import inspect

    return inspect.Parameter.empty


def test_an_option_not_given_leaves_the_owners_default(monkeypatch):
    """Unset owned options are not passed on: the owner's default is what runs."""
    from eeg2bold.cli import build_parser
    from eeg2bold.cli.options import passed

    parser = build_parser()
    args = parser.parse_args(["report", "sweep"])
    assert passed(args, "n_boot", "n_surrogates", "seed") == {}
    args = parser.parse_args(["report", "sweep", "--n-boot", "200"])
    assert passed(args, "n_boot", "n_surrogates", "seed") == {"n_boot": 200}
    args = parser.parse_args(["predict", "m.pt", "r.vhdr", "-o", "x.tsv"])
    assert passed(args, "device") == {} and args.mat_units is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["report", "sweep", "--n-boot", "0"], "n_boot: Input should be greater than or equal"),
        (["predict", "m.pt", "r.vhdr", "-o", "x.tsv", "--device", "tpu"], "device 'tpu'"),
    ],
    ids=["report-n-boot", "predict-device"],
)
def test_bad_owned_option_values_are_one_line(argv, message, capsys):
    from eeg2bold.cli import main

    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("eeg2bold: error: ") and err.count("\n") == 1 and message in err

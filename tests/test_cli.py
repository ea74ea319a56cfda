"""The ``eeg2bold`` command: simulate, inspect, and one-line errors without tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from fresh_process import last_line

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
    from eeg2bold.launch.k8s import K8sOptions
    from eeg2bold.launch.slurm import SlurmOptions

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
    assert len(owned) >= 8
    for path, action in owned:
        value = owned_default(action.owned.owner, action.owned.name)
        assert value is not inspect_empty(), (path, action.option_strings)
        if action.choices:
            assert value in action.choices, (path, action.option_strings, value)
    cases = {
        ("predict",): "cpu, cuda or auto (default auto)",
        ("report",): "bootstrap resamples and sign flips (default 10000)",
        ("best",): "Trials per protocol and model (default 1)",
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
    from eeg2bold.cli.flags import PREDICT_FLAGS
    from eeg2bold.cli.options import options_of, passed
    from eeg2bold.predict.options import PredictOptions

    parser = build_parser()
    args = parser.parse_args(["report", "sweep"])
    assert passed(args, "n_boot", "n_surrogates", "seed") == {}
    args = parser.parse_args(["report", "sweep", "--n-boot", "200"])
    assert passed(args, "n_boot", "n_surrogates", "seed") == {"n_boot": 200}
    args = parser.parse_args(["predict", "m.pt", "r.vhdr", "-o", "x.tsv"])
    assert options_of(args, PredictOptions, PREDICT_FLAGS) == PredictOptions()
    assert args.mat_units is None


# The commands whose options are typed models: command -> ((model, its flags), ...).
MODEL_COMMANDS = {
    "train": (("eeg2bold.training.options:TrainRunOptions", "TRAIN_FLAGS"),),
    "sweep": (("eeg2bold.launch.config:SweepOptions", "SWEEP_FLAGS"),),
    "best": (("eeg2bold.study.options:BestOptions", "BEST_FLAGS"),),
    "predict": (("eeg2bold.predict.options:PredictOptions", "PREDICT_FLAGS"),),
    "stream": (
        ("eeg2bold.predict.options:ModelChoice", "MODEL_CHOICE_FLAGS"),
        ("eeg2bold.live.options:StreamOptions", "STREAM_FLAGS"),
    ),
}
# options of those commands that are the command's own: where the output goes, how it prints
COMMAND_OWN = {
    "train": {"dataset", "--model", "--set", "--json", "-q"},
    "sweep": {"config"},
    "best": {"study", "--json"},
    "predict": {"model", "recording", "-o", "--no-plot", "-q"}
    | {"--mat-variable", "--mat-sfreq", "--mat-units", "--mat-channels"},
    "stream": {"model", "-o", "-q"},
}


def _model(reference):
    import importlib

    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("command", sorted(MODEL_COMMANDS))
def test_the_commands_options_are_generated_from_their_models(command, capsys, monkeypatch):
    """Every option of train, sweep, best, predict and stream is either generated from a field
    of the command's options model (its help the field's description, its default the
    field's) or one of the command's own few (where the output goes, how it prints); every
    field a flag names exists."""
    from eeg2bold.cli import build_parser, flags
    from eeg2bold.cli.options import PREFIX

    monkeypatch.setenv("COLUMNS", "2000")
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    actions = sub.choices[command]._actions
    generated = {}
    for reference, table in MODEL_COMMANDS[command]:
        model = _model(reference)
        for flag, field in getattr(flags, table).items():
            assert field in model.model_fields, (command, flag, field)
            generated[flag] = (model, field)
    for action in actions:
        if action.dest == "help":
            continue
        name = action.option_strings[0] if action.option_strings else action.dest
        flag = next((f for f in action.option_strings if f in generated), None)
        if flag is None:
            assert name in COMMAND_OWN[command], f"eeg2bold {command} {name}: not from a model"
            continue
        model, field = generated.pop(flag)
        assert action.dest == PREFIX + field and action.default is None, (command, flag)
    assert not generated, f"eeg2bold {command}: flags not in the parser: {sorted(generated)}"
    with pytest.raises(SystemExit):
        parser.parse_args([command, "--help"])
    text = " ".join(capsys.readouterr().out.split()).lower()
    for reference, table in MODEL_COMMANDS[command]:
        model = _model(reference)
        for flag, field in getattr(flags, table).items():
            description = model.model_fields[field].description.rstrip(".")
            assert description[1:].lower() in text, (command, flag)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["best", "s", "--top", "0"], "--top: Input should be greater than or equal to 1"),
        (["sweep", "s.yaml", "--num-cpus", "0"], "--num-cpus: Input should be greater than 0"),
        (["sweep", "s.yaml", "--warm-start-k", "0"], "--warm-start-k: Input should be greater"),
        (["predict", "m.pt", "r.vhdr", "-o", "x.tsv", "--step", "-1"], "--step: Input should"),
        (["stream", "m.pt", "--every", "0"], "--every: Input should be greater than 0"),
        (
            ["train", "d.zarr", "--model", "ridge", "--calibration-minutes", "0,x"],
            "--calibration-minutes.1: Input should be a valid number",
        ),
        (
            ["train", "d.zarr", "--model", "ridge", "--calibration-minutes", "1,-2"],
            "--calibration-minutes.1: Input should be greater than or equal to 0",
        ),
    ],
)
def test_a_bad_option_value_is_one_line_naming_its_flag(argv, message, capsys):
    """The options model validates what was typed before anything is opened; the error names
    the flag, not the field."""
    from eeg2bold.cli import main

    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_options_given_reach_the_model_and_switches_flip_its_defaults():
    from eeg2bold.cli import build_parser
    from eeg2bold.cli.flags import MODEL_CHOICE_FLAGS, STREAM_FLAGS, TRAIN_FLAGS
    from eeg2bold.cli.options import options_of
    from eeg2bold.live.options import StreamOptions
    from eeg2bold.predict.options import ModelChoice
    from eeg2bold.training.options import TrainRunOptions

    parser = build_parser()
    args = parser.parse_args(
        ["stream", "m.pt", "--no-lsl-out", "--every", "0.5", "--no-preprocess"]
        + ["--protocol", "loso", "--model-name", "twin"]
    )
    options = options_of(args, StreamOptions, STREAM_FLAGS)
    assert options == StreamOptions(send_lsl=False, every_s=0.5, preprocess=False)
    choice = options_of(args, ModelChoice, MODEL_CHOICE_FLAGS)
    assert choice == ModelChoice(protocol="loso", model="twin")
    args = parser.parse_args(
        ["train", "d.zarr", "--model", "ridge", "--calibration-minutes", "0,1,2"]
        + ["--subjects", "sub-01", "sub-02"]
    )
    options = options_of(args, TrainRunOptions, TRAIN_FLAGS)
    assert options.calibration_minutes == (0.0, 1.0, 2.0)
    assert options.subjects == ("sub-01", "sub-02") and options.resume is False


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["report", "sweep", "--n-boot", "0"], "--n-boot: Input should be greater than or equal"),
        (["report", "sweep", "--smooth-epochs", "0"], "--smooth-epochs: Input should be greater"),
        (["predict", "m.pt", "r.vhdr", "-o", "x.tsv", "--device", "tpu"], "device 'tpu'"),
    ],
    ids=["report-n-boot", "report-smooth-epochs", "predict-device"],
)
def test_bad_owned_option_values_are_one_line(argv, message, capsys):
    from eeg2bold.cli import main

    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("eeg2bold: error: ") and err.count("\n") == 1 and message in err


def test_building_the_parser_loads_neither_the_simulator_nor_the_ingest_readers():
    """Every command (``--help`` too) builds the whole parser first; its options come from
    light config modules, and the packages around them load their heavy parts on first use."""
    code = (
        "import sys\n"
        "from eeg2bold.cli.parser import build_parser\n"
        "build_parser()\n"
        "heavy = ('eeg2bold.simulate.simulator', 'eeg2bold.simulate.physics', "
        "'eeg2bold.ingest.engine', 'eeg2bold.ingest.readers', 'scipy.signal', 'torch')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    assert last_line(code) == "[]"
    # and the packages still give every name they list
    import eeg2bold.ingest as ingest
    import eeg2bold.simulate as simulate

    for package in (ingest, simulate):
        assert all(getattr(package, name) is not None for name in package.__all__)

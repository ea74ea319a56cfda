"""`eeg2bold train` and `eeg2bold models` from the command line, and what a train run leaves
in its run folder."""

from __future__ import annotations

import json

import pytest

from eeg2bold.cli import main
from eeg2bold.run_folder import ROW_KEY, RunFolder, read_card
from eeg2bold.storage import open_dataset
from eeg2bold.training.config import build_config
from eeg2bold.training.engine import METRIC, LocalPool, ProtocolRun
from eeg2bold.training.run import train_protocol


@pytest.fixture(scope="module")
def trained(sim_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "run"
    summary = out.parent / "scores.json"
    code = main(
        ["train", str(sim_store), "--model", "ridge", "--protocol", "loso", "-q"]
        + ["--set", "window_s=12", "--set", "delay_s=2", "--out", str(out), "--json", str(summary)]
    )
    assert code == 0
    return out, json.loads(summary.read_text())


def test_train_writes_scores_results_and_model_files(trained, sim_store):
    out, summary = trained
    folder = RunFolder(out)
    assert len(summary["folds"]) == 3
    assert set(summary["test_r_per_output"]) == set(summary["outputs"])
    df = folder.results()
    final = df[df["final"]]
    assert set(final["split"]) == {"val", "test"}
    assert len(final) == 3 * 2 * len(summary["outputs"])  # folds × splits × outputs
    assert set(df["subject"]) == {"sub-01", "sub-02", "sub-03"}
    assert set(df["window_s"]) == {12.0} and set(df["delay_s"]) == {2.0}
    assert set(df["trial"]) == {summary["trial"]}
    # a finished fold's parts (one per epoch) are replaced by one part holding all its rows
    parts = sorted(p.name for p in (out / "table").iterdir())
    assert parts == [f"{summary['trial']}-fold{k}.parquet" for k in range(3)]
    # every row's config hash resolves to the saved, resolved config
    (config_hash,) = set(df["config_hash"])
    assert folder.read_config(config_hash)["data"]["window_s"] == 12.0
    manifest = folder.read_manifest()
    assert manifest["kind"] == "train" and manifest["trial"] == summary["trial"]
    assert manifest["dataset"] == str(sim_store.resolve())  # absolute: same from any folder
    card = read_card(summary["folds"][0]["model_file"])
    assert card["model"] == "ridge"
    assert card["channels"] and card["outputs"] == summary["outputs"]
    assert summary["folds"][0]["model_file"] == folder.model_path(summary["trial"], 0)


def test_resume_skips_finished_folds_without_duplicating_rows(trained, sim_store, capsys):
    out, summary = trained
    before = RunFolder(out).results()
    code = main(
        ["train", str(sim_store), "--model", "ridge", "--protocol", "loso", "--resume", "-q"]
        + ["--set", "window_s=12", "--set", "delay_s=2", "--out", str(out)]
    )
    assert code == 0
    after = RunFolder(out).results()
    assert len(after) == len(before)
    text = capsys.readouterr().out
    assert f"{summary['test_r_mean']:.3f}" in text


def test_train_again_without_resume_is_refused(trained, sim_store, capsys):
    out, _ = trained
    code = main(
        ["train", str(sim_store), "--model", "ridge", "--protocol", "loso", "-q"]
        + ["--set", "window_s=12", "--set", "delay_s=2", "--out", str(out)]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "--resume" in err and err.count("\n") == 1


class _Interrupt(Exception):
    pass


@pytest.mark.parametrize(
    ("stop_at", "resumed_at"),
    [
        ((1, 2), [(1, 3), (2, 1), (2, 2), (2, 3)]),  # mid-fold
        # after the fold's last epoch, before its final scoring (a kill found by the live
        # Slurm test): nothing left to step, only finish()
        ((1, 3), [(2, 1), (2, 2), (2, 3)]),
    ],
)
def test_interrupted_train_resumes_to_the_same_numbers(
    sim_store, tiny_model, tmp_path, stop_at, resumed_at
):
    """Killed in fold 1, then resumed: the same per-fold, per-ROI scores as one
    uninterrupted run, and every row once."""
    dataset = open_dataset(sim_store)
    sets = {"window_s": "8", "epochs": "3", "steps_per_epoch": "4", "patience": "0"}
    config = build_config(model=tiny_model, protocol="loso", sets=sets)
    straight = train_protocol(dataset, config, out_dir=tmp_path / "straight")

    seen = []

    def stop_in_fold_1(epoch):
        seen.append((epoch.fold, epoch.epoch))
        if (epoch.fold, epoch.epoch) == stop_at:
            raise _Interrupt

    out = tmp_path / "interrupted"
    with pytest.raises(_Interrupt):
        train_protocol(dataset, config, out_dir=out, on_epoch=stop_in_fold_1)
    folder = RunFolder(out)
    trial = straight.trial
    assert folder.done(trial, 0) is not None and folder.done(trial, 1) is None
    assert folder.load_state(trial, 1) is not None  # fold 1 saved its state, then stopped

    resumed_epochs = []
    resumed = train_protocol(
        dataset, config, out_dir=out, resume=True, on_epoch=resumed_epochs.append
    )
    assert [(e.fold, e.epoch) for e in resumed_epochs] == resumed_at
    for a, b in zip(straight.folds, resumed.folds, strict=True):
        assert a.val_r == b.val_r and a.test_r == b.test_r and a.best_epoch == b.best_epoch
    rows = folder.results()
    assert not rows.duplicated(ROW_KEY).any()
    expected = RunFolder(tmp_path / "straight").results()
    assert len(rows) == len(expected)
    merged = rows.merge(expected, on=ROW_KEY, suffixes=("", "_straight"))
    assert len(merged) == len(rows)
    assert (merged["r"] == merged["r_straight"]).all()


def test_lockstep_resume_with_one_fold_left_to_finish_reports_its_best(
    sim_store, tiny_model, tmp_path
):
    """The sweep driver (folds in lockstep), killed mid-round: fold 0 has trained its last
    epoch (only its final scoring is left), fold 1 has one epoch to go. On resume the metric
    the scheduler sees after fold 1's epoch averages fold 0's real best val r (it was -inf,
    i.e. r = -1), and every report names the epoch the attempt resumed from."""
    dataset = open_dataset(sim_store)
    sets = {"window_s": "8", "epochs": "2", "steps_per_epoch": "4", "patience": "0"}
    config = build_config(model=tiny_model, protocol="loso", sets=sets)

    class KillMidRound(LocalPool):
        """The second round stops after fold 0's epoch, before fold 1's."""

        rounds = 0

        def call(self, method, calls):
            if method == "step":
                self.rounds += 1
                if self.rounds == 2:
                    super().call(method, calls[:1])
                    raise _Interrupt
            return super().call(method, calls)

    def run(pool):
        reports: list[dict] = []
        protocol_run = ProtocolRun(
            dataset=dataset, config=config, folder=RunFolder(tmp_path / "lock")
        )
        protocol_run.run_lockstep(pool=pool, dataset=str(sim_store), report=reports.append)
        return reports

    with pytest.raises(_Interrupt):
        run(KillMidRound())
    straight = ProtocolRun(dataset=dataset, config=config, folder=RunFolder(tmp_path / "straight"))
    expected: list[dict] = []
    straight.run_lockstep(pool=LocalPool(), dataset=str(sim_store), report=expected.append)
    resumed = run(LocalPool())
    assert [m["epoch"] for m in resumed] == [2, 2]  # fold 1's last epoch, then the end
    assert [m["resumed_from"] for m in resumed] == [1, 1]
    assert {m["resumed_from"] for m in expected} == {0}
    assert resumed[0][METRIC] > -0.99
    assert resumed[0][METRIC] == pytest.approx(expected[1][METRIC], abs=1e-9)
    assert resumed[-1][METRIC] == pytest.approx(expected[-1][METRIC], abs=1e-9)


def test_train_errors_are_one_line(sim_store, tmp_path, capsys):
    assert main(["train", str(sim_store), "--model", "biera", "--out", str(tmp_path)]) == 1
    assert "unknown model 'biera' (did you mean 'beira'?)" in capsys.readouterr().err
    assert main(["train", str(sim_store), "--model", "ridge", "--set", "lr=fast"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lr" in err
    assert main(["train", str(sim_store), "--model", "ridge", "--set", "windw_s=3"]) == 1
    assert "did you mean 'window_s'" in capsys.readouterr().err


def test_models_lists_every_model_with_hyperparameters(capsys):
    assert main(["models"]) == 0
    text = capsys.readouterr().out
    for name in ("ridge", "beira", "twin", "linker", "neurobolt"):
        assert f"\n{name}" in "\n" + text
    assert main(["models", "--json"]) == 0
    models = json.loads(capsys.readouterr().out)
    ridge = next(m for m in models if m["name"] == "ridge")
    assert ridge["closed_form"] is True
    assert ridge["hyperparameters"]


def test_train_a_calibration_curve_into_one_run_folder(sim_store, tmp_path, capsys):
    out = tmp_path / "curve"
    code = main(
        ["train", str(sim_store), "--model", "ridge", "--calibration-minutes", "0,1,3", "-q"]
        + ["--set", "window_s=12", "--out", str(out), "--json", str(tmp_path / "c.json")]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "0 min" in text and "3 min" in text
    folder = RunFolder(out)
    rows = folder.results()
    final = rows[rows["final"] & (rows["split"] == "test")]
    labels = sorted(set(final["protocol"]))
    assert labels == ["loso_calibrated@0min", "loso_calibrated@1min", "loso_calibrated@3min"]
    # one fixed test block per subject: the same sample count at every amount
    counts = final.groupby(["subject", "protocol"])["n"].first().unstack()
    assert (counts.nunique(axis=1) == 1).all()
    manifest = folder.read_manifest()
    assert [t["protocol"] for t in manifest["trials"]] == labels
    assert len(json.loads((tmp_path / "c.json").read_text())) == 3


@pytest.mark.parametrize(("path", "said"), [("memory", "in memory"), ("stream", "streamed")])
def test_train_says_whether_each_fold_ran_in_memory_or_streamed(
    sim_store, tmp_path, capsys, monkeypatch, path, said
):
    """The path changes the batch order (issue 26, item 10): the fold line and the run's
    manifest say which one each fold took."""
    monkeypatch.setenv("EEG2BOLD_DATA_PATH", path)
    out = tmp_path / "run"
    code = main(
        ["train", str(sim_store), "--model", "ridge", "--subjects", "sub-01"]
        + ["--set", "window_s=12", "--out", str(out)]
    )
    assert code == 0
    err = capsys.readouterr().err
    (line,) = [x for x in err.splitlines() if "best epoch" in x]
    assert f"{said}" in line
    (trial,) = RunFolder(out).read_manifest()["trials"]
    assert trial["data_path"] == {"sub-01": path}


_UNPICKLED: list[str] = []


def _record_unpickling() -> str:
    _UNPICKLED.append("unpickled")
    return "unpickled"


class _Unpickled:
    """Pickled into a tampered resume state: loading it would call ``_record_unpickling``."""

    def __reduce__(self):
        return (_record_unpickling, ())


def test_a_tampered_resume_state_is_refused_in_one_line_without_unsafe_advice(
    sim_store, tiny_model, tmp_path, capsys
):
    """`train --resume` over a checkpoint that holds a pickled object: one line naming the
    file, nothing unpickled, and never PyTorch's advice to load with weights_only=False."""
    import torch

    sets = {"window_s": "8", "epochs": "3", "steps_per_epoch": "4", "patience": "0"}
    config = build_config(model=tiny_model, protocol="loso", sets=sets)
    out = tmp_path / "run"

    def stop_in_fold_1(epoch):
        if (epoch.fold, epoch.epoch) == (1, 1):
            raise _Interrupt

    with pytest.raises(_Interrupt):
        train_protocol(open_dataset(sim_store), config, out_dir=out, on_epoch=stop_in_fold_1)
    folder = RunFolder(out)
    (trial,) = {path.name.split("-fold")[0] for path in (out / "checkpoints").iterdir()}
    state = folder.state_path(trial, 1)
    torch.save({"state": _Unpickled()}, state)
    argv = ["train", str(sim_store), "--model", tiny_model, "--protocol", "loso", "--resume"]
    code = main([*argv, "--out", str(out), "-q", *(f"--set={k}={v}" for k, v in sets.items())])
    assert code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"eeg2bold: error: {state}: "), err
    assert "not a readable eeg2bold checkpoint" in err
    assert "eeg2bold never unpickles" in err  # why, instead of how to load it anyway
    assert "weights_only" not in err and "can still be loaded" not in err
    assert _UNPICKLED == []


def test_an_unknown_subject_names_the_store_and_the_nearest_subject(sim_store, tmp_path, capsys):
    argv = ["train", str(sim_store), "--model", "ridge", "--subjects", "sub-1", "sub-02"]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"eeg2bold: error: {sim_store}"), err
    assert "unknown subject(s) ['sub-1'] (did you mean 'sub-01'?)" in err
    assert not (tmp_path / "run").exists()  # refused before anything was written

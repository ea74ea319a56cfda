"""`sweep --resume` loads only Ray state signed with this user's key: a replaced pickle is
refused in one line and never unpickled."""

from __future__ import annotations

import json
import os
import pickle
import stat

import pytest

from eeg2bold.cli import main
from eeg2bold.errors import ConfigError
from eeg2bold.launch.resume_auth import SIGNED, StateSigner, key_path, load_key


class _Payload:
    """A pickle that runs code when loaded: it creates ``path``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _experiment(tmp_path):
    folder = tmp_path / "ray" / "arm"
    (folder / "trial_a").mkdir(parents=True)
    (folder / "tuner.pkl").write_bytes(pickle.dumps({"tuner": 1}))
    (folder / "experiment_state-1.json").write_text('{"trials": []}')
    (folder / "trial_a" / "params.pkl").write_bytes(pickle.dumps({"x": 1}))
    (folder / "trial_a" / "result.json").write_text("{}")  # not state: not signed
    return folder


def test_signed_state_restores_and_unsigned_state_is_dropped(tmp_path):
    folder = _experiment(tmp_path)
    signer = StateSigner(str(folder))
    assert signer.sign_if_changed() and not signer.sign_if_changed()  # only when changed
    assert sorted(json.loads((folder / SIGNED / "manifest.json").read_text())["files"]) == [
        "experiment_state-1.json",
        "trial_a/params.pkl",
        "tuner.pkl",
    ]
    (folder / "experiment_state-2.json").write_text('{"newer": "never signed"}')
    StateSigner(str(folder)).restore_verified()
    assert not (folder / "experiment_state-2.json").exists()
    assert pickle.loads((folder / "tuner.pkl").read_bytes()) == {"tuner": 1}
    assert load_key() not in pickle.dumps(signer)  # Tune pickles its callbacks


@pytest.mark.parametrize("where", ["copy", "manifest", "unsigned"])
def test_altered_state_is_refused(tmp_path, where):
    folder = _experiment(tmp_path)
    StateSigner(str(folder)).sign_if_changed()
    if where == "copy":  # the attacker replaces the signed copy too
        (folder / SIGNED / "tuner.pkl").write_bytes(pickle.dumps(_Payload(tmp_path / "owned")))
    elif where == "manifest":  # ... and re-computes digests without the key
        manifest = json.loads((folder / SIGNED / "manifest.json").read_text())
        manifest["files"]["tuner.pkl"] = "0" * 64
        (folder / SIGNED / "manifest.json").write_text(json.dumps(manifest))
    else:
        (folder / SIGNED / "manifest.json").unlink()
    with pytest.raises(ConfigError, match=r"--resume|signature"):
        StateSigner(str(folder)).restore_verified()
    assert not (tmp_path / "owned").exists()


def test_key_is_private_and_created_once(tmp_path, monkeypatch):
    monkeypatch.setenv("EEG2BOLD_RESUME_KEY", str(tmp_path / "k" / "resume.key"))
    key = load_key()
    assert len(key) == 32 and load_key() == key
    assert stat.S_IMODE(os.stat(key_path()).st_mode) == 0o600
    key_path().chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_key()


def _finished_sweep_marked_running(write_study, tmp_path, name):
    """A one-trial sweep run to the end, its state then as a killed driver leaves it."""
    path = write_study(name, budget={"num_samples": 1})
    assert main(["sweep", str(path)]) == 0
    sweep = tmp_path / f"sweep-{name}"
    state = json.loads((sweep / "sweep.json").read_text())
    state["plan"]["arms"][0]["status"] = "running"
    (sweep / "sweep.json").write_text(json.dumps(state))
    return path, sweep, state


def test_resume_with_a_replaced_tuner_pickle_is_refused(ray_cluster, write_study, tmp_path, capsys):
    path, sweep, state = _finished_sweep_marked_running(write_study, tmp_path, "auth")
    # untouched state resumes (nothing left to run)
    assert main(["sweep", str(path), "--resume"]) == 0
    (sweep / "sweep.json").write_text(json.dumps(state))
    (experiment,) = (sweep / "ray").iterdir()
    (experiment / "tuner.pkl").write_bytes(pickle.dumps(_Payload(tmp_path / "owned")))
    (experiment / SIGNED / "tuner.pkl").write_bytes(pickle.dumps(_Payload(tmp_path / "owned")))
    capsys.readouterr()
    assert main(["sweep", str(path), "--resume"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("eeg2bold: error: ") and "--resume refused" in lines[-1]
    assert not any("Traceback" in line for line in lines)
    assert not (tmp_path / "owned").exists()


def test_resume_without_tuner_state_unpickles_nothing_and_adds_no_trial(
    ray_cluster, write_study, tmp_path, capsys
):
    """With `tuner.pkl` gone (and its signed copy), `--resume` makes a new Tuner: a planted
    searcher-state pickle in the experiment folder is never loaded, and an arm whose study
    holds its trials already runs none again (issue 26.4)."""
    import optuna

    path, sweep, _ = _finished_sweep_marked_running(write_study, tmp_path, "door")
    (experiment,) = (sweep / "ray").iterdir()
    for old in [*experiment.glob("tuner.pkl"), *experiment.glob(f"{SIGNED}/tuner.pkl")]:
        old.unlink()
    for name in ("searcher-state-2026-01-01_00-00-00.pkl", "search_gen_state-x.json"):
        (experiment / name).write_bytes(pickle.dumps(_Payload(tmp_path / "owned")))
    capsys.readouterr()
    assert main(["sweep", str(path), "--resume"]) == 0
    assert "1 trial(s) already finished in its study; 0 to run" in capsys.readouterr().err
    assert not (tmp_path / "owned").exists()
    storage = f"sqlite:///{sweep / 'optuna.db'}"
    (summary,) = optuna.get_all_study_summaries(storage)
    assert summary.n_trials == 1

"""Trained models and recordings for the predict tests, built once per session.

A small simulated dataset (2 subjects x 6 min, 8 channels at 100 Hz, 3 ROIs) trained with
ridge under ``within`` (seq2one with a delay; seq2seq with the common mode), one run written
back to BrainVision and EDF files. The dataset ingested from BrainVision with preprocessing
(``ingested``) is shared with the live twin's tests: ``tests/conftest.py``.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from recording_files import synth_volts, write_brainvision, write_edf

from eeg2bold.simulate import SimulationConfig
from eeg2bold.simulate.write import simulate_to_store
from eeg2bold.storage import RunKey
from eeg2bold.training.config import build_config
from eeg2bold.training.run import train_protocol

# no subject-private sources: amplitudes match across subjects, so the units checks compare
# exact ratios (these tests are about the pipeline, not about generalisation)
SIM = SimulationConfig(
    subjects=2, minutes=6, channels=8, sfreq=100, rois=3, seed=5, private_sources=0
)


def _train(dataset, out: Path, **sets: str):
    config = build_config(model="ridge", protocol="within", sets=sets)
    return train_protocol(dataset, config, out_dir=out)


@pytest.fixture(scope="session")
def sim(tmp_path_factory):
    """The simulated dataset, two trained model folders and sub-01's run as files."""
    root = tmp_path_factory.mktemp("predict-sim")
    dataset = simulate_to_store(root / "sim.zarr", SIM, progress=False)
    s2o = _train(dataset, root / "s2o", window_s="12", delay_s="2")
    s2s = _train(
        dataset, root / "s2s", window_s="12", target="seq2seq", target_hz="0.5", common_mode="true"
    )
    run = dataset.read_run(RunKey("sub-01", "run-1"), truth=True)
    names = dataset.info.eeg.channels
    volts = run.eeg.astype(np.float64) * 1e-6
    recordings = root / "recordings"
    vhdr = write_brainvision(recordings, "sub01", volts, names=names, sfreq=SIM.sfreq)
    # extra channels in another order: reordered and dropped by name
    order = list(reversed(range(len(names))))
    extra = np.vstack([volts[order], 1e-5 * np.sin(np.arange(volts.shape[1]) / 7.0)])
    edf = write_edf(
        recordings / "sub01.edf",
        extra,
        names=[names[i] for i in order] + ["ECG"],
        sfreq=SIM.sfreq,
    )
    return SimpleNamespace(
        root=root,
        dataset=dataset,
        run=run,
        channels=names,
        volts=volts,
        vhdr=vhdr,
        edf=edf,
        s2o=s2o,
        s2s=s2s,
        model=Path(s2o.folds[0].model_file),
        s2s_model=Path(s2s.folds[0].model_file),
        recordings=recordings,
    )


@pytest.fixture
def write() -> SimpleNamespace:
    """The file writers above, for tests that make their own recordings."""
    return SimpleNamespace(brainvision=write_brainvision, edf=write_edf, synth=synth_volts)


@pytest.fixture(scope="session")
def sweep(sim, tmp_path_factory):
    """A finished sweep folder as the launcher leaves it, without running Ray: sweep.json, an
    Optuna SQLite storage and fold model files named ``models/<trial_id>-fold<k>.pt``.

    Arm within/ridge: trial 0 (val 0.2, seq2seq models), trial 1 (val 0.5, the seq2one
    models: the best finished one), trial 2 (val 0.9 but stopped early: no model files).
    Arm loso/ridge: only a failed and a stopped trial.
    """
    import json
    import shutil

    import optuna

    root = tmp_path_factory.mktemp("predict-sweep") / "sweep"
    (root / "models").mkdir(parents=True)
    arms = [
        {
            "protocol": p,
            "model": "ridge",
            "study_name": f"t.{p}.ridge.abc",
            "folds": ["sub-01", "sub-02"],
            "status": "done",
        }
        for p in ("within", "loso")
    ]
    (root / "sweep.json").write_text(
        json.dumps({"config": {"storage": {"optuna": None}}, "plan": {"name": "t", "arms": arms}})
    )
    storage = f"sqlite:///{root.resolve() / 'optuna.db'}"
    dist = {"lag_s": optuna.distributions.FloatDistribution(4.0, 20.0)}
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def add(study, value, state=optuna.trial.TrialState.COMPLETE, **attrs):
        study.add_trial(
            optuna.trial.create_trial(
                params={"lag_s": 10.0},
                distributions=dist,
                value=value if state == optuna.trial.TrialState.COMPLETE else None,
                state=state,
                user_attrs=attrs,
            )
        )

    within = optuna.create_study(
        study_name=arms[0]["study_name"], storage=storage, direction="maximize"
    )
    add(within, 0.2, trial_id="t0", finished=True, config_hash="h0")
    add(within, 0.5, trial_id="t1", finished=True, config_hash="h1")
    add(within, 0.9, trial_id="t2", finished=False, config_hash="h2")
    loso = optuna.create_study(
        study_name=arms[1]["study_name"], storage=storage, direction="maximize"
    )
    add(loso, None, state=optuna.trial.TrialState.FAIL, trial_id="t3")
    add(loso, 0.4, trial_id="t4", finished=False)
    for tid, result in (("t0", sim.s2s), ("t1", sim.s2o)):
        for fold in result.folds:
            shutil.copy(fold.model_file, root / "models" / f"{tid}-fold{fold.fold}.pt")
    return SimpleNamespace(root=root, best=[f.model_file for f in sim.s2o.folds])

"""One engine, two drivers: a one-trial sweep (folds as Ray actors, in lockstep) and
`eeg2bold train` (folds one after another in this process) give the same numbers, whether each
fold has its own actor or one actor runs several (``resources.folds_per_actor``)."""

from __future__ import annotations

import pytest

from eeg2bold.cli import main
from eeg2bold.run_folder import RunFolder
from eeg2bold.storage import open_dataset
from eeg2bold.training.config import ExperimentConfig
from eeg2bold.training.run import train_protocol


@pytest.mark.parametrize(("model", "folds_per_actor"), [("ridge", 1), ("linker", 1), ("linker", 2)])
def test_sweep_trial_and_train_agree_fold_by_fold(
    ray_cluster, write_study, tiny_store, model, folds_per_actor
):
    label = f"parity-{model}-{folds_per_actor}"
    path = write_study(
        label,
        models=[model],
        protocols=["loso"],
        budget={"num_samples": 1},
        scheduler={"type": "fifo", "max_epochs": 2},
        resources={"cpu": 0.45, "trial_cpu": 0.05, "folds_per_actor": folds_per_actor},
    )
    assert main(["sweep", str(path)]) == 0
    folder = RunFolder(path.parent / f"sweep-{label}")
    swept = folder.results()
    swept = swept[swept["final"]]
    (config_hash,) = set(swept["config_hash"])
    config = ExperimentConfig.model_validate(folder.read_config(config_hash))
    result = train_protocol(open_dataset(tiny_store), config)
    assert result.config_hash == config_hash  # the same configuration, seed included
    assert len(result.folds) == 2
    for fold in result.folds:
        for split, values in (("val", fold.val_r), ("test", fold.test_r)):
            rows = swept[(swept["fold"] == fold.fold) & (swept["split"] == split)]
            by_roi = dict(zip(rows["roi"], rows["r"], strict=True))
            assert set(by_roi) == set(fold.outputs)
            for roi, r in zip(fold.outputs, values, strict=True):
                assert by_roi[roi] == pytest.approx(r, abs=1e-6), (split, fold.subject, roi)
        assert set(rows["epoch"]) == {fold.best_epoch}

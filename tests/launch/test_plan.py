"""How a trial's folds map to actors and bundles (no Ray needed)."""

from __future__ import annotations

import pytest

from eeg2bold.cli import main
from eeg2bold.launch.config import load_study_config
from eeg2bold.launch.plan import fold_groups, make_plan


@pytest.mark.parametrize(("n", "k"), [(1, 1), (6, 1), (6, 3), (7, 3), (5, 2), (4, 10)])
def test_fold_groups_cover_every_fold_once_with_balanced_actors(n, k):
    groups = fold_groups(n, k)
    assert len(groups) == -(-n // k)
    assert sorted(f for g in groups for f in g) == list(range(n))
    sizes = [len(g) for g in groups]
    assert max(sizes) <= k and max(sizes) - min(sizes) <= 1


def test_bundles_hold_the_resources_of_the_folds_they_run(write_study, capsys):
    path = write_study(
        "bundles",
        resources={"cpu": 0.25, "gpu": 0.1, "trial_cpu": 0.05, "folds_per_actor": 2},
    )
    plan = make_plan(load_study_config(path))
    assert len(plan.subjects) == 2
    assert plan.bundles == [{"CPU": 0.05}, {"CPU": 0.5, "GPU": 0.2}]  # one actor, both folds
    assert main(["sweep", str(path), "--dry-run"]) == 0
    assert "2 folds on 1 actor (2 per actor)" in capsys.readouterr().out

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


def test_folds_too_short_for_the_common_footprint_are_refused_before_anything_runs(
    write_study, capsys
):
    """Every trial is scored on the sweep's common footprint: a fold it leaves without val
    samples is one line at planning (and in --dry-run), not a failure of every trial."""
    from eeg2bold.errors import ConfigError

    path = write_study("short", search={"data.window_s": 10.0, "data.footprint_s": 100.0})
    with pytest.raises(ConfigError, match=r"fold sub-01 has no (train|val|test) samples.*100 s"):
        make_plan(load_study_config(path))
    assert main(["sweep", str(path), "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert "has no" in err and "footprint_s=100 s" in err and len(err.strip().splitlines()) == 1
    plan = make_plan(load_study_config(write_study("fits")))  # the usual footprint fits
    assert [a.folds for a in plan.arms] == [["sub-01", "sub-02"]]

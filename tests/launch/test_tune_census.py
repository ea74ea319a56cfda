"""Tune's usage census of callbacks is skipped when Ray's usage statistics are off."""

from __future__ import annotations

import os

import pytest
from fresh_process import last_line

CODE = """
import sys
from ray.air._internal import usage
from ray.tune import Callback
from eeg2bold.launch.tune.tuner import skip_callback_census
assert "wandb" not in sys.modules
skip_callback_census()
usage.tag_callbacks([Callback()])
print("wandb" in sys.modules)
"""


@pytest.mark.parametrize(("enabled", "imported"), [("0", "False"), ("1", "True")])
def test_the_callback_census_imports_wandb_only_when_ray_may_report_usage(enabled, imported):
    """Tune counts a fit's callbacks for its usage statistics by importing its tracker
    integrations (W&B's package among them: about a second before the first trial). With the
    statistics off (a sweep's default) that count is skipped; with them on, Ray's stays."""
    assert last_line(CODE, env={"RAY_USAGE_STATS_ENABLED": enabled}) == imported


@pytest.mark.parametrize(("given", "kept"), [(None, "0"), ("1", "1")])
def test_a_sweep_turns_ray_usage_statistics_off_unless_the_user_turned_them_on(
    ray_cluster, monkeypatch, given, kept
):
    from eeg2bold.launch.tune.runtime import init_ray

    if given is None:
        monkeypatch.delenv("RAY_USAGE_STATS_ENABLED", raising=False)
    else:
        monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", given)
    init_ray()  # joins the running test instance; the environment is set first
    assert os.environ["RAY_USAGE_STATS_ENABLED"] == kept

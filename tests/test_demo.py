"""The demo of `make demo` stays runnable: its study config parses and matches the Makefile."""

from __future__ import annotations

import re
from pathlib import Path

from eeg2bold.launch.config import load_study_config

ROOT = Path(__file__).resolve().parents[1]


def test_demo_study_config_matches_the_makefile():
    config = load_study_config(ROOT / "examples" / "demo" / "study.yaml")
    # the story of issue 10: within, LOSO and a calibration curve; ridge and two deep models;
    # common-mode targets; enough subjects for a sign-flip p below 0.05 (2 / 2**6)
    assert set(config.protocols) == {"within", "loso", "loso_calibrated"}
    assert len(config.calibration_minutes or []) >= 3
    assert {"ridge", "beira", "twin"} <= set(config.models)
    assert config.targets.common_mode
    make = (ROOT / "Makefile").read_text()
    demo = make.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    simulated = re.search(r"eeg2bold simulate \$\(DEMO_DIR\)/(\S+)", demo)
    assert simulated and config.as_written("dataset") == f"demo_out/{simulated.group(1)}"
    subjects = int(re.search(r"--subjects (\d+)", demo).group(1))
    assert subjects >= 6
    assert (
        "report $(DEMO_DIR)/sweep" in demo
        and config.as_written("storage.results") == "demo_out/sweep"
    )
    # every fold of a trial fits the 2 CPUs the demo is promised to run on
    per_trial = subjects * config.resources.cpu + config.resources.trial_cpu
    assert per_trial <= 2.0

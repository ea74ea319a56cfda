"""Imports run one way: each subpackage may import only the ones DESIGN.md puts below it.

The test reads every module's import statements (module level and inside functions) with
``ast``, so a lazy import inside a function cannot hide an upward dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "eeg2bold"
# modules every layer may use: errors, the one sample geometry, names, provenance
BASE = {"errors", "eeg_formats", "geometry", "jsonsafe", "model_names", "provenance"}
BASE |= {"strict_config", "lazy"}
BASE |= {"__init__", "__main__"}
# what each subpackage may import besides BASE and itself (DESIGN.md's table, read bottom-up)
ALLOWED: dict[str, set[str]] = {
    "storage": set(),
    "run_folder": {"storage"},
    "simulate": {"storage"},
    "ingest": {"storage"},
    "models": set(),
    "protocols": {"storage"},
    "training": {"storage", "run_folder", "models", "protocols"},
    "search_spaces": {"models", "training", "run_folder"},
    "launch": {
        "storage",
        "run_folder",
        "models",
        "protocols",
        "training",
        "search_spaces",
        "simulate",
    },
    "study": {"storage", "run_folder", "models", "protocols", "training", "simulate"},
    # predict applies the trial `eeg2bold best` selects: it asks study's one query for it (study
    # never imports predict; the report rebuilds models through training.trained.TrainedFold)
    "predict": {"storage", "run_folder", "models", "training", "ingest", "study"},
    # the live twin: predict's model loading and checks, ingest's preprocessing record
    "live": {"training", "predict", "ingest"},
}
# Ray's API changes across 2.x: one adapter imports it (DESIGN.md)
RAY_ADAPTER = PACKAGE / "launch" / "tune"


def _unit(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return found


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_the_table_names_every_subpackage():
    units = {_unit(p) for p in _modules()}
    subpackages = {u for u in units if (PACKAGE / u).is_dir()}
    assert subpackages - {"cli"} <= set(ALLOWED), "a new subpackage needs its row in ALLOWED"


@pytest.mark.parametrize("unit", sorted(ALLOWED))
def test_no_subpackage_imports_upward(unit):
    may = ALLOWED[unit] | BASE | {unit}
    wrong = []
    for path in sorted((PACKAGE / unit).rglob("*.py")):
        for line, module in _imports(path):
            parts = module.split(".")
            if parts[0] == "eeg2bold" and len(parts) > 1 and parts[1] not in may:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}")
            if parts[0] == "ray" and RAY_ADAPTER not in path.parents:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}")
    assert not wrong, "\n".join(wrong)


def test_the_allowed_directions_have_no_circle():
    """With no circle in the table, no chain of allowed imports comes back to where it began."""
    done: set[str] = set()

    def visit(unit: str, path: tuple[str, ...]) -> None:
        assert unit not in path, " -> ".join((*path, unit))
        if unit not in done:
            for below in ALLOWED.get(unit, set()):
                visit(below, (*path, unit))
            done.add(unit)

    for unit in ALLOWED:
        visit(unit, ())


def test_the_report_and_its_tracker_load_no_ray():
    """`eeg2bold report` runs where no cluster does: its modules (and MLflow's attachment)
    import no Ray, lazily or not (the static rule above keeps study off launch)."""
    import subprocess
    import sys

    code = (
        "import sys; import eeg2bold.cli.main, eeg2bold.study.report, eeg2bold.study.tracking; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'ray'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_no_module_is_over_700_lines():
    """A module past 700 lines has usually grown a second job: split it along its seam."""
    long = {
        str(path.relative_to(PACKAGE.parent)): n
        for path in sorted(PACKAGE.rglob("*.py"))
        if (n := len(path.read_text().splitlines())) > 700
    }
    assert not long, long

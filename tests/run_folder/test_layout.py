"""What a run leaves has one owner: only ``eeg2bold/run_folder`` names its files and folders."""

from __future__ import annotations

import ast
from pathlib import Path

from eeg2bold.run_folder import RunFolder
from eeg2bold.run_folder.folder import MANIFESTS, OPTUNA_DB

PACKAGE = Path(__file__).resolve().parents[2] / "eeg2bold"
NAMES = {*MANIFESTS.values(), OPTUNA_DB, "ray.log"}
JOINED = ("/ray", "/logs", "/launch", "/optuna", "/table", "/models", "/checkpoints")


def _literals(path: Path) -> list[tuple[int, str]]:
    """String constants, and the literal parts of f-strings, with their line."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def test_no_module_outside_run_folder_builds_a_run_folder_path():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.parent.name == "run_folder":
            continue
        for line, text in _literals(path):
            joined = any(text.startswith(j) and text[len(j) :] in ("", "/", "'") for j in JOINED)
            if text in NAMES or joined:
                found.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {text!r}")
    assert not found, "\n".join(found)


def test_the_run_folder_names_the_paths_tools_keep_there(tmp_path):
    folder = RunFolder(tmp_path / "sweep")
    assert folder.optuna_url == f"sqlite:///{tmp_path / 'sweep' / 'optuna.db'}"
    assert folder.ray_dir == str(tmp_path / "sweep" / "ray")
    assert folder.ray_log == str(tmp_path / "sweep" / "logs" / "ray.log")
    assert folder.stage_dir == str(tmp_path / "sweep" / "launch")

"""Writes the reference pages from the code before Sphinx reads the sources.

- ``reference/config.md``: every typed config (each subclass of
  :class:`eeg2bold.strict_config.StrictConfig`), field by field: type, default, description.
- ``reference/cli.md``: every command's ``--help``, from the parser the CLI runs.

Generated, never edited (``docs/reference/`` is not in git), so the reference cannot drift
from the code; ``tests/test_docs.py`` builds the site with warnings as errors.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import pkgutil
import typing
from pathlib import Path
from typing import Any

import eeg2bold
from eeg2bold.strict_config import StrictConfig


def configs() -> list[type[StrictConfig]]:
    """Every StrictConfig subclass defined in the package, in module order."""
    found: list[type[StrictConfig]] = []
    for info in sorted(pkgutil.walk_packages(eeg2bold.__path__, "eeg2bold."), key=lambda i: i.name):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            mine = cls.__module__ == module.__name__ and cls is not StrictConfig
            if mine and issubclass(cls, StrictConfig) and cls.model_fields:
                found.append(cls)
    return found


def _type(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if not typing.get_args(annotation) else None
    return text or str(annotation).replace("typing.", "")


def _default(field: Any) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, StrictConfig):
        return "(section)"
    return f"`{value!r}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def config_page() -> str:
    out = [
        "# Configuration reference",
        "",
        "Every typed config, generated from its pydantic model: the same fields, defaults and "
        "descriptions the command line and the YAML files use. Unknown keys are errors.",
        "",
    ]
    for cls in configs():
        out += [f"## `{cls.__module__}.{cls.__qualname__}`", ""]
        doc = inspect.getdoc(cls)
        if doc:
            out += [doc.split("\n\n")[0], ""]
        out += ["| field | type | default | description |", "|---|---|---|---|"]
        for name, field in cls.model_fields.items():
            row = [f"`{name}`", f"`{_type(field.annotation)}`", _default(field)]
            row.append(field.description or "")
            out.append("| " + " | ".join(_cell(c) for c in row) + " |")
        out.append("")
    return "\n".join(out)


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[Any]:
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _commands(sub, (*path, name))
    return found


def cli_page() -> str:
    from eeg2bold.cli import build_parser

    os.environ["COLUMNS"] = "100"
    out = [
        "# Command-line reference",
        "",
        "Every command's `--help`, generated from the parser `eeg2bold` runs.",
        "",
    ]
    for path, parser in _commands(build_parser()):
        title = " ".join(("eeg2bold", *path))
        out += [f"## `{title}`", "", "```text", parser.format_help().rstrip(), "```", ""]
    return "\n".join(out)


def write_reference(app: Any) -> None:
    folder = Path(app.srcdir) / "reference"
    folder.mkdir(exist_ok=True)
    for name, text in (("config.md", config_page()), ("cli.md", cli_page())):
        path = folder / name
        if not path.exists() or path.read_text() != text:  # unchanged files are not rebuilt
            path.write_text(text)


def setup(app: Any) -> dict[str, Any]:
    app.connect("builder-inited", write_reference)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

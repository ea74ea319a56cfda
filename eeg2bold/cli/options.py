"""Command-line options generated from the typed configs, so that every default and help text
lives in one place: the pydantic field (STYLE.md "The CLI comes from the config").

:func:`add_options` adds one argparse option per named field; the option's type, choices,
help and shown default come from the field. An option not given is ``None`` in the parsed
namespace (the config's own default then applies); its ``dest`` is ``cfg:<path>``, so
:func:`given` collects exactly what the user typed, keyed by config path.
"""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.fields import FieldInfo

PREFIX = "cfg:"


def split_names(text: str) -> tuple[str, ...]:
    """'a,b, c' -> ('a', 'b', 'c')."""
    return tuple(n.strip() for n in text.split(",") if n.strip())


class _Off:
    """An option explicitly switched off ('none'); distinct from None, 'not given'."""

    def __repr__(self) -> str:
        return "OFF"


OFF = _Off()


def float_or_none(text: str) -> float | _Off:
    """A number, or 'none'/'off' (:data:`OFF`: the option switched off)."""
    if text.strip().lower() in ("none", "off", "no"):
        return OFF
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', got {text!r}") from None


def field_at(model: type[BaseModel], path: str) -> FieldInfo:
    """The field at a dotted path (``eeg.sfreq``) of a config model."""
    *sections, name = path.split(".")
    for section in sections:
        annotation = model.model_fields[section].annotation
        assert isinstance(annotation, type)
        assert issubclass(annotation, BaseModel)
        model = annotation
    return model.model_fields[name]


def _default(info: FieldInfo) -> Any:
    return None if info.is_required() else info.get_default(call_default_factory=True)


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value) or "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _parts(annotation: Any) -> tuple[Any, bool]:
    """The annotation without ``None``, and whether ``None`` was allowed."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else annotation), len(rest) < len(args)
    return annotation, False


def add_options(
    parser: Any,
    model: type[BaseModel],
    flags: Mapping[str, str],
    *,
    required: tuple[str, ...] = (),
    metavars: Mapping[str, str] | None = None,
    repeatable: tuple[str, ...] = (),
) -> None:
    """One option per ``flag -> field path``; booleans become switches that flip the default
    (``--no-motion`` for a field that defaults to True); list fields take comma-separated
    names, or one value per use for flags in ``repeatable``."""
    for flag, path in flags.items():
        info = field_at(model, path)
        default = _default(info)
        text = (info.description or "").rstrip(".")
        annotation, optional = _parts(info.annotation)
        kw: dict[str, Any] = {"dest": PREFIX + path}
        if annotation is bool:  # a switch away from the default
            off = default is True
            kw |= {"action": "store_const", "const": not default}
            kw["help"] = f"turn off: {text[0].lower()}{text[1:]}" if off else text
            parser.add_argument(flag, **kw)
            continue
        origin = typing.get_origin(annotation)
        if origin is Literal:
            kw["choices"] = list(typing.get_args(annotation))
        elif (origin is tuple or origin is list) and flag in repeatable:
            kw["action"] = "append"
        elif origin is tuple or origin is list:
            kw["type"] = split_names
            kw["metavar"] = "NAMES"
        elif annotation is float:
            kw["type"] = float_or_none if optional else float
        elif annotation is int:
            kw["type"] = int
        if metavars and flag in metavars:
            kw["metavar"] = metavars[flag]
        elif "choices" not in kw:
            kw.setdefault("metavar", path.rsplit(".", 1)[-1].upper())
        if path in required or (info.is_required() and not required):
            kw["required"] = True
            kw["help"] = text
        elif "default" in text.lower():  # the description already says what happens unset
            kw["help"] = text
        else:
            kw["help"] = f"{text} (default {_shown(default)})"
        parser.add_argument(flag, **kw)


def given(args: argparse.Namespace) -> dict[str, Any]:
    """The config values the user gave, by dotted path (``OFF`` for 'none')."""
    return {
        k.removeprefix(PREFIX): v
        for k, v in vars(args).items()
        if k.startswith(PREFIX) and v is not None
    }

"""Command-line options generated from the typed configs, so that every default and help text
lives in one place: the pydantic field (STYLE.md "The CLI comes from the config").

:func:`add_options` adds one argparse option per named field; the option's type, choices,
help and shown default come from the field. An option not given is ``None`` in the parsed
namespace (the config's own default then applies); its ``dest`` is ``cfg:<path>``, so
:func:`given` collects exactly what the user typed, keyed by config path.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from pydantic import BaseModel
from pydantic.fields import FieldInfo

PREFIX = "cfg:"
M = TypeVar("M", bound=BaseModel)


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
    many: tuple[str, ...] = (),
) -> None:
    """One option per ``flag -> field path``; booleans become switches that flip the default
    (``--no-motion`` for a field that defaults to True); list fields take comma-separated
    names, one value per use for flags in ``repeatable``, or several values after one flag
    for flags in ``many``."""
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
        elif (origin is tuple or origin is list) and flag in many:
            kw["nargs"] = "+"
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


def _owner(owner: Any) -> Any:
    if isinstance(owner, str):
        module, _, attribute = owner.partition(":")
        return getattr(importlib.import_module(module), attribute)
    return owner


def owned_default(owner: Any, name: str) -> Any:
    """The default that ``owner`` (a function, a dataclass or a pydantic model, or its
    ``"module:name"``) gives ``name``."""
    owner = _owner(owner)
    if isinstance(owner, type) and issubclass(owner, BaseModel):
        return _default(owner.model_fields[name])
    if dataclasses.is_dataclass(owner):
        return {f.name: f.default for f in dataclasses.fields(owner)}[name]
    return inspect.signature(owner).parameters[name].default


class _Lazy:
    """An owner's default (or a pydantic field's description), looked up only when help is
    printed: owners import torch or MNE, and building the parser must not."""

    def __init__(self, owner: str, name: str, what: Literal["default", "description"]) -> None:
        self.owner, self.name, self.what = owner, name, what

    def __str__(self) -> str:
        if self.what == "default":
            return _shown(owned_default(self.owner, self.name))
        text = (_owner(self.owner).model_fields[self.name].description or "").rstrip(".")
        return text[:1].lower() + text[1:]


def owned_option(
    parser: Any,
    *flags: str,
    owner: str,
    name: str | None = None,
    help: str | None = None,
    **kw: Any,
) -> argparse.Action:
    """An option whose default belongs to ``owner`` (``"module:function"``, a dataclass or a
    pydantic model; parameter ``name``, default the option's ``dest``). It declares no
    default of its own: its help shows the owner's, and the command passes it on only when
    given (:func:`passed`), so the owner's default applies (one owner per default). Without
    ``help``, a pydantic owner's field description is the help."""
    text = "%(owned_help)s" if help is None else help.replace("%", "%%")
    action: argparse.Action = parser.add_argument(
        *flags, default=None, help=f"{text} (default %(owned)s)", **kw
    )
    name = name or action.dest
    action.owned = _Lazy(owner, name, "default")  # type: ignore[attr-defined]
    action.owned_help = _Lazy(owner, name, "description")  # type: ignore[attr-defined]
    return action


def passed(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The named options the user gave (not None), as keyword arguments for their owner."""
    return {n: getattr(args, n) for n in names if getattr(args, n) is not None}


def validated(
    model: type[M], values: Mapping[str, Any], names: Mapping[str, str] | None = None
) -> M:
    """``model(**values)``, or a one-line :class:`ConfigError` naming each bad option (by
    ``names``: field -> the flag that sets it)."""
    from pydantic import ValidationError

    from eeg2bold.errors import ConfigError, invalid_options

    try:
        return model(**values)
    except ValidationError as exc:
        raise ConfigError(invalid_options(exc, names=names)) from None


def options_of(args: argparse.Namespace, model: type[M], flags: Mapping[str, str]) -> M:
    """The options ``model`` from the ``flags`` (``flag -> field``, as given to
    :func:`add_options`) that the user gave; ``OFF`` ('none') sets a field to None. A bad value
    is a one-line :class:`ConfigError` naming its flag."""
    fields = set(flags.values())
    values = {k: (None if v is OFF else v) for k, v in given(args).items() if k in fields}
    return validated(model, values, {field: flag for flag, field in flags.items()})


def given(args: argparse.Namespace) -> dict[str, Any]:
    """The config values the user gave, by dotted path (``OFF`` for 'none')."""
    return {
        k.removeprefix(PREFIX): v
        for k, v in vars(args).items()
        if k.startswith(PREFIX) and v is not None
    }

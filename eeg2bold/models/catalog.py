"""What ``eeg2bold models`` shows: every registered model with its hyperparameters."""

from __future__ import annotations

from typing import Any

from eeg2bold.models.base import get_model_class, model_names


def describe_models() -> list[dict[str, Any]]:
    """Name, summary, kind and hyperparameters (type, default, description) of each model."""
    out = []
    for name in model_names():
        cls = get_model_class(name)
        doc = (cls.__doc__ or "").strip().splitlines()
        params = []
        for field, info in cls.Params.model_fields.items():
            annotation = getattr(info.annotation, "__name__", None) or str(info.annotation)
            params.append(
                {
                    "name": field,
                    "type": annotation.replace("typing.", ""),
                    "default": info.get_default(call_default_factory=True),
                    "description": info.description or "",
                }
            )
        out.append(
            {
                "name": name,
                "summary": doc[0] if doc else "",
                "closed_form": cls.closed_form,
                "interpretable": cls.interpretable,
                "hyperparameters": params,
            }
        )
    return out


def format_models(models: list[dict[str, Any]]) -> str:
    lines = []
    for m in models:
        tags = [
            t
            for t, on in (("closed-form", m["closed_form"]), ("interpretable", m["interpretable"]))
            if on
        ]
        lines.append(f"{m['name']}{' [' + ', '.join(tags) + ']' if tags else ''}  {m['summary']}")
        for p in m["hyperparameters"]:
            lines.append(
                f"    {p['name']:<22} {p['type']:<14} = {p['default']!r:<12} {p['description']}"
            )
        lines.append("")
    return "\n".join(lines).rstrip()

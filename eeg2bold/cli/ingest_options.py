"""Command-line options to :class:`IngestConfig`: merge layout defaults, a config file, flags.

The options themselves are generated from the config's fields (:mod:`eeg2bold.cli.options`).

Flags are keyed by their config path (``"eeg.sfreq"``); ``None`` means "not given". Later
sources win: layout defaults < ``--config`` file (YAML or JSON) < flags.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from eeg2bold.cli.options import OFF
from eeg2bold.ingest.config import IngestConfig
from eeg2bold.ingest.errors import IngestError


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A config file (YAML or JSON) as nested dicts."""
    path = Path(path)
    if not path.exists():
        raise IngestError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:
        raise IngestError(
            f"{path}: cannot parse config file ({' '.join(str(exc).split())})"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise IngestError(f"{path}: a config file must hold a mapping of sections")
    return data


def build_config(
    flags: Mapping[str, Any],
    *,
    config_file: str | Path | None = None,
    defaults: Mapping[str, Any] | None = None,
    require_timing: bool = False,
) -> IngestConfig:
    """The resolved config; ``flags`` maps config paths to values (None: not given).

    A flag value :data:`OFF` sets the option to None. ``--marker`` implies timing source
    'markers' and ``--start`` source 'start'; giving both is an error. With
    ``require_timing`` one of them (or a config file timing source) must be given, so no start
    time is ever assumed.
    """
    record: dict[str, Any] = _deep_copy(defaults or {})
    file_record = read_config_file(config_file) if config_file else {}
    _merge(record, file_record)
    given = {k: (None if v is OFF else v) for k, v in flags.items() if v is not None}
    markers, start = given.get("timing.markers"), given.get("timing.start_s")
    if markers is not None and start is not None:
        raise IngestError(
            "give either --marker (scanner markers) or --start (start + TR), not both"
        )
    if markers is not None:
        given.setdefault("timing.source", "markers")
    if start is not None:
        given.setdefault("timing.source", "start")
    for path, value in given.items():
        section, _, option = path.partition(".")
        record.setdefault(section, {})[option] = value
    if require_timing and "source" not in record.get("timing", {}):
        raise IngestError(
            "say where the volumes are on the EEG clock: --marker NAME (scanner markers) or "
            "--start SECONDS (first volume, then one per TR)"
        )
    where = f"options{f' (and {config_file})' if config_file else ''}"
    return IngestConfig.from_record(record, where=where)


def _merge(into: dict[str, Any], other: Mapping[str, Any]) -> None:
    for key, value in other.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = _deep_copy(value) if isinstance(value, Mapping) else value


def _deep_copy(value: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in value.items()}

"""Optuna storage from a URL: SQLite (local default), a journal file, or PostgreSQL.

SQLite corrupts on network file systems, so clusters use PostgreSQL or the journal file.
Credentials come from the environment: ``${NAME}`` in a URL is expanded when connecting
(PostgreSQL also honours ``PGPASSWORD``), and every URL shown to a user goes through
:func:`~eeg2bold.storage.location.mask_url`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from eeg2bold.errors import ConfigError
from eeg2bold.storage.location import ENV_VAR, display_url

if TYPE_CHECKING:
    import optuna


def _postgres_driver(url: str) -> str:
    """SQLAlchemy's default PostgreSQL driver is psycopg 3; fall back to psycopg2 if that is
    what is installed."""
    if not url.startswith("postgresql://"):
        return url
    import importlib.util

    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2"):
        return "postgresql+psycopg2://" + url[len("postgresql://") :]
    return url


def optuna_storage(url: str) -> optuna.storages.BaseStorage:
    """An Optuna storage object (Ray's OptunaSearch needs an object, not a URL string).

    Relational storages are :class:`~eeg2bold.storage.optuna_rdb.SafeRDBStorage`: several
    processes may open one empty database at once, and pickles keep ``${VAR}`` unexpanded.
    """
    import optuna

    if url.startswith("journal://"):
        path = Path(url[len("journal://") :])
        path.parent.mkdir(parents=True, exist_ok=True)
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    if url.startswith("sqlite:///"):
        from eeg2bold.storage.optuna_rdb import SafeRDBStorage

        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        return SafeRDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
    if url.startswith(("postgresql://", "postgresql+psycopg2://", "mysql://")):
        from eeg2bold.storage.optuna_rdb import SafeRDBStorage

        url = _postgres_driver(url)
        secrets = [os.environ[n] for n in ENV_VAR.findall(url) if os.environ.get(n)]
        secrets += [os.environ["PGPASSWORD"]] if os.environ.get("PGPASSWORD") else []
        try:
            return SafeRDBStorage(url, engine_kwargs={"pool_pre_ping": True})
        except ConfigError:
            raise
        except Exception as exc:  # sqlalchemy/driver errors: report without credentials
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            for secret in secrets:
                text = text.replace(secret, "***")
            raise ConfigError(f"cannot open Optuna storage {display_url(url)}: {text}") from None
    raise ConfigError(
        f"unsupported Optuna storage {display_url(url)}: use sqlite:///…, journal:///… "
        "or postgresql://…"
    )

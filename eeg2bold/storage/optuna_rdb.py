"""Optuna's relational storage, made safe for how sweeps use it.

Two defects of a plain :class:`optuna.storages.RDBStorage` matter here:

- **Schema race.** Its constructor creates the tables when they are missing. Two processes
  doing that at once on an empty PostgreSQL database collide in the catalogue
  (``UniqueViolation … pg_type_typname_nsp_index``): two sweeps started together, or a sweep
  and ``eeg2bold trials``. Here the creation runs under a lock every process takes first: a
  PostgreSQL advisory lock or MySQL's ``GET_LOCK`` (SQLite serialises it by its file lock).
- **Secrets in pickles.** Ray pickles the searcher (and with it the storage) into the results
  folder; a plain storage pickles its expanded URL, password included. This one pickles the
  URL *template* (``${VAR}`` unexpanded) and re-expands it from the environment when loaded.

Imported lazily by :func:`eeg2bold.storage.optuna_db.optuna_storage` (it imports Optuna).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import optuna

# any fixed 64-bit number: every eeg2bold process takes the same lock on a database
_LOCK_KEY = 0x6565_6732_626F_6C64  # "eeg2bold"
_LOCK_NAME = "eeg2bold.optuna.schema"
_LOCK_TIMEOUT_S = 300


@contextlib.contextmanager
def schema_lock(url: str) -> Iterator[None]:
    """Hold an exclusive, cross-process lock on the database behind ``url``."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    dialect = sqlalchemy.engine.make_url(url).get_backend_name()
    if dialect == "postgresql":
        lock, unlock = "SELECT pg_advisory_lock(:k)", "SELECT pg_advisory_unlock(:k)"
        params: dict[str, Any] = {"k": _LOCK_KEY}  # fits a signed bigint
    elif dialect in ("mysql", "mariadb"):
        lock, unlock = "SELECT GET_LOCK(:k, :t)", "SELECT RELEASE_LOCK(:k)"
        params = {"k": _LOCK_NAME, "t": _LOCK_TIMEOUT_S}
    else:  # SQLite: the database file's own lock serialises schema changes
        yield
        return
    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text(lock), params)
            conn.commit()
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text(unlock), params)
                conn.commit()
    finally:
        engine.dispose()


class SafeRDBStorage(optuna.storages.RDBStorage):
    """An ``RDBStorage`` whose schema creation is serialised across processes and whose
    pickled form holds the URL template, never the expanded credentials."""

    def __init__(
        self,
        template: str,
        *,
        engine_kwargs: dict[str, Any] | None = None,
        heartbeat_interval: int | None = None,
    ) -> None:
        from eeg2bold.storage.location import expand_env

        self.template = template
        url = expand_env(template)
        with schema_lock(url):
            super().__init__(
                url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval
            )

    def __getstate__(self) -> dict[str, Any]:
        return {
            "template": self.template,
            "engine_kwargs": self.engine_kwargs,
            "heartbeat_interval": self.heartbeat_interval,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]  # re-open from the template, under the lock
            state["template"],
            engine_kwargs=state["engine_kwargs"],
            heartbeat_interval=state["heartbeat_interval"],
        )

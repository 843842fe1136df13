"""Engines: one per URL, SQLite tuned for a writer and concurrent readers, read-only when asked.

SQLite runs in WAL mode with a busy timeout so the dashboard can read while a study writes;
PostgreSQL is used as is. Optuna's RDBStorage shares the same URL and database (`optuna_storage`).
A read-only engine opens SQLite files with `mode=ro` and makes PostgreSQL sessions read-only, so a
bug in a reader cannot damage a running study.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, NoSuchModuleError
from sqlalchemy.pool import QueuePool

from mixnas.errors import StorageError, first_line

SQLITE_BUSY_TIMEOUT_MS = 30_000
READ_ONLY_TIMEOUT_S = 10  # waits out a writer's lock on rollback-journal (non-WAL) databases


def check_url(url: str) -> sa.URL:
    """Parse a storage URL.

    Args:
        url: An SQLAlchemy URL (`sqlite:///mixnas.db`, `postgresql+psycopg://user@host/db`).

    Returns:
        The parsed URL.

    Raises:
        StorageError: One line naming the URL: malformed, another backend, or a SQLite file in a
            directory that does not exist.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StorageError(f"bad storage URL '{url}': expected e.g. sqlite:///mixnas.db or "
                           "postgresql+psycopg://user@host/db") from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise StorageError(f"storage URL '{url}': only sqlite and postgresql are supported")
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:") or "memory" in str(parsed.query.get("mode")):
            raise StorageError(f"storage URL '{url}': an in-memory database forgets the study "
                               "when mixnas exits; give a file, e.g. sqlite:///mixnas.db")
        path = Path(parsed.database).expanduser().resolve()
        if not path.parent.is_dir():
            raise StorageError(f"storage URL '{url}': directory {path.parent} does not exist")
        if path.is_dir():
            raise StorageError(f"storage URL '{url}': {path} is a directory, not a database file")
    return parsed


def check_writable(url: str) -> None:
    """Refuse, before anything is written, a SQLite file (or its directory, where SQLite keeps
    its write-ahead log) that this process may not write.

    Raises:
        StorageError: One line naming the file or directory.
    """
    parsed = check_url(url)
    if parsed.get_backend_name() != "sqlite":
        return  # PostgreSQL says so at the first write, as one line (`reason`)
    path = Path(parsed.database).expanduser().resolve()
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise StorageError(f"storage '{url}': {path} is read-only")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise StorageError(f"storage '{url}': directory {path.parent} is read-only")


@functools.lru_cache(maxsize=16)
def get_engine(url: str) -> Engine:
    """The shared read-write engine of `url` (one per process and URL)."""
    parsed = check_url(url)
    kwargs: dict = {"future": True}
    if parsed.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    else:
        kwargs["pool_pre_ping"] = True
    try:
        engine = sa.create_engine(parsed, **kwargs)
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        hint = " (pip install 'mixnas[postgres]')" if "postgres" in str(parsed.drivername) else ""
        raise StorageError(f"storage URL '{url}': driver not installed: {exc}{hint}") from None
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def read_only_engine(url: str) -> Engine:
    """An engine that cannot write: SQLite opened with `mode=ro`, PostgreSQL read-only sessions.

    Raises:
        ValueError: An in-memory SQLite URL, or no SQLite file at the URL's path.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise ValueError(f"{url}: a read-only storage needs a SQLite file, not memory")
        path = Path(parsed.database).resolve()
        if not path.is_file():
            raise ValueError(f"{url}: no database file at {path}")
        uri = f"{path.as_uri()}?mode=ro"
        return sa.create_engine(
            "sqlite://",
            creator=lambda: sqlite3.connect(
                uri, uri=True, timeout=READ_ONLY_TIMEOUT_S, check_same_thread=False
            ),
            poolclass=QueuePool,
        )
    if parsed.get_backend_name() == "postgresql":
        return sa.create_engine(parsed, execution_options={"postgresql_readonly": True})
    return sa.create_engine(parsed)


def has_table(engine: Engine, name: str, url: str) -> bool:
    """Whether the database holds table `name`; unreachable -> StorageError."""
    try:
        return sa.inspect(engine).has_table(name)
    except DatabaseError as exc:
        raise StorageError(f"cannot reach storage '{safe_url(url)}': {reason(exc)}") from None


def database_exists(url: str, table: str) -> bool:
    """Whether `url` points at an existing database holding `table` (creating nothing, and for
    SQLite looking read-only: the read-write engine would turn any SQLite file it opens, an empty
    or foreign one included, to WAL mode)."""
    parsed = check_url(url)
    if parsed.get_backend_name() != "sqlite":
        return has_table(get_engine(url), table, url)
    path = Path(parsed.database).expanduser().resolve()
    if not path.exists():
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True,
                                                timeout=READ_ONLY_TIMEOUT_S)) as conn:
            row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                               (table,)).fetchone()
    except sqlite3.DatabaseError as exc:  # not a database, damaged, unreadable
        raise StorageError(f"storage '{safe_url(url)}': {first_line(exc)}") from None
    return row is not None


def optuna_storage(url: str) -> Any:
    """Optuna's RDBStorage over the same database, with the same timeouts as ours."""
    import optuna

    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_MS // 1000}}
    else:
        kwargs["engine_kwargs"] = {"pool_pre_ping": True}
    return optuna.storages.RDBStorage(url, **kwargs)


def reason(exc: DatabaseError) -> str:
    """The first line of the database driver's own message."""
    return first_line(exc.orig if exc.orig is not None else exc)


def safe_url(url: str) -> str:
    """The URL with any password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url

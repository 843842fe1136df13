"""Database access: one engine per URL, SQLite tuned for a writer and concurrent readers.

SQLite runs in WAL mode with a busy timeout so the dashboard can read while a study writes;
PostgreSQL is used as is. Optuna's RDBStorage shares the same URL and database.
"""

from __future__ import annotations

import functools
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from mixnas.errors import StorageError
from mixnas.orchestrator.models import Base

SQLITE_BUSY_TIMEOUT_MS = 30_000


def check_url(url: str) -> sa.URL:
    """Parse a storage URL or raise a one-line StorageError naming it."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StorageError(f"bad storage URL '{url}': expected e.g. sqlite:///mixnas.db or "
                           "postgresql+psycopg://user@host/db") from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise StorageError(f"storage URL '{url}': only sqlite and postgresql are supported")
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        parent = Path(parsed.database).expanduser().resolve().parent
        if not parent.is_dir():
            raise StorageError(f"storage URL '{url}': directory {parent} does not exist")
    return parsed


@functools.lru_cache(maxsize=16)
def get_engine(url: str) -> Engine:
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


def connect(url: str, *, create: bool = True) -> sessionmaker[Session]:
    """Open the database, creating mixnas's tables when asked; unreachable -> StorageError."""
    engine = get_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        if create:
            from mixnas.orchestrator.migrations import upgrade

            upgrade(engine)
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise StorageError(f"cannot reach storage '{_safe(url)}': {reason}") from None
    return sessionmaker(engine, expire_on_commit=False)


def exists(url: str) -> bool:
    """Whether the URL points at an existing mixnas database (without creating anything)."""
    parsed = check_url(url)
    on_disk = parsed.get_backend_name() == "sqlite" and parsed.database not in (None, ":memory:")
    if on_disk and not Path(parsed.database).expanduser().exists():
        return False
    try:
        return sa.inspect(get_engine(url)).has_table(Base.metadata.sorted_tables[0].name)
    except OperationalError as exc:
        raise StorageError(f"cannot reach storage '{_safe(url)}': {exc.orig}") from None


def _safe(url: str) -> str:
    """The URL with any password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url

"""Schema migrations of mixnas's own tables (alembic), apart from Optuna's `alembic_version`."""

from __future__ import annotations

import functools
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from mixnas.errors import StorageError

VERSION_TABLE = "mixnas_alembic_version"


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent))
    return cfg


@functools.cache
def head_revision() -> str:
    """The newest revision this mixnas knows."""
    return ScriptDirectory.from_config(_config()).get_current_head()


@functools.cache
def known_revisions() -> frozenset[str]:
    """Every revision this mixnas knows (a database at another one was made by a newer mixnas)."""
    script = ScriptDirectory.from_config(_config())
    return frozenset(rev.revision for rev in script.walk_revisions())


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(
            conn, opts={"version_table": VERSION_TABLE}
        ).get_current_revision()


def upgrade(engine: Engine) -> None:
    """Bring mixnas's tables to the head revision; refuse a database made by a newer mixnas."""
    current = current_revision(engine)
    if current == head_revision():
        return
    if current is not None and current not in known_revisions():
        raise StorageError(
            f"the database's mixnas schema revision '{current}' is newer than this mixnas "
            f"(head '{head_revision()}'): upgrade mixnas"
        )
    cfg = _config()
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except (IntegrityError, OperationalError, ProgrammingError):
        # Another process created the schema at the same moment: fine if it reached head.
        if current_revision(engine) != head_revision():
            raise


def table_names(engine: Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())

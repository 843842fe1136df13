"""Storage URLs, SQLite tuning and schema migrations."""

import pytest
import sqlalchemy as sa

from mixnas.errors import StorageError
from mixnas.storage import RDBStorage, migrations
from mixnas.storage.engine import check_url, get_engine


@pytest.mark.parametrize(
    "url,message",
    [
        ("not a url", "bad storage URL"),
        ("mysql://root@localhost/x", "only sqlite and postgresql"),
        ("sqlite:////no/such/dir/x.db", "does not exist"),
    ],
)
def test_bad_urls_are_one_line_errors(url, message):
    with pytest.raises(StorageError, match=message):
        check_url(url)


def test_sqlite_gets_wal_and_busy_timeout(tmp_path):
    url = f"sqlite:///{tmp_path}/a.db"
    RDBStorage(url)
    with get_engine(url).connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 10_000


def test_schema_is_migrated_to_head_with_its_own_version_table(tmp_path):
    url = f"sqlite:///{tmp_path}/b.db"
    RDBStorage(url)
    engine = get_engine(url)
    assert migrations.current_revision(engine) == migrations.head_revision()
    tables = migrations.table_names(engine)
    assert {"mixnas_studies", "mixnas_trials", "mixnas_curve_points", "mixnas_weights",
            "mixnas_drivers", migrations.VERSION_TABLE} <= tables
    RDBStorage(url)  # idempotent


def test_a_newer_schema_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path}/c.db"
    RDBStorage(url)
    with get_engine(url).begin() as conn:
        conn.execute(sa.text(f"UPDATE {migrations.VERSION_TABLE} SET version_num = '9999'"))
    get_engine.cache_clear()
    with pytest.raises(StorageError, match="newer than this mixnas"):
        RDBStorage(url)

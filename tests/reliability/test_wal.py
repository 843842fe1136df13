"""SQLite in WAL mode: the dashboard's read-only connection reads while a study holds the write
lock (in rollback-journal mode the same read fails with 'database is locked')."""

from __future__ import annotations

import sqlite3

import pytest
import sqlalchemy as sa

from mixnas.storage import RDBStorage, StudyRecord
from mixnas.storage.engine import read_only_engine


def test_reader_reads_while_a_writer_holds_the_lock(tmp_path):
    url = f"sqlite:///{tmp_path}/study.db"
    sessions = RDBStorage(url).sessions
    with sessions() as session, session.begin():
        session.add(StudyRecord(name="s", config={}, objectives=[], target_trials=1))
    writer = sqlite3.connect(tmp_path / "study.db", timeout=0, isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")  # what a study's commit holds, for as long as it likes
    writer.execute("UPDATE mixnas_studies SET target_trials = 2")
    reader = read_only_engine(url)
    try:
        with reader.connect() as conn:
            conn.exec_driver_sql("PRAGMA busy_timeout = 0")  # fail at once instead of waiting
            assert conn.execute(sa.select(StudyRecord.target_trials)).scalar() == 1
        writer.execute("COMMIT")
        with reader.connect() as conn:
            assert conn.execute(sa.select(StudyRecord.target_trials)).scalar() == 2
    finally:
        writer.close()
        reader.dispose()


def test_the_read_only_connection_cannot_write(tmp_path):
    url = f"sqlite:///{tmp_path}/study.db"
    RDBStorage(url)
    reader = read_only_engine(url)
    try:
        with reader.connect() as conn, pytest.raises(sa.exc.OperationalError, match="readonly"):
            conn.execute(sa.delete(StudyRecord))
    finally:
        reader.dispose()

"""The dashboard over PostgreSQL: same answers as Optuna, and the session refuses writes."""

from __future__ import annotations

import uuid

import optuna
import pytest
from sqlalchemy import text
from sqlalchemy.exc import InternalError

from mixnas.dashboard.app import create_app
from mixnas.dashboard.demo import build_demo_db
from mixnas.storage.engine import read_only_engine

from .conftest import TestClient

psycopg = pytest.importorskip("psycopg")
SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def pg_url():
    name = f"mixnas_dashboard_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg.connect("host=127.0.0.1 port=5432 user=postgres", autocommit=True)
    except psycopg.OperationalError as error:
        pytest.skip(f"no PostgreSQL server on 127.0.0.1:5432 ({error})")
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield build_demo_db(f"{SERVER}/{name}", n_trials=30)
    finally:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.close()


def test_postgres_study_is_served_read_only(pg_url):
    client = TestClient(create_app(pg_url))
    front = client.get("/api/studies/demo/pareto").json()
    study = optuna.load_study(study_name="demo", storage=pg_url)
    repeats = [n for numbers in front["repeats"].values() for n in numbers]  # one point a design
    assert sorted(front["trials"] + repeats) == sorted(t.number for t in study.best_trials)
    assert len(client.get("/api/studies/demo/trials").json()["rows"]) == 30
    engine = read_only_engine(pg_url)
    with engine.connect() as conn, pytest.raises(InternalError, match="read-only transaction"):
        conn.execute(text("DELETE FROM mixnas_curve_points"))
    engine.dispose()

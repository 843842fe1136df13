"""Fixtures: a real Ray head on loopback, and a fresh PostgreSQL database per module."""

from __future__ import annotations

import uuid

import pytest

from .helpers import ray_client_env, ray_head_process  # noqa: F401 - the tests import it here

PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"


@pytest.fixture(scope="package")
def ray_head():
    """`ray start --head` with 2 CPUs (helpers.ray_head_process)."""
    with ray_head_process(num_cpus=2, num_gpus=0) as head:
        yield head


@pytest.fixture(scope="module")
def pg_url():
    psycopg = pytest.importorskip("psycopg")
    name = f"mixnas_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect("host=127.0.0.1 port=5432 user=postgres", autocommit=True,
                                connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL server on 127.0.0.1:5432 ({str(exc).strip()})")
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        from mixnas.storage.engine import get_engine

        get_engine.cache_clear()
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.close()


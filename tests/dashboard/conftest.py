"""Fixtures: a realistic study database (Optuna study + mixnas rows) and clients of the app."""

from __future__ import annotations

import shutil
import warnings

import pytest
from starlette.exceptions import StarletteDeprecationWarning

from mixnas.dashboard.app import create_app
from mixnas.dashboard.demo import build_demo_db

with warnings.catch_warnings():  # Starlette 1.x prefers the httpx2 fork; httpx still works
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

N_TRIALS = 60


@pytest.fixture(scope="session")
def demo_db(tmp_path_factory) -> str:
    """A study of 60 trials (baselines first, two still running), shared read-only by the tests."""
    return build_demo_db(tmp_path_factory.mktemp("dashboard") / "demo.db", n_trials=N_TRIALS)


@pytest.fixture
def writable_db(demo_db, tmp_path) -> str:
    """A private copy of the demo database for tests that add trials while the app reads."""
    path = tmp_path / "copy.db"
    shutil.copy(demo_db.removeprefix("sqlite:///"), path)
    return f"sqlite:///{path}"


@pytest.fixture(scope="session")
def client(demo_db) -> TestClient:
    with TestClient(create_app(demo_db)) as test_client:
        yield test_client

"""Fixtures: a real Ray head on loopback, and a fresh PostgreSQL database per module."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from .helpers import free_port, kill_session

PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"


@pytest.fixture(scope="package")
def ray_head():
    """`ray start --head` with 2 CPUs in a session and temp dir of its own; the teardown kills
    exactly that session (never `ray stop`, which would stop every Ray on the machine)."""
    ray_cli = shutil.which("ray") or pytest.skip("the `ray` command is not installed")
    port = free_port()
    temp_dir = tempfile.mkdtemp(prefix="mxr")  # short: Ray puts unix sockets in it
    log = open(f"{temp_dir}/head.log", "w")  # noqa: SIM115 - closed in the teardown
    proc = subprocess.Popen(
        [ray_cli, "start", "--head", "--block", f"--port={port}", "--num-cpus=2", "--num-gpus=0",
         "--include-dashboard=false", f"--temp-dir={temp_dir}", "--disable-usage-stats"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                log.flush()
                raise RuntimeError(f"ray start failed:\n{Path(log.name).read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the Ray head did not come up in 90 s") from None
                time.sleep(0.2)
        yield SimpleNamespace(address=f"127.0.0.1:{port}", session=proc.pid)
    finally:
        proc.kill()
        proc.wait()
        kill_session(proc.pid)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


def ray_client_env(address: str) -> dict[str, str]:
    """What a driver needs to join the test head: its address (read by `--ray-address auto`)
    and token authentication, which `ray start --head` turns on by default."""
    return {"RAY_ADDRESS": address, "RAY_AUTH_MODE": "token"}


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


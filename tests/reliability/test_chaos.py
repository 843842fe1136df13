"""Chaos on a Ray cluster: a study joins an existing cluster (`--ray-address auto`) and loses
workers and its driver at seeded random moments; `resume` brings it to its target with every
completed trial intact and nothing left running."""

from __future__ import annotations

import os
import random
import signal
import time

from .conftest import ray_client_env
from .helpers import (
    Mixnas,
    Reader,
    check_study,
    session_members,
    session_of,
    wait_until,
    worker_pid,
    write_study,
)

SEED = 20241
KILLS = ["worker", "driver", "worker"]  # shuffled by the seed; at most three kills


def test_study_survives_killed_workers_and_driver(ray_head, tmp_path):
    rng = random.Random(SEED)
    kills = rng.sample(KILLS, len(KILLS))
    name = "chaos"
    target = 4
    path = write_study(tmp_path, name, n_trials=target, workers=2, steps=150, max_retries=2,
                       seed=SEED)
    url = f"sqlite:///{tmp_path}/chaos.db"
    logs = tmp_path / "logs"
    env = ray_client_env(ray_head.address)
    reader = Reader(url)
    driver = Mixnas(logs, "study", "start", str(path), "--storage", url,
                    "--ray-address", "auto", "--quiet", **env)
    deadline = time.monotonic() + 150
    kept: dict[int, dict] = {}
    done_kills = []
    try:
        first = wait_until("a trial on a worker", reader.running_on_worker, timeout=90)
        # on the cluster's worker, and the driver started no Ray of its own
        assert session_of(worker_pid(first)) == ray_head.session
        assert session_members(driver.pid) == [driver.pid]
        for kind in kills:
            row = wait_until("a trial of the current driver on a worker",
                             lambda pid=driver.pid: _running_trial_of(reader, pid), timeout=90)
            time.sleep(rng.uniform(0.0, 1.0))
            if kind == "worker":
                try:
                    os.kill(worker_pid(row), signal.SIGKILL)
                except ProcessLookupError:
                    continue  # the trial finished meanwhile: no kill
                wait_until("the driver to record the death",
                           lambda n=row.number: _state(reader, n) != "running", timeout=60)
            else:
                driver.kill()
                kept.update(reader.complete())
                reader.wait_stale(row.driver_id)
                driver = Mixnas(logs, "study", "resume", name, "--storage", url,
                                "--ray-address", ray_head.address, "--quiet", **env)
            done_kills.append(kind)
        driver.check(timeout=max(10.0, deadline - time.monotonic()))
    finally:
        reader.close()
        driver.kill()
    assert "driver" in done_kills
    rows = {r.number: r for r in check_study(url, name, target=target)}
    for number, values in kept.items():
        assert rows[number].state == "complete" and rows[number].values == values
    reasons = [r.failure_reason or "" for r in rows.values()]
    assert any(reason.startswith("stale: driver") for reason in reasons)
    if "worker" in done_kills:
        assert any(reason.startswith("worker died: ") for reason in reasons)
    for row in rows.values():  # a retry re-runs the architecture it retries
        if row.retry_of is not None:
            assert rows[row.retry_of].arch_hash == row.arch_hash



def _running_trial_of(reader: Reader, pid: int):
    """A running trial, on a worker, of the driver process `pid` (once it has registered)."""
    ids = [d.id for d in reader.drivers() if d.pid == pid]
    return reader.running_on_worker(driver_id=ids[0]) if ids else None


def _state(reader: Reader, number: int) -> str | None:
    return next((r.state for r in reader.trials() if r.number == number), None)

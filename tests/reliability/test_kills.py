"""SIGKILL a Ray worker mid-trial, and the driver mid-study: the study records what happened,
retries the same architecture, and reaches its target without losing a completed trial."""

from __future__ import annotations

import os
import signal

from .conftest import ray_client_env
from .helpers import (
    Mixnas,
    Reader,
    check_study,
    session_members,
    wait_until,
    worker_pid,
    write_study,
)


def test_killed_worker_fails_its_trial_which_is_retried_up_to_max_retries(tmp_path):
    name = "worker-kill"
    path = write_study(tmp_path, name, n_trials=2, workers=1, steps=100, max_retries=1)
    url = f"sqlite:///{tmp_path}/kill.db"
    driver = Mixnas(tmp_path / "logs", "study", "start", str(path), "--storage", url, "--quiet")
    reader = Reader(url)
    try:
        first = wait_until("a trial on a worker", reader.running_on_worker, timeout=90)
        os.kill(worker_pid(first), signal.SIGKILL)

        def the_retry_runs():
            row = reader.running_on_worker()
            return row if row is not None and row.retry_of == first.number else None

        retry = wait_until("the retry on a worker", the_retry_runs, timeout=90)
        os.kill(worker_pid(retry), signal.SIGKILL)  # its last allowed attempt dies too
        driver.check(timeout=120)
    finally:
        reader.close()
        driver.kill()
    rows = {r.number: r for r in check_study(url, name, target=2)}
    killed, again = rows[first.number], rows[retry.number]
    assert killed.state == "failed" and killed.failure_reason.startswith("worker died: ")
    assert killed.retried and killed.attempt == 0
    assert (again.attempt, again.arch_hash, again.params) == (1, killed.arch_hash, killed.params)
    assert again.state == "failed" and again.failure_reason.startswith("worker died: ")
    assert not again.retried, "max_retries=1: the second death is final"
    assert not [r for r in rows.values() if r.retry_of == again.number]
    assert [r.state for r in rows.values() if r.number not in (first.number, retry.number)] == [
        "complete"
    ], "the study goes on after the failures"


def test_resume_recovers_a_killed_drivers_trials_and_loses_no_result(ray_head, tmp_path):
    name = "driver-kill"
    path = write_study(tmp_path, name, n_trials=3, workers=2, steps=150)
    url = f"sqlite:///{tmp_path}/kill.db"
    logs = tmp_path / "logs"
    driver = Mixnas(logs, "study", "start", str(path), "--storage", url, "--quiet")
    reader = Reader(url)
    try:
        wait_until("one trial complete and one on a worker",
                   lambda: reader.complete() and reader.running_on_worker(), timeout=120)
        driver.kill()  # the driver and its local Ray: nothing of it may survive
        assert session_members(driver.pid) == []
        complete = reader.complete()
        orphans = {r.number: r for r in reader.trials() if r.state == "running"}
        assert orphans
        dead_id = next(iter(orphans.values())).driver_id
        reader.wait_stale(dead_id)
        # resumed on the test cluster: a study can go on wherever its database is reachable
        Mixnas(logs, "study", "resume", name, "--storage", url, "--quiet", "--ray-address",
               ray_head.address, **ray_client_env(ray_head.address)).check(timeout=150)
    finally:
        reader.close()
        driver.kill()
    rows = {r.number: r for r in check_study(url, name, target=3)}
    for number, values in complete.items():
        assert rows[number].state == "complete" and rows[number].values == values
    for number, orphan in orphans.items():
        assert rows[number].state == "failed" and rows[number].retried
        assert rows[number].failure_reason == f"stale: driver {dead_id} stopped beating"
        retries = [r for r in rows.values() if r.retry_of == number]
        assert [(r.arch_hash, r.params) for r in retries] == [(orphan.arch_hash, orphan.params)]
        assert retries[0].driver_id != dead_id

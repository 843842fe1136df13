"""PostgreSQL end to end, with two drivers working on one study at once on a shared Ray cluster:
a `resume` beside a live driver leaves that driver's trials alone, and together they number every
trial once, lose no result and double none."""

from __future__ import annotations

import pytest

from .conftest import ray_client_env
from .helpers import Mixnas, Reader, check_study, wait_until, write_study

pytestmark = pytest.mark.postgres


def test_two_drivers_share_one_study_on_postgres(pg_url, ray_head, tmp_path):
    name = "shared"
    target = 6
    path = write_study(tmp_path, name, n_trials=target, workers=1, steps=150)
    logs = tmp_path / "logs"
    env = ray_client_env(ray_head.address)
    first = Mixnas(logs, "study", "start", str(path), "--storage", pg_url,
                   "--ray-address", ray_head.address, "--quiet", **env)
    reader = Reader(pg_url)
    second = None
    try:
        # the second driver starts while the first works: its `recover_stale` must spare the
        # first one's running trials, and both must find trials to run
        wait_until("the first driver's trial", reader.trials, timeout=90)
        second = Mixnas(logs, "study", "resume", name, "--storage", pg_url,
                        "--ray-address", ray_head.address, "--quiet", **env)
        first.check(timeout=150)
        second.check(timeout=150)
        drivers = reader.drivers()
    finally:
        reader.close()
        for driver in (first, second):
            if driver is not None:
                driver.kill()
    rows = check_study(pg_url, name, target=target)
    assert len(drivers) == 2 and all(d.stopped_at is not None for d in drivers)
    by_driver = {d.id: [r.number for r in rows if r.driver_id == d.id] for d in drivers}
    assert all(by_driver.values()), f"both drivers ran trials: {by_driver}"
    assert not [r for r in rows if r.state == "failed"], [r.failure_reason for r in rows]
    # ... and the second really did start beside a trial of the first in flight
    # (the first driver's first trial existed before the second started, see wait_until; its
    # started_at is when its worker began, which under load can be after that)
    older, newer = sorted(drivers, key=lambda d: d.started_at)
    first_trial = min((r for r in rows if r.driver_id == older.id), key=lambda r: r.number)
    assert newer.started_at < first_trial.finished_at
    # Each driver stops asking once done + running reaches the target, so together they can
    # overshoot by at most the other driver's trials in flight (one each here).
    assert target <= len(rows) <= target + 1

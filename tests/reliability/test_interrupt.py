"""Ctrl-C, sent as a terminal sends it, to the driver's whole process group (the first time with
the driver's own local Ray in that group, which must survive it): once stops asking and waits for
the trials in flight; twice stops them at once, failed and re-queued. Either way the driver exits
130 and leaves no trial running."""

from __future__ import annotations

import optuna

from .conftest import ray_client_env
from .helpers import Mixnas, Reader, check_study, utcnow, wait_until, write_study


def test_ctrl_c_once_waits_for_trials_in_flight_twice_stops_them(ray_head, tmp_path):
    name = "ctrl-c"
    path = write_study(tmp_path, name, n_trials=8, workers=2, steps=150)
    url = f"sqlite:///{tmp_path}/ctrl-c.db"
    logs = tmp_path / "logs"
    reader = Reader(url)
    driver = Mixnas(logs, "study", "start", str(path), "--storage", url, "--quiet")
    try:
        wait_until("a trial on a worker", reader.running_on_worker, timeout=90)
        asked = {r.number for r in reader.trials()}
        interrupted_at = utcnow()
        driver.interrupt()
        driver.check(timeout=90, expect=130)
        assert "Ctrl-C: no new trials; waiting for the trials in flight" in driver.stderr()
        rows = reader.trials()
        assert not [r for r in rows if r.state == "running"]
        late = [r.number for r in rows
                if r.number not in asked and r.started_at > interrupted_at]
        assert not late, f"trials started after Ctrl-C: {late}"
        for row in rows:
            if row.number in asked:  # in flight at Ctrl-C: finished normally
                assert row.state == "complete", (row.number, row.state, row.failure_reason)

        # the second half joins the test cluster instead of starting a Ray of its own (faster;
        # the driver's Ctrl-C handling is the same)
        driver = Mixnas(logs, "study", "resume", name, "--storage", url, "--quiet",
                        "--ray-address", ray_head.address, **ray_client_env(ray_head.address))
        old_drivers = {r.driver_id for r in rows}

        def resumed_trial():
            new = [d.id for d in reader.drivers() if d.id not in old_drivers]
            return new and reader.running_on_worker(driver_id=new[0])

        row = wait_until("a resumed trial on a worker", resumed_trial, timeout=90)
        driver.interrupt()
        wait_until("the first Ctrl-C to be handled", lambda: "Ctrl-C" in driver.stderr(), 30)
        driver.interrupt()
        driver.check(timeout=60, expect=130)
        assert "Ctrl-C again: stopping the trials in flight" in driver.stderr()
    finally:
        reader.close()
        driver.kill()
    after = {r.number: r for r in reader.trials()}
    stopped = after[row.number]
    assert stopped.state == "failed" and stopped.retried
    assert stopped.failure_reason == "interrupted: the driver was stopped by a second Ctrl-C"
    study = optuna.load_study(study_name=name, storage=url)
    queued = [t for t in study.get_trials(deepcopy=False)
              if t.state == optuna.trial.TrialState.WAITING
              and t.user_attrs.get("retry_of") == row.number]
    assert len(queued) == 1 and queued[0].system_attrs["fixed_params"] == stopped.params
    assert not [t for t in study.get_trials(deepcopy=False)
                if t.state == optuna.trial.TrialState.RUNNING]
    assert not [r for r in after.values() if r.state == "running"]
    check_study(url, name, target=0)  # the invariants hold half way through a study too


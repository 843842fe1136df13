"""The driver's recovery bookkeeping, step by step, without Ray: the interleavings that the process
tests can only hit by chance (a result landing after a takeover, a driver dying between writing a
result and telling Optuna, a trial another driver is still setting up)."""

from __future__ import annotations

from datetime import timedelta

import optuna
import pytest
import sqlalchemy as sa
from optuna.trial import TrialState

from mixnas.orchestrator import heartbeat
from mixnas.orchestrator.config import load_study_config
from mixnas.orchestrator.driver import Driver, InFlight
from mixnas.orchestrator.study import create_study
from mixnas.orchestrator.trials import TrialResult
from mixnas.storage import DriverRecord, TrialRecord, utcnow

from .helpers import write_study


@pytest.fixture
def handle(tmp_path):
    config = load_study_config(write_study(tmp_path, "recovery", n_trials=4, workers=1))
    config.storage = f"sqlite:///{tmp_path}/recovery.db"
    return create_study(config)


def register(handle, driver_id: str, *, silent_for_s: float) -> None:
    with handle.storage.sessions() as session, session.begin():
        session.add(DriverRecord(id=driver_id, study_id=handle.record_id, host="h", pid=1,
                                 heartbeat_at=utcnow() - timedelta(seconds=silent_for_s)))


def start_trial(handle, driver_id: str, attempt: int = 0) -> tuple[int, int]:
    """A trial as `_launch` leaves it: asked, owned, recorded running."""
    trial = handle.optuna_study.ask()
    x = trial.suggest_int("x", 0, 9)
    trial.set_user_attr("driver_id", driver_id)
    with handle.storage.sessions() as session, session.begin():
        record = TrialRecord(study_id=handle.record_id, number=trial.number, state="running",
                             driver_id=driver_id, params={"x": x}, arch_hash="h",
                             attempt=attempt)
        session.add(record)
        session.flush()
        return trial.number, record.id


def row(handle, number: int) -> TrialRecord:
    with handle.storage.sessions() as session:
        return session.scalar(sa.select(TrialRecord).where(TrialRecord.number == number))


def optuna_trial(handle, number: int) -> optuna.trial.FrozenTrial:
    return handle.optuna_study.get_trials(deepcopy=False)[number]


def waiting(handle) -> list[optuna.trial.FrozenTrial]:
    return handle.optuna_study.get_trials(deepcopy=False, states=(TrialState.WAITING,))


def test_a_result_landing_after_a_takeover_is_dropped(handle):
    slow = Driver(handle)  # alive, but silent past the cutoff: another driver takes over
    register(handle, slow.driver_id, silent_for_s=600)
    number, record_id = start_trial(handle, slow.driver_id)
    assert Driver(handle).recover_stale() == 1
    assert Driver(handle).recover_stale() == 0, "recovered once, re-queued once"

    slow.record_result(
        InFlight(number, record_id, {"x": row(handle, number).params["x"]}, {}),
        TrialResult("complete", metrics={"accuracy": 0.5},
                    profile={"non_embedding_params": 10.0}, seconds=1.0, worker="h:2"),
    )
    late = row(handle, number)
    assert (late.state, late.retried) == ("failed", True)
    assert late.failure_reason.startswith("stale: driver")
    assert optuna_trial(handle, number).state == TrialState.FAIL
    [retry] = waiting(handle)
    assert retry.user_attrs["retry_of"] == number
    assert retry.system_attrs["fixed_params"] == late.params


def test_a_stale_trial_out_of_retries_is_failed_and_not_requeued(handle):
    register(handle, "dead", silent_for_s=600)
    number, _ = start_trial(handle, "dead", attempt=handle.config.max_retries)
    assert Driver(handle).recover_stale() == 1
    failed = row(handle, number)
    assert (failed.state, failed.retried) == ("failed", False)
    assert failed.failure_reason.endswith("(retries used up)")
    assert optuna_trial(handle, number).state == TrialState.FAIL and not waiting(handle)


def test_a_result_written_but_not_told_reaches_optuna(handle):
    register(handle, "dead", silent_for_s=600)
    number, record_id = start_trial(handle, "dead")
    values = {"accuracy": 0.75, "non_embedding_params": 123.0}
    with handle.storage.sessions() as session, session.begin():  # the driver died right after this
        session.execute(sa.update(TrialRecord).where(TrialRecord.id == record_id)
                        .values(state="complete", values=values))
    assert Driver(handle).recover_stale() == 0
    trial = optuna_trial(handle, number)
    assert trial.state == TrialState.COMPLETE and trial.values == [0.75, 123.0]
    assert row(handle, number).state == "complete" and not waiting(handle)


def test_a_trial_being_set_up_is_left_alone_until_it_is_old(handle, monkeypatch):
    trial = handle.optuna_study.ask()  # asked by some driver, not yet marked as its own
    Driver(handle).recover_stale()
    assert optuna_trial(handle, trial.number).state == TrialState.RUNNING
    monkeypatch.setattr(heartbeat, "STALE_AFTER_S", 0.0)
    Driver(handle).recover_stale()
    assert optuna_trial(handle, trial.number).state == TrialState.FAIL


def test_a_live_drivers_trials_are_left_alone(handle):
    register(handle, "live", silent_for_s=0)
    number, _ = start_trial(handle, "live")
    assert Driver(handle).recover_stale() == 0
    assert row(handle, number).state == "running"
    assert optuna_trial(handle, number).state == TrialState.RUNNING

"""Driver heartbeats and stale recovery, apart from the trial loop (as Optuna's `_heartbeat.py`).

Each driver beats a heartbeat into the database every `HEARTBEAT_S` seconds. A driver silent for
`STALE_AFTER_S` is dead: `recover_stale` (run by `resume` and, while waiting, by any live driver)
fails its running trials and queues them again while `max_retries` allows, so that a design that
kills its driver every time does not loop forever.
"""

from __future__ import annotations

import os
import socket
import threading
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from optuna.trial import TrialState

from mixnas.errors import StorageError
from mixnas.orchestrator.trials import retry_attrs
from mixnas.storage import utcnow

if TYPE_CHECKING:
    from mixnas.orchestrator.study import StudyHandle

HEARTBEAT_S = float(os.environ.get("MIXNAS_HEARTBEAT_S", "5"))
STALE_AFTER_S = float(os.environ.get("MIXNAS_STALE_AFTER_S", "30"))


class Heartbeat:
    """A driver's record in the database and the thread that keeps it beating."""

    def __init__(self, handle: StudyHandle, driver_id: str):
        self.storage, self.study_id, self.driver_id = handle.storage, handle.record_id, driver_id
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Register the driver (its study is now running) and start beating."""
        self.storage.register_driver(self.driver_id, self.study_id, socket.gethostname(),
                                     os.getpid())
        self._thread = threading.Thread(target=self._beat, daemon=True, name="mixnas-heartbeat")
        self._thread.start()

    def stop(self) -> None:
        """Stop beating and record that the driver stopped."""
        self._stop.set()
        self.storage.stop_driver(self.driver_id)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self.storage.beat(self.driver_id)
            except StorageError:
                continue  # a busy database delays one beat; the next one will land


def recover_stale(handle: StudyHandle, driver_id: str) -> int:
    """Fail the running trials of drivers that stopped beating, re-queueing those with retries
    left; returns how many.

    Each stale row is claimed by a conditional update, so two drivers recovering at once never
    queue the same parameters twice, and a result that lands late is dropped (see
    `Driver.record_result`) instead of overwriting the failure.

    Args:
        handle: The study.
        driver_id: The recovering driver (its own trials are never stale).
    """
    storage, study = handle.storage, handle.optuna_study
    live = storage.get_live_drivers(handle.record_id, STALE_AFTER_S)
    recovered = 0
    for trial in storage.get_trials(handle.record_id, states=["running"]):
        if trial.driver_id in live:
            continue
        carried = {"baseline": trial.baseline, "parent_trial": trial.parent_trial}
        if trial.baseline:  # a baseline is re-queued by its architecture, not parameters
            carried["arch_json"] = trial.arch_json
        retry = retry_attrs(trial.number, trial.attempt, carried, handle.config.max_retries)
        reason = f"stale: driver {trial.driver_id} stopped beating"
        fields = {
            "state": "failed",
            "failure_reason": reason if retry else f"{reason} (retries used up)",
            "finished_at": utcnow(),
            "retried": retry is not None,
        }
        if not storage.finish_running_trial(trial.id, fields):
            continue  # another driver recovered it first
        if retry is not None:
            study.enqueue_trial(dict(trial.params or {}), user_attrs=retry)
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        recovered += 1
    _settle_orphans(handle, driver_id, live)
    return recovered


def _settle_orphans(handle: StudyHandle, driver_id: str, live: set[str]) -> None:
    """Finish Optuna trials left RUNNING by dead drivers: with the outcome our table already
    holds (the driver died between writing it and telling Optuna), else as failed.

    A trial with no owner yet is being set up by some driver right now (between `ask` and
    `set_user_attr`) unless it is older than the stale cutoff."""
    study = handle.optuna_study
    local_cutoff = datetime.now() - timedelta(seconds=STALE_AFTER_S)  # Optuna's clock is local
    orphans = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.user_attrs.get("driver_id")
        if owner in live or owner == driver_id:
            continue
        if owner is None and trial.datetime_start and trial.datetime_start > local_cutoff:
            continue
        orphans.append(trial.number)
    if not orphans:
        return
    rows = {t.number: t for t in handle.storage.get_trials(handle.record_id, numbers=orphans)}
    names = handle.objective_names()
    for number in orphans:
        row = rows.get(number)
        if row is not None and row.state == "complete" and row.values:
            study.tell(number, [row.values[n] for n in names], skip_if_finished=True)
        elif row is not None and row.state == "pruned":
            study.tell(number, state=TrialState.PRUNED, skip_if_finished=True)
        else:
            study.tell(number, state=TrialState.FAIL, skip_if_finished=True)

"""The storage interface: every read and write of mixnas's own tables, named by what it does.

As Optuna's `BaseStorage` does for its trials, this class says what a study database must answer;
`RDBStorage` (rdb.py) answers it with SQLAlchemy. Callers (the orchestrator, the CLI, promote, the
dashboard and export) see records (models.py; detached snapshots: reading them is safe, changing
them changes nothing) and mixnas's own errors, never a session or a query.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from mixnas.storage.models import (
    TRIAL_STATES,
    CurvePoint,
    DesignClaim,
    StudyRecord,
    TrialRecord,
    TrialWeights,
)


@dataclass
class TrialCounts:
    """A study's trials by state, and how many count towards its target."""

    complete: int = 0
    running: int = 0
    failed: int = 0
    pruned: int = 0
    infeasible: int = 0
    done: int = 0  # terminal trials and failures with no retry queued (a retry will count)

    def by_state(self) -> dict[str, int]:
        """{state: count} in `TRIAL_STATES` order."""
        return {state: getattr(self, state) for state in TRIAL_STATES}


class TrialSummary(NamedTuple):
    """The columns of a trial that tables and plots need (no metrics, curve or weights)."""

    number: int
    state: str
    baseline: str | None
    arch_json: str | None
    arch_hash: str | None
    started_at: datetime
    finished_at: datetime | None
    params: dict | None  # the sampler's decisions (Optuna parameters)
    duplicate_of: int | None  # the trial whose result this one reused
    values: dict


class BaseStorage(abc.ABC):
    """What a study database answers; every method raises `StorageError` when it cannot reach
    the database."""

    # -- studies -------------------------------------------------------------------------------

    @abc.abstractmethod
    def create_study(self, name: str, config: dict[str, Any], *, objectives: list[dict[str, str]],
                     target_trials: int, config_path: str | None = None,
                     parent_study: str | None = None) -> int:
        """Record a new study.

        Args:
            name: The study's name (unique in the database).
            config: The resolved study config as plain JSON.
            objectives: `[{"name": ..., "direction": "minimize" | "maximize"}]`.
            target_trials: How many trials the study aims for.
            config_path: The study file it came from.
            parent_study: The study that promote scaled this one from.

        Returns:
            The study's id.

        Raises:
            StudyExists: The name is taken.
        """

    @abc.abstractmethod
    def get_study(self, name: str) -> StudyRecord:
        """The study named `name`.

        Args:
            name: The study's name.

        Returns:
            Its record.

        Raises:
            StudyNotFound: No such study; the message lists the studies there are.
        """

    @abc.abstractmethod
    def get_study_by_id(self, study_id: int) -> StudyRecord:
        """The study with id `study_id`.

        Args:
            study_id: The study.

        Returns:
            Its record.

        Raises:
            StudyNotFound: No such study.
        """

    @abc.abstractmethod
    def get_all_studies(self) -> list[StudyRecord]:
        """Every study in the database.

        Returns:
            Their records, oldest first ([] for a database with none).
        """

    @abc.abstractmethod
    def set_study_state(self, study_id: int, state: str) -> None:
        """Set a study's state.

        Args:
            study_id: The study.
            state: running, finished or stopped.
        """

    @abc.abstractmethod
    def set_study_target(self, study_id: int, n_trials: int) -> None:
        """Set a study's target number of trials, in its record and its stored config.

        Args:
            study_id: The study.
            n_trials: The new target.
        """

    @abc.abstractmethod
    def count_trials(self, study_id: int) -> TrialCounts:
        """Count a study's trials.

        Args:
            study_id: The study.

        Returns:
            The counts by state, and how many count towards the target.
        """

    # -- trials --------------------------------------------------------------------------------

    @abc.abstractmethod
    def add_trial(self, record: TrialRecord) -> int:
        """Insert a trial row.

        Args:
            record: The new row (`study_id`, `number`, `state`, ...); its `id` is set.

        Returns:
            The row's id.
        """

    @abc.abstractmethod
    def add_trials(self, study_id: int, trials: Sequence[dict[str, Any]],
                   curves: Sequence[Sequence[dict[str, Any]]]) -> list[int]:
        """Insert many finished trials at once, each with its learning curve.

        Args:
            study_id: The study they belong to.
            trials: Column values of each trial (`number`, `state`, `values`, ...).
            curves: Per trial, its curve points (`step`, `tokens`, `train_loss`, `metrics`, `rung`).

        Returns:
            The trials' ids, in order.
        """

    @abc.abstractmethod
    def get_trial(self, study_id: int, number: int) -> TrialRecord | None:
        """One trial of a study.

        Args:
            study_id: The study.
            number: The trial's number in the study.

        Returns:
            Its record, or None when the study has no such trial.
        """

    @abc.abstractmethod
    def get_trial_by_id(self, trial_id: int) -> TrialRecord | None:
        """One trial by its row id.

        Args:
            trial_id: The trial row.

        Returns:
            Its record, or None.
        """

    @abc.abstractmethod
    def get_trials(self, study_id: int, *, states: Iterable[str] | None = None,
                   numbers: Iterable[int] | None = None) -> list[TrialRecord]:
        """A study's trials.

        Args:
            study_id: The study.
            states: Only trials in these states (all when None).
            numbers: Only trials with these numbers (all when None).

        Returns:
            Their records by number.
        """

    @abc.abstractmethod
    def get_trial_summaries(self, study_id: int) -> list[TrialSummary]:
        """A study's trials, with only the columns tables and plots need.

        Args:
            study_id: The study.

        Returns:
            One summary per trial, by number.
        """

    @abc.abstractmethod
    def get_trial_fingerprint(self, study_id: int) -> tuple:
        """What changes whenever a trial is added, changes state or finishes: a cheap cache key.

        Args:
            study_id: The study.

        Returns:
            Per state (sorted): (state, count, max id, max started_at, max finished_at).
        """

    @abc.abstractmethod
    def get_first_result(self, study_id: int, arch_hash: str) -> TrialRecord | None:
        """The trial that trained a design first.

        Args:
            study_id: The study.
            arch_hash: The design (`Architecture.hash`).

        Returns:
            The earliest complete trial of the design that trained it (not a reuse), or None.
        """

    @abc.abstractmethod
    def get_pareto_trials(self, study_id: int,
                          objectives: list[dict[str, str]]) -> list[TrialRecord]:
        """The study's Pareto front by `mixnas.pareto.front`: one trial per distinct design.

        Args:
            study_id: The study.
            objectives: `[{"name", "direction"}]`, the axes of the front.

        Returns:
            The front's trials by number.
        """

    @abc.abstractmethod
    def update_trial(self, trial_id: int, **fields: Any) -> None:
        """Set columns of a trial row.

        Args:
            trial_id: The trial row.
            **fields: Column values: a worker's host, its up-front costs, ...
        """

    @abc.abstractmethod
    def finish_running_trial(self, trial_id: int, fields: dict[str, Any],
                             weights: tuple[int, bytes] | None = None) -> bool:
        """Write a trial's outcome, only while its row is still `running`.

        Args:
            trial_id: The trial row.
            fields: Columns to set (`state`, `values`, `metrics`, ...).
            weights: (vocabulary size, safetensors bytes) to keep with it, in the same transaction.

        Returns:
            Whether the row was still running (False: another driver took the trial over as
            stale and its outcome stands).
        """

    # -- learning curves -----------------------------------------------------------------------

    @abc.abstractmethod
    def add_curve_point(self, trial_id: int, *, step: int, tokens: int, train_loss: float | None,
                        metrics: dict[str, float] | None, rung: int | None) -> None:
        """Append one evaluation to a trial's learning curve.

        Args:
            trial_id: The trial row.
            step: Training steps so far.
            tokens: Training tokens so far.
            train_loss: The training loss then, if known.
            metrics: The task metrics measured then.
            rung: The rung index when this evaluation is a pruning rung, else None.
        """

    @abc.abstractmethod
    def get_curve(self, trial_id: int) -> list[CurvePoint]:
        """A trial's learning curve.

        Args:
            trial_id: The trial row.

        Returns:
            Its points by step.
        """

    @abc.abstractmethod
    def get_rung_standings(self, study_id: int, rung: int) -> list[tuple[int, dict | None,
                                                                          dict | None]]:
        """Every trial that reported at a pruning rung.

        Args:
            study_id: The study.
            rung: The rung index.

        Returns:
            (trial number, profile, metrics) per trial.
        """

    # -- weights -------------------------------------------------------------------------------

    @abc.abstractmethod
    def get_weights(self, trial: TrialRecord) -> TrialWeights | None:
        """A trial's kept weights.

        Args:
            trial: The trial; one that reused another's result has that trial's weights.

        Returns:
            The weights, or None when none were kept.
        """

    @abc.abstractmethod
    def get_weights_vocab_size(self, trial_id: int) -> int | None:
        """The vocabulary size of a trial's kept weights.

        Args:
            trial_id: The trial row.

        Returns:
            The size, or None when the trial has no weights.
        """

    @abc.abstractmethod
    def get_study_vocab_size(self, study_id: int) -> int | None:
        """The vocabulary size of any weights the study kept (one task per study).

        Args:
            study_id: The study.

        Returns:
            The size, or None when it kept none.
        """

    @abc.abstractmethod
    def drop_weights_except(self, study_id: int, keep: Iterable[int]) -> None:
        """Delete kept weights.

        Args:
            study_id: The study.
            keep: The trial numbers whose weights stay.
        """

    # -- drivers -------------------------------------------------------------------------------

    @abc.abstractmethod
    def register_driver(self, driver_id: str, study_id: int, host: str, pid: int) -> None:
        """Record a driver process that starts working on a study; the study is then running.

        Args:
            driver_id: The driver's id.
            study_id: The study.
            host: Where it runs.
            pid: Its process id.
        """

    @abc.abstractmethod
    def beat(self, driver_id: str) -> None:
        """Record a driver's heartbeat now.

        Args:
            driver_id: The driver's id.
        """

    @abc.abstractmethod
    def stop_driver(self, driver_id: str) -> None:
        """Record that a driver stopped; it will not beat again.

        Args:
            driver_id: The driver's id.
        """

    @abc.abstractmethod
    def get_live_drivers(self, study_id: int, stale_after_s: float) -> set[str]:
        """The study's drivers that are alive.

        Args:
            study_id: The study.
            stale_after_s: A driver silent for longer is taken for dead.

        Returns:
            Ids of the drivers that beat within `stale_after_s` and have not stopped.
        """

    # -- designs being trained -----------------------------------------------------------------

    @abc.abstractmethod
    def claim_design(self, study_id: int, arch_hash: str, trial_id: int,
                     driver_id: str | None = None) -> bool:
        """Claim a design for a trial while it trains, so no other trial trains it at once.

        Args:
            study_id: The study.
            arch_hash: The design (`Architecture.hash`).
            trial_id: The trial that trains it.
            driver_id: The driver that runs the trial.

        Returns:
            True if the claim is ours, False if another trial of the study holds it.
        """

    @abc.abstractmethod
    def get_design_claim(self, study_id: int, arch_hash: str) -> DesignClaim | None:
        """The claim on a design.

        Args:
            study_id: The study.
            arch_hash: The design (`Architecture.hash`).

        Returns:
            The claim, or None when no trial is training the design.
        """

    @abc.abstractmethod
    def release_design(self, study_id: int, arch_hash: str, holder: str | None = None) -> bool:
        """Drop the claim on design `arch_hash` (its trial finished, or its driver died).

        Args:
            holder: Drop it only while this driver holds it (two drivers taking over a dead
                driver's claim at once must not drop each other's).

        Returns:
            Whether a claim was dropped.
        """

"""`RDBStorage`: the storage interface over SQLAlchemy (SQLite or PostgreSQL).

Each method is one short transaction; SQLAlchemy's errors leave as mixnas's (`StorageError`,
`StudyNotFound`, `StudyExists`). Three ways to open a database: `create` makes or upgrades the
schema (a study starts), `existing` needs mixnas's tables already there and upgrades them (resume,
status, export, workers), `read_only` writes nothing at all (the dashboard).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DatabaseError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from mixnas import pareto
from mixnas.errors import StorageError, StudyExists, StudyNotFound
from mixnas.storage import migrations
from mixnas.storage.base import BaseStorage, TrialCounts, TrialSummary
from mixnas.storage.engine import (
    database_exists,
    get_engine,
    has_table,
    read_only_engine,
    reason,
    safe_url,
)
from mixnas.storage.models import (
    TERMINAL_STATES,
    CurvePoint,
    DesignClaim,
    DriverRecord,
    StudyRecord,
    TrialRecord,
    TrialWeights,
    utcnow,
)

MODES = ("create", "existing", "read_only")


class RDBStorage(BaseStorage):
    """mixnas's tables in a SQL database (the one Optuna's RDBStorage uses too).

    Args:
        url: An SQLAlchemy URL (`sqlite:///mixnas.db`, `postgresql+psycopg://user@host/db`).
        mode: "create" (make or upgrade the schema), "existing" (the tables must exist; upgrade
            them) or "read_only" (write nothing; refuse a schema older than this mixnas's).

    Raises:
        StorageError: A bad URL, an unreachable database, a schema newer than this mixnas, or
            (not "create") no mixnas tables there.
        ValueError: (read_only) an in-memory or missing SQLite file, or no mixnas tables.
    """

    def __init__(self, url: str, mode: str = "create"):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.url, self.mode = url, mode
        self.engine = read_only_engine(url) if mode == "read_only" else get_engine(url)
        try:
            if mode == "read_only":
                self._check_readable()
            else:
                self._prepare(create=mode == "create")
        except DatabaseError as exc:  # not a database, a damaged one, a read-only one, ...
            raise StorageError(f"storage '{safe_url(url)}': {reason(exc)}") from None
        # For storage code and tests that need SQL; everyone else calls the methods below.
        self.sessions: sessionmaker[Session] = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        """Close the database connections (SQLite folds its write-ahead log into the file)."""
        self.engine.dispose()

    @staticmethod
    def exists(url: str) -> bool:
        """Whether `url` points at a database that holds mixnas's tables (creating nothing)."""
        return database_exists(url, StudyRecord.__tablename__)

    def _prepare(self, create: bool) -> None:
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            if not create and not has_table(self.engine, StudyRecord.__tablename__, self.url):
                raise StorageError(f"no mixnas database at {safe_url(self.url)}")
            migrations.upgrade(self.engine)
        except DatabaseError as exc:
            where = safe_url(self.url)
            raise StorageError(f"cannot reach storage '{where}': {reason(exc)}") from None

    def _check_readable(self) -> None:
        table = StudyRecord.__tablename__
        if not sa.inspect(self.engine).has_table(table):
            raise ValueError(f"{self.url}: no {table} table; is it a mixnas database?")
        current, head = migrations.current_revision(self.engine), migrations.head_revision()
        if current is not None and current != head and current in migrations.known_revisions():
            raise StorageError(
                f"{safe_url(self.url)}: its mixnas schema (revision {current}) is older than this "
                f"mixnas's ({head}); upgrade it with `mixnas study list --storage URL`"
            )

    @contextlib.contextmanager
    def _session(self, write: bool = False) -> Iterator[Session]:
        """A session (in a transaction when writing); SQLAlchemy's errors leave as ours."""
        try:
            with self.sessions() as session:
                if write:
                    with session.begin():
                        yield session
                else:
                    yield session
        except IntegrityError:
            raise  # a constraint the caller checks for (a name taken, a design claimed)
        except DatabaseError as exc:
            raise StorageError(f"storage '{safe_url(self.url)}': {reason(exc)}") from None

    # -- studies -------------------------------------------------------------------------------

    def create_study(self, name, config, *, objectives, target_trials, config_path=None,
                     parent_study=None):
        record = StudyRecord(name=name, config=config, config_path=config_path,
                             objectives=objectives, target_trials=target_trials, state="running",
                             parent_study=parent_study)
        taken = StudyExists(f"study '{name}' already exists in {safe_url(self.url)}")
        try:
            with self._session(write=True) as session:
                if session.scalar(sa.select(StudyRecord.id).where(StudyRecord.name == name)):
                    raise taken
                session.add(record)
        except IntegrityError:  # created by another process between the check and the insert
            raise taken from None
        return record.id

    def get_study(self, name):
        with self._session() as session:
            record = session.scalar(sa.select(StudyRecord).where(StudyRecord.name == name))
            if record is not None:
                return record
            known = session.scalars(sa.select(StudyRecord.name).order_by(StudyRecord.name)).all()
        listing = f"; studies there: {', '.join(known)}" if known else "; it has no studies"
        raise StudyNotFound(f"no study named '{name}' in {self.url}{listing}")

    def get_study_by_id(self, study_id):
        with self._session() as session:
            record = session.get(StudyRecord, study_id)
        if record is None:
            raise StudyNotFound(f"no study with id {study_id} in {safe_url(self.url)}")
        return record

    def get_all_studies(self):
        with self._session() as session:
            query = sa.select(StudyRecord).order_by(StudyRecord.created_at, StudyRecord.id)
            return list(session.scalars(query))

    def set_study_state(self, study_id, state):
        with self._session(write=True) as session:
            session.get(StudyRecord, study_id).state = state

    def set_study_target(self, study_id, n_trials):
        with self._session(write=True) as session:
            record = session.get(StudyRecord, study_id)
            record.target_trials = n_trials
            record.config = {**record.config, "n_trials": n_trials}

    def count_trials(self, study_id):
        with self._session() as session:
            rows = session.execute(
                sa.select(TrialRecord.state, TrialRecord.retried, sa.func.count())
                .where(TrialRecord.study_id == study_id)
                .group_by(TrialRecord.state, TrialRecord.retried)
            ).all()
        counts = TrialCounts()
        for state, retried, n in rows:
            setattr(counts, state, getattr(counts, state) + n)
            if state in TERMINAL_STATES or (state == "failed" and not retried):
                counts.done += n
        return counts

    # -- trials --------------------------------------------------------------------------------

    def add_trial(self, record):
        with self._session(write=True) as session:
            session.add(record)
        return record.id

    def add_trials(self, study_id, trials, curves):
        with self._session(write=True) as session:
            ids = session.scalars(
                sa.insert(TrialRecord).returning(TrialRecord.id),
                [dict(t, study_id=study_id) for t in trials],
            ).all()
            points = [dict(p, trial_id=i) for i, curve in zip(ids, curves) for p in curve]
            if points:
                session.execute(sa.insert(CurvePoint), points)
        return list(ids)

    def get_trial(self, study_id, number):
        with self._session() as session:
            return session.scalar(
                sa.select(TrialRecord).where(
                    TrialRecord.study_id == study_id, TrialRecord.number == number
                )
            )

    def get_trial_by_id(self, trial_id):
        with self._session() as session:
            return session.get(TrialRecord, trial_id)

    def get_trials(self, study_id, *, states=None, numbers=None):
        query = sa.select(TrialRecord).where(TrialRecord.study_id == study_id)
        if states is not None:
            query = query.where(TrialRecord.state.in_(list(states)))
        if numbers is not None:
            query = query.where(TrialRecord.number.in_(list(numbers)))
        with self._session() as session:
            return list(session.scalars(query.order_by(TrialRecord.number)))

    def get_trial_summaries(self, study_id):
        columns = [getattr(TrialRecord, name) for name in TrialSummary._fields]
        with self._session() as session:
            rows = session.execute(
                sa.select(*columns)
                .where(TrialRecord.study_id == study_id)
                .order_by(TrialRecord.number)
            ).all()
        return [TrialSummary(*row[:-1], row[-1] or {}) for row in rows]

    def get_trial_fingerprint(self, study_id):
        with self._session() as session:
            return tuple(
                tuple(group)
                for group in session.execute(
                    sa.select(
                        TrialRecord.state,
                        sa.func.count(),
                        sa.func.max(TrialRecord.id),
                        sa.func.max(TrialRecord.started_at),
                        sa.func.max(TrialRecord.finished_at),
                    )
                    .where(TrialRecord.study_id == study_id)
                    .group_by(TrialRecord.state)
                    .order_by(TrialRecord.state)
                )
            )

    def get_first_result(self, study_id, arch_hash):
        with self._session() as session:
            return session.scalars(
                sa.select(TrialRecord)
                .where(
                    TrialRecord.study_id == study_id,
                    TrialRecord.arch_hash == arch_hash,
                    TrialRecord.state == "complete",
                    TrialRecord.duplicate_of.is_(None),
                )
                .order_by(TrialRecord.number)
                .limit(1)
            ).first()

    def get_pareto_trials(self, study_id, objectives):
        trials = self.get_trials(study_id, states=["complete"])
        names = [o["name"] for o in objectives]
        points = pareto.scored(((t.number, t.arch_hash, t.values) for t in trials), names)
        members = {p.number for p in pareto.front(points, [o["direction"] for o in objectives])}
        return [t for t in trials if t.number in members]

    def update_trial(self, trial_id, **fields):
        with self._session(write=True) as session:
            session.execute(
                sa.update(TrialRecord).where(TrialRecord.id == trial_id).values(**fields)
            )

    def finish_running_trial(self, trial_id, fields, weights=None):
        with self._session(write=True) as session:
            owned = session.execute(
                sa.update(TrialRecord)
                .where(TrialRecord.id == trial_id, TrialRecord.state == "running")
                .values(**fields)
            ).rowcount
            if owned and weights is not None:
                vocab_size, data = weights
                session.merge(TrialWeights(trial_id=trial_id, vocab_size=vocab_size, data=data))
        return bool(owned)

    # -- learning curves -----------------------------------------------------------------------

    def add_curve_point(self, trial_id, *, step, tokens, train_loss, metrics, rung):
        with self._session(write=True) as session:
            session.add(CurvePoint(trial_id=trial_id, step=step, tokens=tokens,
                                   train_loss=train_loss, metrics=metrics, rung=rung))

    def get_curve(self, trial_id):
        with self._session() as session:
            query = sa.select(CurvePoint).where(CurvePoint.trial_id == trial_id)
            return list(session.scalars(query.order_by(CurvePoint.step)))

    def get_rung_standings(self, study_id, rung):
        with self._session() as session:
            rows = session.execute(
                sa.select(TrialRecord.number, TrialRecord.profile, CurvePoint.metrics)
                .join(CurvePoint, CurvePoint.trial_id == TrialRecord.id)
                .where(TrialRecord.study_id == study_id, CurvePoint.rung == rung)
            ).all()
        return [tuple(row) for row in rows]

    # -- weights -------------------------------------------------------------------------------

    def get_weights(self, trial):
        with self._session() as session:
            weights = session.get(TrialWeights, trial.id)
            if weights is None and trial.duplicate_of is not None:  # trained once, as that trial
                weights = session.scalar(
                    sa.select(TrialWeights)
                    .join(TrialRecord, TrialRecord.id == TrialWeights.trial_id)
                    .where(TrialRecord.study_id == trial.study_id,
                           TrialRecord.number == trial.duplicate_of)
                )
            return weights

    def get_weights_vocab_size(self, trial_id):
        with self._session() as session:
            return session.scalar(
                sa.select(TrialWeights.vocab_size).where(TrialWeights.trial_id == trial_id)
            )

    def get_study_vocab_size(self, study_id):
        with self._session() as session:
            return session.scalar(
                sa.select(TrialWeights.vocab_size)
                .join(TrialRecord, TrialRecord.id == TrialWeights.trial_id)
                .where(TrialRecord.study_id == study_id)
                .limit(1)
            )

    def drop_weights_except(self, study_id, keep):
        off_front = sa.select(TrialRecord.id).where(
            TrialRecord.study_id == study_id, TrialRecord.number.not_in(list(keep))
        )
        with self._session(write=True) as session:
            session.execute(sa.delete(TrialWeights).where(TrialWeights.trial_id.in_(off_front)))

    # -- drivers -------------------------------------------------------------------------------

    def register_driver(self, driver_id, study_id, host, pid):
        with self._session(write=True) as session:
            session.add(DriverRecord(id=driver_id, study_id=study_id, host=host, pid=pid))
            session.get(StudyRecord, study_id).state = "running"

    def beat(self, driver_id):
        self._update_driver(driver_id, heartbeat_at=utcnow())

    def stop_driver(self, driver_id):
        self._update_driver(driver_id, stopped_at=utcnow())

    def _update_driver(self, driver_id: str, **fields: Any) -> None:
        with self._session(write=True) as session:
            session.execute(
                sa.update(DriverRecord).where(DriverRecord.id == driver_id).values(**fields)
            )

    def get_live_drivers(self, study_id, stale_after_s):
        cutoff = utcnow() - timedelta(seconds=stale_after_s)
        with self._session() as session:
            return set(session.scalars(
                sa.select(DriverRecord.id).where(
                    DriverRecord.study_id == study_id,
                    DriverRecord.stopped_at.is_(None),
                    DriverRecord.heartbeat_at >= cutoff,
                )
            ))

    # -- designs being trained -----------------------------------------------------------------

    def claim_design(self, study_id, arch_hash, trial_id, driver_id=None):
        claim = DesignClaim(study_id=study_id, arch_hash=arch_hash, trial_id=trial_id,
                            driver_id=driver_id)
        try:
            with self._session(write=True) as session:
                session.add(claim)
        except IntegrityError:
            return False
        return True

    def get_design_claim(self, study_id, arch_hash):
        with self._session() as session:
            return session.get(DesignClaim, (study_id, arch_hash))

    def release_design(self, study_id, arch_hash, holder=None):
        where = [DesignClaim.study_id == study_id, DesignClaim.arch_hash == arch_hash]
        if holder is not None:
            where.append(DesignClaim.driver_id == holder)
        with self._session(write=True) as session:
            return session.execute(sa.delete(DesignClaim).where(*where)).rowcount > 0


"""A study: an Optuna multi-objective study plus mixnas's record of it, in one database."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any

import optuna
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from mixnas.errors import StudyExists, StudyNotFound
from mixnas.orchestrator.config import StudyConfig
from mixnas.orchestrator.models import StudyRecord, TrialRecord
from mixnas.orchestrator.storage import connect, exists

optuna.logging.set_verbosity(logging.WARNING)
# set_metric_names is marked experimental but is what optuna-dashboard reads objective names from.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

TERMINAL_STATES = ("complete", "pruned", "infeasible")


def make_sampler(config: StudyConfig) -> optuna.samplers.BaseSampler:
    options = dict(config.sampler_options)
    if config.sampler == "nsga2":
        options.setdefault("population_size", max(4, min(50, config.n_trials // 4)))
        return optuna.samplers.NSGAIISampler(seed=config.seed, **options)
    if config.sampler == "tpe":
        # Grouped multivariate TPE models each set of decisions that occur together, which suits
        # a conditional grammar and is not derailed by baselines that have no grammar decisions
        # (benchmarks/results/search_efficiency*.json: the default on that evidence).
        options.setdefault("multivariate", True)
        options.setdefault("group", True)
        options.setdefault("n_startup_trials", max(4, min(10, config.n_trials // 4)))
        return optuna.samplers.TPESampler(seed=config.seed, **options)
    return optuna.samplers.RandomSampler(seed=config.seed)


def optuna_storage(url: str) -> optuna.storages.RDBStorage:
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 30}}
    else:
        kwargs["engine_kwargs"] = {"pool_pre_ping": True}
    return optuna.storages.RDBStorage(url, **kwargs)


@dataclass
class StudyHandle:
    """Everything a driver or a command needs to work on one study."""

    config: StudyConfig
    record_id: int
    sessions: sessionmaker[Session]
    optuna_study: optuna.Study

    @property
    def name(self) -> str:
        return self.config.name

    def objective_names(self) -> list[str]:
        return [o.name for o in self.config.objectives]


def create_study(config: StudyConfig) -> StudyHandle:
    """Create a new study; refuses (StudyExists) if the name is taken in this storage."""
    sessions = connect(config.storage)
    with sessions() as session:
        if session.scalar(sa.select(StudyRecord.id).where(StudyRecord.name == config.name)):
            raise StudyExists(
                f"study '{config.name}' already exists in {config.storage}; continue it with "
                f"`mixnas study resume {config.name} --storage {config.storage}` "
                "or choose another name"
            )
    storage = optuna_storage(config.storage)
    try:
        study = optuna.create_study(
            study_name=config.name,
            storage=storage,
            directions=[o.direction for o in config.objectives],
            sampler=make_sampler(config),
        )
    except optuna.exceptions.DuplicatedStudyError:
        raise StudyExists(
            f"an Optuna study named '{config.name}' already exists in {config.storage}"
        ) from None
    study.set_metric_names([o.name for o in config.objectives])
    with sessions() as session, session.begin():
        record = StudyRecord(
            name=config.name,
            config=config.to_dict(),
            config_path=config.source,
            objectives=[o.to_dict() for o in config.objectives],
            target_trials=config.n_trials,
            state="running",
        )
        session.add(record)
        session.flush()
        record_id = record.id
    return StudyHandle(config, record_id, sessions, study)


def load_study(name: str, storage: str) -> StudyHandle:
    sessions = _connect_existing(name, storage)
    with sessions() as session:
        record = session.scalar(sa.select(StudyRecord).where(StudyRecord.name == name))
        if record is None:
            known = session.scalars(sa.select(StudyRecord.name).order_by(StudyRecord.name)).all()
            listing = f"; studies there: {', '.join(known)}" if known else "; it has no studies"
            raise StudyNotFound(f"no study named '{name}' in {storage}{listing}")
        config = StudyConfig.from_dict(record.config)
        config.storage = storage
        record_id = record.id
    study = optuna.load_study(
        study_name=name, storage=optuna_storage(storage), sampler=make_sampler(config)
    )
    return StudyHandle(config, record_id, sessions, study)


def list_studies(storage: str) -> list[dict[str, Any]]:
    if not exists(storage):  # reading must not create a database
        return []
    sessions = connect(storage)
    with sessions() as session:
        records = session.scalars(sa.select(StudyRecord).order_by(StudyRecord.created_at)).all()
        return [study_status(session, r) for r in records]


def _connect_existing(name: str, storage: str) -> sessionmaker[Session]:
    """Open a database that already holds mixnas's tables; never create one to look a study up."""
    if not exists(storage):
        raise StudyNotFound(f"no study named '{name}' in {storage}: no mixnas database there")
    return connect(storage)


def study_status(session: Session, record: StudyRecord) -> dict[str, Any]:
    counts = dict(
        session.execute(
            sa.select(TrialRecord.state, sa.func.count())
            .where(TrialRecord.study_id == record.id)
            .group_by(TrialRecord.state)
        ).all()
    )
    return {
        "name": record.name,
        "state": record.state,
        "objectives": [{"name": o["name"], "direction": o["direction"]} for o in record.objectives],
        "target_trials": record.target_trials,
        "trials": {
            state: int(counts.get(state, 0))
            for state in ("complete", "running", "failed", "pruned", "infeasible")
        },
        "created_at": record.created_at.isoformat(timespec="seconds"),
    }


def status(name: str, storage: str) -> dict[str, Any]:
    sessions = _connect_existing(name, storage)
    with sessions() as session:
        record = session.scalar(sa.select(StudyRecord).where(StudyRecord.name == name))
        if record is None:
            raise StudyNotFound(f"no study named '{name}' in {storage}")
        return study_status(session, record)


def pareto_front(handle: StudyHandle) -> list[dict[str, Any]]:
    """Optuna's Pareto front, joined with our architecture records, one entry per architecture:
    a trial that reused an earlier trial's result is left out, since that trial is listed."""
    best = handle.optuna_study.best_trials
    numbers = [t.number for t in best]
    with handle.sessions() as session:
        records = {
            r.number: r
            for r in session.scalars(
                sa.select(TrialRecord).where(
                    TrialRecord.study_id == handle.record_id, TrialRecord.number.in_(numbers)
                )
            )
        }
    names = handle.objective_names()
    front = []
    for trial in sorted(best, key=lambda t: t.number):
        record = records.get(trial.number)
        if record is not None and record.duplicate_of is not None:
            continue
        front.append(
            {
                "trial": trial.number,
                "values": dict(zip(names, trial.values)),
                "arch_hash": record.arch_hash if record else None,
                "architecture": _arch_dict(record),
                "baseline": record.baseline if record else None,
            }
        )
    return front


def _arch_dict(record: TrialRecord | None) -> dict[str, Any] | None:
    import json

    if record is None or record.arch_json is None:
        return None
    return json.loads(record.arch_json)

"""A study: an Optuna multi-objective study plus mixnas's record of it, in one database."""

from __future__ import annotations

import difflib
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from mixnas.errors import StudyExists, StudyNotFound
from mixnas.orchestrator.config import StudyConfig
from mixnas.orchestrator.models import StudyRecord, TrialRecord
from mixnas.orchestrator.storage import connect, exists
from mixnas.orchestrator.warm_start import WarmSource, WarmTrial, values_by_name

optuna.logging.set_verbosity(logging.WARNING)
# set_metric_names is marked experimental but is what optuna-dashboard reads objective names from.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

TERMINAL_STATES = ("complete", "pruned", "infeasible")


def make_sampler(config: StudyConfig,
                 warm: Sequence[WarmSource] = ()) -> optuna.samplers.BaseSampler:
    """The study's sampler with the defaults its `n_trials` calls for.

    Args:
        config: the study config (`sampler`, `sampler_options`, `n_trials`, `seed`).
        warm: earlier studies the surrogate sampler learns from (other samplers ignore them).

    Raises:
        ValueError: bad `sampler_options` for the surrogate sampler.
    """
    options = dict(config.sampler_options)
    if config.sampler == "surrogate":
        return _surrogate_sampler(config, warm)
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


def _surrogate_sampler(config: StudyConfig, warm: Sequence[WarmSource]):
    from dataclasses import replace

    from mixnas.evaluator.profiler import resolve_profile
    from mixnas.orchestrator.surrogate import SurrogateOptions, SurrogateSampler
    from mixnas.search_space.grammar import Grammar

    options = SurrogateOptions.from_dict(config.sampler_options)
    inner = make_sampler(replace(config, sampler="tpe", sampler_options=options.inner_options))
    return SurrogateSampler(
        Grammar.load(config.search_space), [(o.name, o.direction) for o in config.objectives],
        options, inner, seed=config.seed, warm=warm,
        context_length=resolve_profile(config.profile)["context_length"],
    )


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
    warm: list[WarmSource] = field(default_factory=list)  # earlier studies it learns from

    @property
    def name(self) -> str:
        return self.config.name

    def objective_names(self) -> list[str]:
        return [o.name for o in self.config.objectives]


def create_study(config: StudyConfig, warm: Sequence[WarmSource] = ()) -> StudyHandle:
    """Create a new study; refuses (StudyExists) if the name is taken in this storage.

    Args:
        config: the validated study config.
        warm: its warm-start studies, loaded (and checked) by `load_warm_sources` beforehand.
    """
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
            sampler=make_sampler(config, warm),
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
    return StudyHandle(config, record_id, sessions, study, list(warm))


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
    warm = load_warm_sources(storage, config.warm_start, missing_ok=True)
    study = optuna.load_study(
        study_name=name, storage=optuna_storage(storage), sampler=make_sampler(config, warm)
    )
    return StudyHandle(config, record_id, sessions, study, warm)


def load_warm_sources(storage: str, names: Sequence[str], *,
                      missing_ok: bool = False) -> list[WarmSource]:
    """The complete trials of the studies `names` in `storage`, to warm-start another study.

    Reads only: a storage without mixnas's tables is never created here.

    Args:
        storage: the SQLAlchemy URL both studies live in.
        names: earlier study names.
        missing_ok: skip names that are not there (a resumed study whose source was deleted).

    Returns:
        One WarmSource per study found, in the order of `names`.

    Raises:
        StudyNotFound: a study is not there (unless missing_ok).
    """
    if not names:
        return []
    if not exists(storage):
        if missing_ok:
            return []
        raise StudyNotFound(f"warm_start: no study named '{names[0]}' in {storage}: "
                            "no mixnas database there")
    out = []
    with connect(storage)() as session:
        for name in names:
            record = session.scalar(sa.select(StudyRecord).where(StudyRecord.name == name))
            if record is None:
                if missing_ok:
                    continue
                known = session.scalars(sa.select(StudyRecord.name).order_by(StudyRecord.name))
                hint = difflib.get_close_matches(name, list(known), n=1)
                suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
                raise StudyNotFound(f"warm_start: no study named '{name}' in {storage}"
                                    f"{suggestion}")
            out.append(_warm_source(session, record))
    return out


def _warm_source(session: Session, record: StudyRecord) -> WarmSource:
    objectives = [(o["name"], o["direction"]) for o in record.objectives]
    names = [n for n, _ in objectives]
    rows = session.execute(
        sa.select(TrialRecord.arch_json, TrialRecord.params, TrialRecord.values)
        .where(TrialRecord.study_id == record.id, TrialRecord.state == "complete",
               TrialRecord.duplicate_of.is_(None), TrialRecord.arch_json.is_not(None))
        .order_by(TrialRecord.number)
    ).all()
    trials = [WarmTrial(arch, dict(params or {}), values_by_name(names, values))
              for arch, params, values in rows]
    return WarmSource(record.name, objectives, [t for t in trials if t.values])


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

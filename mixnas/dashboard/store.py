"""Read-only access to the study database: SELECT statements over the mixnas tables, shaped into
the plain (JSON-ready) data the dashboard serves.

SQLite files are opened with `mode=ro`, and a PostgreSQL session is made read-only, so a bug here
cannot damage a running study. Heavy per-row work (parsing architectures) is cached by content.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import create_engine, func, inspect, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session
from sqlalchemy.pool import QueuePool

from mixnas.orchestrator.models import CurvePoint, StudyRecord, TrialRecord, TrialWeights

STATES = ("running", "complete", "failed", "pruned", "infeasible")
# A trial written in a transaction that commits after a poll can carry an earlier timestamp than
# that poll's cursor; answering `since` with this much overlap keeps such trials from being missed.
CURSOR_OVERLAP = timedelta(seconds=10)


class NotFound(LookupError):
    """An unknown study or trial (the app answers 404)."""


def read_only_engine(storage_url: str) -> Engine:
    url = make_url(storage_url)
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            raise ValueError(f"{storage_url}: the dashboard needs a SQLite file, not memory")
        path = Path(url.database).resolve()
        if not path.is_file():
            raise ValueError(f"{storage_url}: no database file at {path}")
        uri = f"{path.as_uri()}?mode=ro"
        return create_engine(
            "sqlite://",
            # the timeout waits out a writer's lock on rollback-journal (non-WAL) databases
            creator=lambda: sqlite3.connect(uri, uri=True, timeout=10, check_same_thread=False),
            poolclass=QueuePool,
        )
    if url.get_backend_name() == "postgresql":
        return create_engine(url, execution_options={"postgresql_readonly": True})
    return create_engine(url)


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def finite(value: Any) -> Any:
    """JSON has no inf/nan: send them as null."""
    return value if not isinstance(value, float) or math.isfinite(value) else None


@lru_cache(maxsize=65536)
def mix_label(arch_json: str | None) -> str:
    """'attention×1 gated_deltanet×3': the token mixers of an architecture, counted like
    `Architecture.mixer_counts` (parallel branches separately), read from the JSON directly
    because importing `mixnas.search_space` loads torch."""
    if not arch_json:
        return ""
    counts: Counter[str] = Counter()
    try:
        for layer in json.loads(arch_json)["layers"]:
            mixer = layer["token_mixer"]
            parallel = mixer["type"] == "parallel"
            counts.update(m["type"] for m in (mixer["params"]["branches"] if parallel else [mixer]))
    except (ValueError, KeyError, TypeError):  # one bad row must not break the study page
        return "(unreadable architecture)"
    return " ".join(f"{name}×{n}" for name, n in sorted(counts.items()))


class Row(NamedTuple):
    number: int
    state: str
    baseline: str | None
    mix: str
    started_at: datetime
    finished_at: datetime | None
    values: dict


@dataclass(frozen=True)
class Snapshot:
    """A study's trials as the table and the plots need them, valid while `fingerprint` holds."""

    fingerprint: tuple
    rows: list[Row]  # by trial number

    @property
    def cursor(self) -> datetime | None:
        moments = [
            m for _, _, _, started, finished in self.fingerprint for m in (started, finished)
        ]
        return max((m for m in moments if m is not None), default=None)


class Store:
    def __init__(self, storage_url: str):
        self.engine = read_only_engine(storage_url)
        if not inspect(self.engine).has_table(StudyRecord.__tablename__):
            raise ValueError(
                f"{storage_url}: no {StudyRecord.__tablename__} table; is it a mixnas database?"
            )
        self._snapshots: dict[int, Snapshot] = {}

    def snapshot(self, study_id: int) -> Snapshot:
        """The study's trial rows, reloaded only when a trial was added, changed state or finished
        (one cheap grouped query decides), so the page's several API calls read the table once."""
        with Session(self.engine) as conn:
            fingerprint = tuple(
                tuple(group)
                for group in conn.execute(
                    select(
                        TrialRecord.state,
                        func.count(),
                        func.max(TrialRecord.id),
                        func.max(TrialRecord.started_at),
                        func.max(TrialRecord.finished_at),
                    )
                    .where(TrialRecord.study_id == study_id)
                    .group_by(TrialRecord.state)
                    .order_by(TrialRecord.state)
                )
            )
            cached = self._snapshots.get(study_id)
            if cached is not None and cached.fingerprint == fingerprint:
                return cached
            rows = conn.execute(
                select(
                    TrialRecord.number,
                    TrialRecord.state,
                    TrialRecord.baseline,
                    TrialRecord.arch_json,
                    TrialRecord.started_at,
                    TrialRecord.finished_at,
                    TrialRecord.values,
                )
                .where(TrialRecord.study_id == study_id)
                .order_by(TrialRecord.number)
            ).all()
        snapshot = Snapshot(
            fingerprint,
            [Row(r[0], r[1], r[2], mix_label(r[3]), r[4], r[5], r[6] or {}) for r in rows],
        )
        self._snapshots[study_id] = snapshot
        return snapshot

    # -- studies -----------------------------------------------------------------------------

    def studies(self) -> list[dict]:
        with Session(self.engine) as conn:
            studies = conn.scalars(select(StudyRecord).order_by(StudyRecord.id)).all()
        return [_study_summary(s, self.snapshot(s.id)) for s in studies]

    def study(self, name: str, summary: bool = True) -> dict:
        """The study's record; with `summary`, also its trial counts and best values."""
        with Session(self.engine) as conn:
            study = conn.scalars(select(StudyRecord).where(StudyRecord.name == name)).first()
        if study is None:
            raise NotFound(f"no study named {name!r}")
        if not summary:
            return {"id": study.id, "name": study.name, "objectives": study.objectives}
        data = _study_summary(study, self.snapshot(study.id))
        data.update(id=study.id, config=study.config, config_path=study.config_path)
        return data

    # -- trials ------------------------------------------------------------------------------

    def trial_rows(
        self, study_id: int, objectives: list[str], states: list[str] | None, since: datetime | None
    ) -> dict:
        """The trials table, compact: one array per trial in the order `fields` names. With
        `since` (the `cursor` of an earlier answer), only trials started or finished after it."""
        snapshot = self.snapshot(study_id)
        after = None if since is None else since - CURSOR_OVERLAP
        rows = [
            r
            for r in snapshot.rows
            if (not states or r.state in states)
            and (
                after is None
                or r.started_at >= after
                or (r.finished_at is not None and r.finished_at >= after)
            )
        ]
        return {
            "fields": ["number", "state", "baseline", "mix", "seconds", "values"],
            "objectives": objectives,
            "rows": [
                [
                    r.number,
                    r.state,
                    r.baseline,
                    r.mix,
                    None
                    if r.finished_at is None
                    else round((r.finished_at - r.started_at).total_seconds(), 1),
                    [finite(r.values.get(name)) for name in objectives],
                ]
                for r in rows
            ],
            "cursor": iso(snapshot.cursor or since),
        }

    def complete_values(self, study_id: int, names: list[str]) -> list[tuple[int, tuple]]:
        """(number, values) of complete trials that report every named objective, by number."""
        return [
            (r.number, tuple(float(r.values[n]) for n in names))
            for r in self.snapshot(study_id).rows
            if r.state == "complete" and all(_is_number(r.values.get(n)) for n in names)
        ]

    def exists(self, study_name: str, number: int | None = None) -> bool:
        query = select(StudyRecord.id).where(StudyRecord.name == study_name)
        if number is not None:
            query = (
                select(TrialRecord.id)
                .join(StudyRecord)
                .where(StudyRecord.name == study_name, TrialRecord.number == number)
            )
        with Session(self.engine) as conn:
            return conn.execute(query).first() is not None

    def trial(
        self, study_name: str | None, number: int | None, trial_id: int | None = None
    ) -> dict:
        """One trial with everything the trial page shows; by (study, number) or by our id."""
        query = select(TrialRecord, StudyRecord).join(StudyRecord)
        if trial_id is not None:
            query = query.where(TrialRecord.id == trial_id)
            missing = f"no trial with id {trial_id}"
        else:
            query = query.where(StudyRecord.name == study_name, TrialRecord.number == number)
            missing = f"study {study_name!r} has no trial number {number}"
        with Session(self.engine) as conn:
            row = conn.execute(query).first()
            if row is None:
                raise NotFound(missing)
            t, study = row
            curve = conn.execute(
                select(
                    CurvePoint.step,
                    CurvePoint.tokens,
                    CurvePoint.train_loss,
                    CurvePoint.metrics,
                    CurvePoint.rung,
                )
                .where(CurvePoint.trial_id == t.id)
                .order_by(CurvePoint.step)
            ).all()
            weights_vocab = conn.execute(
                select(TrialWeights.vocab_size).where(TrialWeights.trial_id == t.id)
            ).scalar()
        return {
            "id": t.id,
            "study": study.name,
            "study_id": t.study_id,
            "objectives": study.objectives,
            "number": t.number,
            "state": t.state,
            "baseline": t.baseline,
            "arch": json.loads(t.arch_json) if t.arch_json else None,
            "arch_json": t.arch_json,
            "arch_hash": t.arch_hash,
            "mix": mix_label(t.arch_json),
            "params": t.params,
            "values": _finite_tree(t.values),
            "metrics": _finite_tree(t.metrics),
            "profile": _finite_tree(t.profile),
            "failure_reason": t.failure_reason,
            "attempt": t.attempt,
            "retry_of": t.retry_of,
            "duplicate_of": t.duplicate_of,
            "worker": t.worker,
            "compute_seconds": t.compute_seconds,
            "saved_steps": t.saved_steps,
            "started_at": iso(t.started_at),
            "finished_at": iso(t.finished_at),
            "has_weights": weights_vocab is not None,
            "vocab_size": weights_vocab or _find_key(study.config, "vocab_size"),
            "curve": _columns(curve),
        }


def _study_summary(study: StudyRecord, snapshot: Snapshot) -> dict:
    """A study's state, trial counts by state and best value (with its trial) per objective."""
    by_state = dict.fromkeys(STATES, 0)
    for state, count, *_ in snapshot.fingerprint:
        by_state[state] = count
    best = {}
    for objective in study.objectives:
        name, sign = objective["name"], -1 if objective["direction"] == "maximize" else 1
        scored = [
            (sign * r.values[name], r.number)
            for r in snapshot.rows
            if r.state == "complete"
            and _is_number(r.values.get(name))
            and math.isfinite(r.values[name])
        ]
        if scored:
            loss, number = min(scored)
            best[name] = {"value": sign * loss, "number": number}
    return {
        "name": study.name,
        "state": study.state,
        "objectives": study.objectives,
        "target_trials": study.target_trials,
        "parent_study": study.parent_study,
        "created_at": iso(study.created_at),
        "updated_at": iso(study.updated_at),
        "n_trials": len(snapshot.rows),
        "counts": by_state,
        "best": best,
    }


def _columns(curve: list) -> dict:
    """Curve points as columns for plotting; nested metrics become dotted names."""
    metrics: dict[str, list] = {}
    for i, point in enumerate(curve):
        for name, value in _flatten(point.metrics or {}).items():
            metrics.setdefault(name, [None] * len(curve))[i] = finite(value)
    return {
        "step": [p.step for p in curve],
        "tokens": [p.tokens for p in curve],
        "train_loss": [finite(p.train_loss) for p in curve],
        "rung": [p.rung for p in curve],
        "metrics": metrics,
    }


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[f"{prefix}{key}"] = value
    return flat


def _is_number(value: Any) -> bool:
    """An objective value: a real number, not a bool and not NaN (infinities are ranked)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _find_key(tree: Any, key: str) -> Any:
    """The first `key` in a nested config (the task's vocabulary size sits somewhere inside)."""
    if isinstance(tree, dict):
        if key in tree:
            return tree[key]
        for value in tree.values():
            found = _find_key(value, key)
            if found is not None:
                return found
    return None


def _finite_tree(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _finite_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_tree(v) for v in value]
    return finite(value)

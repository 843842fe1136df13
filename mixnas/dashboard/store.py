"""Read-only access to the study database (mixnas.storage opened read-only), shaped into the
plain (JSON-ready) data the dashboard serves.

SQLite files are opened with `mode=ro`, and a PostgreSQL session is made read-only, so a bug here
cannot damage a running study. Heavy per-row work (parsing architectures) is cached by content,
and a study's rows are read again only when its trials changed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from mixnas import pareto
from mixnas.dashboard import insight
from mixnas.dashboard.designs import Design, describe, mix_label
from mixnas.errors import StudyNotFound
from mixnas.storage import TRIAL_STATES, RDBStorage, StudyRecord

# A trial written in a transaction that commits after a poll can carry an earlier timestamp than
# that poll's cursor; answering `since` with this much overlap keeps such trials from being missed.
CURSOR_OVERLAP = timedelta(seconds=10)


class NotFound(LookupError):
    """An unknown study or trial (the app answers 404)."""


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def finite(value: Any) -> Any:
    """JSON has no inf/nan: send them as null."""
    return value if not isinstance(value, float) or math.isfinite(value) else None


class Row(NamedTuple):
    number: int
    state: str
    baseline: str | None
    mix: str
    arch_hash: str | None
    started_at: datetime
    finished_at: datetime | None
    values: dict
    params: dict
    duplicate_of: int | None
    design: Design | None


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
    """The dashboard's view of one database, read-only."""

    def __init__(self, storage_url: str):
        self.storage = RDBStorage(storage_url, "read_only")
        self._snapshots: dict[int, Snapshot] = {}
        self._insights: dict[int, tuple[tuple, dict]] = {}  # study -> (fingerprint, answer)
        self._memo: dict[tuple, tuple[tuple, Any]] = {}  # (study, what) -> (fingerprint, value)

    def snapshot(self, study_id: int) -> Snapshot:
        """The study's trial rows, reloaded only when a trial was added, changed state or finished
        (one cheap grouped query decides), so the page's several API calls read the table once."""
        fingerprint = self.storage.get_trial_fingerprint(study_id)
        cached = self._snapshots.get(study_id)
        if cached is not None and cached.fingerprint == fingerprint:
            return cached
        rows = [
            Row(r.number, r.state, r.baseline, mix_label(r.arch_json), r.arch_hash, r.started_at,
                r.finished_at, r.values, r.params or {}, r.duplicate_of, describe(r.arch_json))
            for r in self.storage.get_trial_summaries(study_id)
        ]
        snapshot = Snapshot(fingerprint, rows)
        self._snapshots[study_id] = snapshot
        return snapshot

    # -- studies -----------------------------------------------------------------------------

    def studies(self) -> list[dict]:
        return [_study_summary(s, self.snapshot(s.id)) for s in self.storage.get_all_studies()]

    def study(self, name: str, summary: bool = True) -> dict:
        """The study's record; with `summary`, also its trial counts, best values and front."""
        study = self._record(name)
        if not summary:
            return {"id": study.id, "name": study.name, "objectives": study.objectives}
        snapshot = self.snapshot(study.id)
        data = _study_summary(study, snapshot)
        front = self.front(study.id, study.objectives)
        data.update(id=study.id, config=study.config, config_path=study.config_path,
                    front=[p.number for p in front])
        return data

    def _record(self, name: str) -> StudyRecord:
        try:
            return self.storage.get_study(name)
        except StudyNotFound:
            raise NotFound(f"no study named {name!r}") from None

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
            "fields": ["number", "state", "baseline", "mix", "seconds", "values", "design",
                       "shape"],
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
                    r.arch_hash,
                    r.design.shape if r.design else None,
                ]
                for r in rows
            ],
            "cursor": iso(snapshot.cursor or since),
        }

    def points(self, study_id: int, names: list[str]) -> list[pareto.Point]:
        """Complete trials that report every named objective, as Pareto points, by number."""
        rows = self.snapshot(study_id).rows
        return pareto.scored(
            ((r.number, r.arch_hash, r.values) for r in rows if r.state == "complete"), names
        )

    def front(self, study_id: int, objectives: list[dict]) -> list[pareto.Point]:
        """The study's Pareto front over `objectives` ({"name", "direction"}), by mixnas.pareto."""
        points = self.points(study_id, [o["name"] for o in objectives])
        return pareto.front(points, [o["direction"] for o in objectives])

    def memo(self, study_id: int, key: tuple, compute) -> Any:
        """`compute()`, remembered while the study's trials do not change (N-D hypervolume
        histories cost a second on 5,000 trials; the page asks on every poll)."""
        fingerprint = self.snapshot(study_id).fingerprint
        cached = self._memo.get((study_id, key))
        if cached is not None and cached[0] == fingerprint:
            return cached[1]
        value = compute()
        self._memo[(study_id, key)] = (fingerprint, value)
        return value

    def insight(self, study_id: int, objectives: list[dict]) -> dict:
        """Decision importances and composition rows (`mixnas.dashboard.insight`), computed
        once per state of the study's trials: the cache holds while its fingerprint does."""
        snapshot = self.snapshot(study_id)
        cached = self._insights.get(study_id)
        if cached is not None and cached[0] == snapshot.fingerprint:
            return {**cached[1], "cached": True}
        found = insight.importances(snapshot.rows, objectives)
        answer = {
            "importance": found,
            "composition": insight.composition(
                snapshot.rows, objectives, insight.top_decisions(found)
            ),
        }
        self._insights[study_id] = (snapshot.fingerprint, answer)
        return {**answer, "cached": False}

    def compare(self, a: dict, b: dict) -> dict:
        """Two studies side by side: each one's designs and fronts over the objectives they
        share, and the designs (architecture hashes) both tried, with both results.

        Args:
            a: `study(name, summary=False)` of the first study; b: of the second.

        Returns:
            `objectives` (shared), `studies` (per study: trials, values, designs, `front` over
            all shared objectives and `pair_fronts`, the front of each pair of them keyed
            "x,y" in objective order) and `shared_designs`.
        """
        by_name = {o["name"]: o for o in b["objectives"]}
        shared = [o for o in a["objectives"] if by_name.get(o["name"]) == o]
        names = [o["name"] for o in shared]
        directions = [o["direction"] for o in shared]
        sides = []
        for study in (a, b):
            points = pareto.distinct(self.points(study["id"], names))
            sides.append({
                "name": study["name"],
                "trials": [p.number for p in points],
                "values": [[finite(v) for v in p.values] for p in points],
                "designs": [p.design for p in points],
                "front": sorted(p.number for p in pareto.front(points, directions)),
                "pair_fronts": {
                    f"{names[i]},{names[j]}": sorted(
                        p.number for p in pareto.front(
                            [pareto.Point(p.number, (p.values[i], p.values[j]), p.design)
                             for p in points], [directions[i], directions[j]])
                    )
                    for i in range(len(names)) for j in range(i + 1, len(names))
                },
            })
        first_a = {d: i for i, d in enumerate(sides[0]["designs"]) if d}
        matched = [
            {"design": d, "a": sides[0]["trials"][first_a[d]], "b": sides[1]["trials"][j],
             "a_values": sides[0]["values"][first_a[d]], "b_values": sides[1]["values"][j]}
            for j, d in enumerate(sides[1]["designs"]) if d in first_a
        ]
        return {"objectives": shared, "studies": sides, "shared_designs": matched}

    def repeats(self, study_id: int) -> dict[str, list[int]]:
        """Design (architecture hash) -> its complete trials by number, for designs tried more
        than once: the first trained it, the others repeat (or reused) its result."""
        trials: dict[str, list[int]] = {}
        for r in self.snapshot(study_id).rows:
            if r.state == "complete" and r.arch_hash:
                trials.setdefault(r.arch_hash, []).append(r.number)
        return {design: numbers for design, numbers in trials.items() if len(numbers) > 1}

    def exists(self, study_name: str, number: int | None = None) -> bool:
        try:
            study = self.storage.get_study(study_name)
        except StudyNotFound:
            return False
        return number is None or self.storage.get_trial(study.id, number) is not None

    def trial(
        self, study_name: str | None, number: int | None, trial_id: int | None = None
    ) -> dict:
        """One trial with everything the trial page shows; by (study, number) or by our id."""
        if trial_id is not None:
            t = self.storage.get_trial_by_id(trial_id)
            if t is None:
                raise NotFound(f"no trial with id {trial_id}")
            study = self.storage.get_study_by_id(t.study_id)
        else:
            study = self._record(study_name)
            t = self.storage.get_trial(study.id, number)
            if t is None:
                raise NotFound(f"study {study_name!r} has no trial number {number}")
        weights_vocab = self.storage.get_weights_vocab_size(t.id)
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
            "parent_trial": t.parent_trial,
            "worker": t.worker,
            "compute_seconds": t.compute_seconds,
            "saved_steps": t.saved_steps,
            "started_at": iso(t.started_at),
            "finished_at": iso(t.finished_at),
            "has_weights": weights_vocab is not None,
            "vocab_size": weights_vocab or _find_key(study.config, "vocab_size"),
            "curve": _columns(self.storage.get_curve(t.id)),
        }


def _study_summary(study: StudyRecord, snapshot: Snapshot) -> dict:
    """A study's state, trial counts by state and best value (with its trial) per objective."""
    by_state = dict.fromkeys(TRIAL_STATES, 0)
    for state, count, *_ in snapshot.fingerprint:
        by_state[state] = count
    best = {}
    for objective in study.objectives:
        name, sign = objective["name"], -1 if objective["direction"] == "maximize" else 1
        scored = [
            (sign * r.values[name], r.number)
            for r in snapshot.rows
            if r.state == "complete"
            and pareto.is_value(r.values.get(name))
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

"""The tabular benchmark's table: every architecture of a finite grammar with its measured results.

A NAS benchmark in the NAS-Bench style: the space is small enough to train each member once, so a
sampler can be replayed against exact answers instead of training (see replay.py). The table is an
SQLite file with two tables: `meta` (what was measured and how, as JSON values) and `archs` (one
row per distinct architecture by canonical hash, with the grammar decisions that derive it).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixnas.search_space.architecture import Architecture
from mixnas.search_space.grammar import Grammar
from mixnas.search_space.sampling import Decider

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS archs (
    hash TEXT PRIMARY KEY,
    arch_json TEXT NOT NULL,     -- canonical JSON
    decisions TEXT NOT NULL,     -- grammar decision name -> value (JSON) that derive it
    status TEXT NOT NULL,        -- complete | failed | infeasible
    metrics TEXT,                -- task metrics (JSON)
    profile TEXT,                -- cost profile (JSON)
    reason TEXT,                 -- why it failed or is infeasible
    seconds REAL                 -- CPU seconds the evaluation took
);
"""


@dataclass(frozen=True)
class Row:
    hash: str
    arch_json: str
    decisions: dict[str, Any]
    status: str
    metrics: dict[str, float] | None = None
    profile: dict[str, float] | None = None
    reason: str | None = None
    seconds: float | None = None

    @property
    def measured(self) -> dict[str, float]:
        """Metrics and profile in one mapping, as the driver reads objective values."""
        return {**(self.profile or {}), **(self.metrics or {})}

    @property
    def architecture(self) -> Architecture:
        return Architecture.from_json(self.arch_json)


class Table:
    """An open table file; rows are read into memory once (a few hundred rows)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.conn = sqlite3.connect(self.path)
        self.conn.executescript(SCHEMA)
        self._rows: dict[str, Row] | None = None

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Table:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # meta ----------------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self.conn.execute("SELECT key, value FROM meta")}

    def set_meta(self, **values: Any) -> None:
        with self.conn:
            self.conn.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [(k, json.dumps(v, sort_keys=True)) for k, v in values.items()],
            )

    # rows ----------------------------------------------------------------------------------
    def rows(self) -> dict[str, Row]:
        if self._rows is None:
            query = "SELECT hash, arch_json, decisions, status, metrics, profile, reason, seconds"
            self._rows = {}
            for h, arch, dec, status, metrics, profile, reason, sec in self.conn.execute(
                query + " FROM archs ORDER BY hash"
            ):
                self._rows[h] = Row(
                    h, arch, json.loads(dec), status, _loads(metrics), _loads(profile), reason, sec
                )
        return self._rows

    def add(self, row: Row) -> None:
        with self.conn:
            self.conn.execute(
                "INSERT OR REPLACE INTO archs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.hash, row.arch_json, json.dumps(row.decisions, sort_keys=True), row.status,
                    _dumps(row.metrics), _dumps(row.profile), row.reason, row.seconds,
                ),
            )
        self._rows = None

    def lookup(self, arch_hash: str) -> Row:
        row = self.rows().get(arch_hash)
        if row is None:
            raise KeyError(
                f"architecture {arch_hash} is not in the table {self.path}; "
                "was the table built from this grammar? (benchmarks/tabular/build.py)"
            )
        return row

    def values(self, objectives: list[tuple[str, str]]) -> list[list[float]]:
        """Objective values of every complete row, in `objectives` order."""
        return [
            [float(row.measured[name]) for name, _ in objectives]
            for row in self.rows().values()
            if row.status == "complete"
        ]


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True)


# ----------------------------------------------------------------------------------------------
# Enumerating a finite grammar


class NotFinite(ValueError):
    """The grammar has a decision with infinitely many values (a float range)."""


class _Odometer(Decider):
    """Answers a prefix of option indices, then the first option; records every decision.

    Driving the grammar with successive prefixes walks its decision tree depth first, so each
    derivation is visited exactly once even where decisions depend on earlier ones."""

    def __init__(self, prefix: list[int]):
        self.prefix = prefix
        self.path: list[tuple[int, int]] = []  # (chosen index, number of options) per decision
        self.decisions: dict[str, Any] = {}

    def _pick(self, name: str, options: list[Any]) -> Any:
        i = self.prefix[len(self.path)] if len(self.path) < len(self.prefix) else 0
        self.path.append((i, len(options)))
        self.decisions[name] = options[i]
        return options[i]

    def choose(self, name, options, weights):
        return self._pick(name, list(options))

    def integer(self, name, low, high, step=1, log=False):
        return self._pick(name, list(range(low, high + 1, step)))

    def real(self, name, low, high, step=None, log=False):
        if step is None or log:
            raise NotFinite(f"decision {name!r} is a continuous range: the space is not finite")
        n = int(round((high - low) / step))
        return self._pick(name, [min(high, low + k * step) for k in range(n + 1)])


def enumerate_space(grammar: Grammar, max_derivations: int = 100_000) -> Iterator[
    tuple[dict[str, Any], Architecture]
]:
    """Every derivation of `grammar` as (decisions, architecture), depth first.

    Different derivations may build the same network; callers dedupe by `Architecture.hash`."""
    prefix: list[int] = []
    for _ in range(max_derivations):
        odometer = _Odometer(prefix)
        arch = grammar.sample(odometer)
        yield odometer.decisions, arch
        path = odometer.path
        while path and path[-1][0] + 1 >= path[-1][1]:
            path.pop()
        if not path:
            return
        prefix = [i for i, _ in path[:-1]] + [path[-1][0] + 1]
    raise NotFinite(f"{grammar.file}: more than {max_derivations} derivations")


def distinct_architectures(grammar: Grammar) -> dict[str, tuple[dict[str, Any], Architecture]]:
    """hash -> (decisions of its first derivation, architecture), over the whole space."""
    out: dict[str, tuple[dict[str, Any], Architecture]] = {}
    for decisions, arch in enumerate_space(grammar):
        out.setdefault(arch.hash, (decisions, arch))
    return out

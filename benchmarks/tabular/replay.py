"""Replay mode: run a sampler over a tabular benchmark, looking results up instead of training.

Each trial derives an architecture from the grammar through `OptunaDecider`, exactly as the study
driver does, and reads its objective values from the table, so a 150-trial study takes seconds and
many seeds of every sampler can be compared on the same ground truth. The sampler comes from
`make_sampler`, with the defaults a real study would get for the same `n_trials`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from benchmarks.tabular.hypervolume import Normaliser
from benchmarks.tabular.table import Table
from mixnas.orchestrator.config import Objective, StudyConfig
from mixnas.orchestrator.study import make_sampler
from mixnas.orchestrator.surrogate import SCREEN_ATTR
from mixnas.orchestrator.warm_start import WarmSource
from mixnas.pareto import front_nd, hypervolume
from mixnas.search_space.architecture import Architecture
from mixnas.search_space.grammar import Grammar
from mixnas.search_space.sampling import OptunaDecider

SEED_MODES = ("arch", "params")


@dataclass
class Replay:
    """One replayed study: per trial, the architecture hash and its objective values (None when
    the table says the architecture failed or is infeasible, i.e. the trial failed)."""

    sampler: str
    seed: int
    objectives: list[tuple[str, str]]
    hashes: list[str] = field(default_factory=list)
    values: list[list[float] | None] = field(default_factory=list)
    screens: list[dict[str, Any] | None] = field(default_factory=list)  # surrogate sampler's

    def hypervolume_curve(self, normaliser: Normaliser) -> list[float]:
        """Hypervolume of the front of the first t trials, for t = 1..n."""
        curve, front = [], []
        for values in self.values:
            if values is not None:
                points = front + [normaliser(values)]
                front = [points[i] for i in front_nd(points)]
            curve.append(hypervolume(front, normaliser.reference))
        return curve

    @property
    def distinct(self) -> int:
        return len(set(self.hashes))


class TabularObjective:
    """Looks up the objective values of a trial's architecture in a table."""

    def __init__(self, table: Table, grammar: Grammar, objectives: Sequence[tuple[str, str]]):
        self.table, self.grammar, self.objectives = table, grammar, list(objectives)

    def architecture(self, trial: optuna.Trial) -> Architecture:
        """The trial's architecture: an enqueued one (as the driver seeds baselines) or derived."""
        arch_json = trial.user_attrs.get("arch_json")
        if arch_json is not None:
            return Architecture.from_json(arch_json)
        return self.grammar.sample(OptunaDecider(trial))

    def __call__(self, trial: optuna.Trial) -> tuple[str, list[float] | None]:
        arch = self.architecture(trial)
        row = self.table.lookup(arch.hash)
        if row.status != "complete":
            return arch.hash, None
        return arch.hash, [float(row.measured[name]) for name, _ in self.objectives]


def study_config(table: Table, grammar: Grammar, objectives: Sequence[tuple[str, str]],
                 sampler: str, n_trials: int, seed: int,
                 sampler_options: dict[str, Any] | None = None) -> StudyConfig:
    """The study config a real study on this table would have (for `make_sampler`)."""
    settings = table.meta().get("settings") or {}
    return StudyConfig(
        name=f"replay-{sampler}-{seed}",
        search_space=grammar.file,
        task=settings.get("task", {"name": "mqar"}),
        budget=settings.get("budget", {"steps": 1}),
        objectives=[Objective(name, direction) for name, direction in objectives],
        sampler=sampler,
        sampler_options=dict(sampler_options or {}),
        n_trials=n_trials,
        seed=seed,
        baselines=[],
    )


def replay(table: Table, grammar: Grammar, objectives: Sequence[tuple[str, str]], *,
           sampler: str = "nsga2", n_trials: int = 100, seed: int = 0,
           sampler_options: dict[str, Any] | None = None,
           seeds: Sequence[Architecture] = (), seed_mode: str = "arch",
           warm: Sequence[WarmSource] = (), enqueue: Sequence[dict[str, Any]] = ()) -> Replay:
    """Run one in-process Optuna study of `n_trials` against the table.

    `seeds` are enqueued first, like a study's baselines: with seed_mode "arch" as the driver
    does (the architecture only; the sampler sees no parameters for them), with "params" as the
    grammar decisions that derive them (stored in the table), which samplers can learn from.
    `warm` are earlier studies for the surrogate sampler to learn from, and `enqueue` grammar
    decisions enqueued before anything else (a warm start's fronts), as the driver does."""
    if seed_mode not in SEED_MODES:
        raise ValueError(f"seed_mode must be one of {SEED_MODES}, got {seed_mode!r}")
    config = study_config(table, grammar, objectives, sampler, n_trials, seed, sampler_options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = optuna.create_study(
            directions=[d for _, d in objectives], sampler=make_sampler(config, warm)
        )
        for decisions in enqueue:
            study.enqueue_trial(dict(decisions), user_attrs={"warm_start": True})
        for arch in seeds:
            if seed_mode == "arch":
                study.enqueue_trial({}, user_attrs={"arch_json": arch.to_json()})
            else:
                study.enqueue_trial(table.lookup(arch.hash).decisions)
        objective = TabularObjective(table, grammar, objectives)
        result = Replay(sampler, seed, list(objectives))
        for _ in range(n_trials):
            trial = study.ask()
            arch_hash, values = objective(trial)
            if values is None:
                study.tell(trial, state=TrialState.FAIL)
            else:
                study.tell(trial, values)
            result.hashes.append(arch_hash)
            result.values.append(values)
        result.screens = [t.system_attrs.get(SCREEN_ATTR) for t in study.get_trials()]
    return result


def trials_to_fraction(curve: Sequence[float], target: float) -> int | None:
    """The first trial count at which `curve` reaches `target`; None if it never does."""
    for t, value in enumerate(curve, 1):
        if value >= target - 1e-12:
            return t
    return None

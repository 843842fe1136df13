"""Warm starts: what earlier studies in the same storage measured, brought into a new study.

A researcher runs many studies over one space (MQAR first, then language modelling, then a larger
budget). A warm-started study (`warm_start: [STUDY, ...]`) gets two things from each earlier one:

- its Pareto front, enqueued first and trained again on the new task (never copied: a score on
  another task or budget is not a score on this one), as grammar decisions, so every sampler
  learns from those trials like any other;
- its complete trials as training data for the surrogate sampler (`sampler: surrogate`), whose
  model weighs each earlier study by how well it ranks this study's results (surrogate_model.py).

An earlier study's design maps onto this study's grammar when replaying its decisions through this
grammar derives the same architecture (same grammar, or one whose decisions are a superset under
the same names). Objectives map by name; the task metrics left over pair in order (accuracy on
MQAR informs bits per byte on text through its ranking alone).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mixnas.search_space.architecture import Architecture
from mixnas.search_space.grammar import Grammar
from mixnas.search_space.sampling import ScriptedDecider


@dataclass(frozen=True)
class WarmTrial:
    """One complete trial of an earlier study: its design and its objective values by name."""

    arch_json: str
    params: dict[str, Any]
    values: dict[str, float]


@dataclass
class WarmSource:
    """An earlier study: its objectives ((name, direction) in order) and complete trials."""

    name: str
    objectives: list[tuple[str, str]]
    trials: list[WarmTrial] = field(default_factory=list)

    def front(self) -> list[WarmTrial]:
        """Its Pareto front, one trial per architecture, in trial order."""
        from mixnas.pareto import front_nd, to_loss

        names = [n for n, _ in self.objectives]
        directions = [d for _, d in self.objectives]
        trials = [t for t in self.trials if all(n in t.values for n in names)]
        points = [to_loss([t.values[n] for n in names], directions) for t in trials]
        seen, out = set(), []
        for i in front_nd(points):
            arch = Architecture.from_json(trials[i].arch_json).hash
            if arch not in seen:
                seen.add(arch)
                out.append(trials[i])
        return out


def map_objectives(target: Sequence[tuple[str, str]], source: Sequence[tuple[str, str]]
                   ) -> dict[str, tuple[str, str]]:
    """target objective name -> (source objective name, its direction).

    Same names map to each other; the task scores left over on both sides pair in order (a cost
    never pairs with a score, nor two different costs)."""
    from mixnas.evaluator.profiler import is_profile_metric

    by_name = dict(source)
    out = {name: (name, by_name[name]) for name, _ in target if name in by_name}
    left_target = [n for n, _ in target if n not in out and not is_profile_metric(n)]
    left_source = [(n, d) for n, d in source
                   if n not in out and not is_profile_metric(n)]
    out.update(zip(left_target, left_source))
    return out


def mapped_decisions(grammar: Grammar, trial: WarmTrial) -> dict[str, Any] | None:
    """The decisions of `grammar` that derive `trial`'s architecture, or None if they do not."""
    if not trial.params:
        return None
    script = ScriptedDecider(trial.params)
    try:
        arch = grammar.sample(script)
    except (KeyError, ValueError):
        return None
    if arch.hash != Architecture.from_json(trial.arch_json).hash:
        return None
    return {name: trial.params[name] for name in script.asked}


def front_to_enqueue(grammar: Grammar, sources: Sequence[WarmSource],
                     skip: set[str] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """(source name, decisions) of every earlier front design this grammar derives, front by
    front, each architecture once and none of those in `skip` (hashes, e.g. the baselines)."""
    seen = set(skip or ())
    out = []
    for source in sources:
        for trial in source.front():
            arch = Architecture.from_json(trial.arch_json).hash
            decisions = mapped_decisions(grammar, trial)
            if decisions is None or arch in seen:
                continue
            seen.add(arch)
            out.append((source.name, decisions))
    return out


def check_mappable(grammar: Grammar, source: WarmSource, where: str) -> None:
    """Raise ValueError (one line) when `source` has nothing this grammar can learn from."""
    if not source.trials:
        raise ValueError(f"{where}: study '{source.name}' has no complete trials to warm-start "
                         "from")
    if not any(mapped_decisions(grammar, t) is not None for t in source.trials):
        example = next((t for t in source.trials if t.params), None)
        detail = _why_unmapped(grammar, example) if example else "it has only baselines"
        raise ValueError(f"{where}: study '{source.name}' cannot be mapped onto this study's "
                         f"grammar ({grammar.file}): {detail}")


def _why_unmapped(grammar: Grammar, trial: WarmTrial) -> str:
    try:
        arch = grammar.sample(ScriptedDecider(trial.params))
    except KeyError as exc:
        return f"its trials do not answer {exc.args[0]}"
    except ValueError as exc:
        return str(exc)
    return f"its decisions derive another architecture here ({arch.hash})"


def values_by_name(names: Sequence[str], values: Mapping[str, float] | None) -> dict[str, float]:
    """The objective values a trial row holds, by name (rows written before a value existed,
    or with a value missing, give what they have)."""
    return {n: float(values[n]) for n in names if values and n in values}

"""Rung-based early stopping for multi-objective studies (Optuna's pruners are single-objective).

At each rung (a fraction of the training budget) a trial reports its quality metrics. It is
stopped when another trial, at the same rung, is at least as cheap on every cost objective and
better by more than `margin` on every quality objective: continuing could not put it on the front
unless it overtook a design that is already cheaper and clearly better at the same point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RungEntry:
    """One trial's standing at a rung: quality metrics measured there, costs known up front."""

    number: int
    quality: dict[str, float]
    costs: dict[str, float]


def dominator(
    candidate: RungEntry,
    others: list[RungEntry],
    quality_directions: dict[str, str],
    cost_directions: dict[str, str],
    margin: float,
) -> RungEntry | None:
    """The first entry that clearly dominates `candidate`, or None.

    An objective whose value is missing on either side cannot support dominance, so a trial is
    never stopped on a cost it has not reported.
    """
    for other in others:
        if other.number == candidate.number:
            continue
        if _clearly_better(other, candidate, quality_directions, cost_directions, margin):
            return other
    return None


def _clearly_better(a, b, quality_directions, cost_directions, margin) -> bool:
    if not quality_directions:
        return False
    for name, direction in quality_directions.items():
        va, vb = a.quality.get(name), b.quality.get(name)
        if va is None or vb is None:
            return False
        gain = (va - vb) if direction == "maximize" else (vb - va)
        if gain <= margin:
            return False
    for name, direction in cost_directions.items():
        ca, cb = a.costs.get(name), b.costs.get(name)
        if ca is None or cb is None:
            return False
        if (ca > cb) if direction == "minimize" else (ca < cb):
            return False
    return True


def split_objectives(
    objectives: list[dict[str, str]]
) -> tuple[dict[str, str], dict[str, str]]:
    """({name: direction} of the quality objectives, of the costs), by `is_profile_metric`."""
    from mixnas.evaluator.profiler import is_profile_metric

    quality = {o["name"]: o["direction"] for o in objectives if not is_profile_metric(o["name"])}
    costs = {o["name"]: o["direction"] for o in objectives if is_profile_metric(o["name"])}
    return quality, costs


def as_float_dict(values: dict[str, Any] | None) -> dict[str, float]:
    out = {}
    for key, value in (values or {}).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value)
    return out

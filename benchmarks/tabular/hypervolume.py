"""The normalisation that makes hypervolumes of studies on one table comparable.

Hypervolume (the volume that a set of points dominates, up to a reference point; computed by
`mixnas.pareto.hypervolume`) is the standard single number for how good a multi-objective front
is. Objectives are first mapped to [0, 1] for minimisation, 0 being the best value in the table
and 1 the worst, with the reference point at 1: the hypervolume of the table's full front is then
the most any study on that table can reach.
"""

from __future__ import annotations

from collections.abc import Sequence

from mixnas.pareto import hypervolume

__all__ = ["Normaliser", "hypervolume"]


class Normaliser:
    """Maps objective values to [0, 1] minimisation using the best and worst values of a table."""

    def __init__(self, directions: Sequence[str], values: Sequence[Sequence[float]]):
        if not values:
            raise ValueError("no values to normalise against")
        self.directions = list(directions)
        columns = list(zip(*values))
        self.best, self.worst = [], []
        for direction, column in zip(self.directions, columns):
            if direction not in ("minimize", "maximize"):
                raise ValueError(f"direction must be minimize or maximize, got {direction!r}")
            lo, hi = min(column), max(column)
            self.best.append(lo if direction == "minimize" else hi)
            self.worst.append(hi if direction == "minimize" else lo)

    def __call__(self, point: Sequence[float]) -> tuple[float, ...]:
        return tuple(
            0.0 if w == b else (v - b) / (w - b)
            for v, b, w in zip(point, self.best, self.worst)
        )

    @property
    def reference(self) -> tuple[float, ...]:
        return (1.0,) * len(self.directions)

    def hypervolume(self, points: Sequence[Sequence[float]]) -> float:
        return hypervolume([self(p) for p in points], self.reference)

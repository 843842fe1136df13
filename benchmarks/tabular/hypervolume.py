"""Exact hypervolume of a set of points, and the normalisation that makes studies comparable.

Hypervolume (the volume that a set of points dominates, up to a reference point) is the standard
single number for how good a multi-objective front is. Objectives are first mapped to [0, 1] for
minimisation, 0 being the best value in the table and 1 the worst, with the reference point at 1:
the hypervolume of the table's full front is then the most any study on that table can reach.
"""

from __future__ import annotations

from collections.abc import Sequence


def hypervolume(points: Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """Volume dominated by `points` (all objectives minimised) and bounded by `reference`.

    Exact: a sweep in 2-D, slicing along the last objective above that (fine for the fronts of a
    few hundred points that benchmarks produce)."""
    ref = tuple(float(r) for r in reference)
    pts = [tuple(float(x) for x in p) for p in points]
    if any(len(p) != len(ref) for p in pts):
        raise ValueError(f"every point needs {len(ref)} objectives")
    return _volume([p for p in pts if all(x < r for x, r in zip(p, ref))], ref)


def _volume(pts: list[tuple[float, ...]], ref: tuple[float, ...]) -> float:
    if not pts:
        return 0.0
    if len(ref) == 1:
        return ref[0] - min(p[0] for p in pts)
    if len(ref) == 2:
        area, best_y = 0.0, ref[1]
        pts = sorted(pts)
        for i, (x, y) in enumerate(pts):
            best_y = min(best_y, y)
            next_x = pts[i + 1][0] if i + 1 < len(pts) else ref[0]
            area += (next_x - x) * (ref[1] - best_y)
        return area
    pts = sorted(pts, key=lambda p: p[-1])
    volume = 0.0
    for i, p in enumerate(pts):
        upper = pts[i + 1][-1] if i + 1 < len(pts) else ref[-1]
        if upper > p[-1]:
            volume += (upper - p[-1]) * _volume([q[:-1] for q in pts[: i + 1]], ref[:-1])
    return volume


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

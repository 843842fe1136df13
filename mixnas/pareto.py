"""Pareto fronts and hypervolume over objective vectors (dashboard, export and benchmarks).

Every function takes the objective vectors with their directions and works in "loss" space
(maximised objectives negated). Ties follow Optuna's `study.best_trials`: identical vectors that no
other vector dominates are all on the front.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import numpy as np


def to_loss(values: Sequence[float], directions: Sequence[str]) -> tuple[float, ...]:
    return tuple(-v if d == "maximize" else v for v, d in zip(values, directions))


def front_2d(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated loss points, ordered by the first objective: sort and sweep."""
    order = sorted(range(len(points)), key=lambda i: points[i])
    front: list[int] = []
    best: tuple[float, float] | None = None  # the point that last lowered the second objective
    for i in order:
        x, y = points[i]
        if best is None or y < best[1]:
            best = (x, y)
            front.append(i)
        elif (x, y) == best:  # a duplicate of a front point is on the front too
            front.append(i)
    return front


def front_nd(points: Sequence[tuple[float, ...]]) -> list[int]:
    """Indices of the non-dominated loss points in any dimension, by a dominance filter.

    In lexicographic order the first remaining point is never dominated: it joins the front and
    every remaining point it dominates is dropped at once, so the cost is O(n * front) vectorised.
    """
    if not points:
        return []
    values = np.asarray(points, dtype=float)
    remaining = np.lexsort(values.T[::-1])  # lexicographic order of the rows
    front = []
    while remaining.size:
        best, rest = values[remaining[0]], values[remaining[1:]]
        front.append(int(remaining[0]))
        dominated = np.all(best <= rest, axis=1) & np.any(best < rest, axis=1)
        remaining = remaining[1:][~dominated]
    return sorted(front)


def reference_point(
    points: Sequence[tuple[float, float]], margin: float = 0.1
) -> tuple[float, float]:
    """The worst loss of each objective pushed out by `margin` of its range, so the extreme front
    points still add area (Optuna's hypervolume plots ask the user for this point)."""
    ref = []
    for k in range(2):
        column = [p[k] for p in points]
        worst = max(column)
        span = (worst - min(column)) or abs(worst) or 1.0
        ref.append(worst + margin * span)
    return ref[0], ref[1]


def hypervolume_history(
    points: Sequence[tuple[float, float]], ref: tuple[float, float]
) -> list[float]:
    """Hypervolume of the 2-D front of points[:i+1] for every i, updated incrementally.

    The running front is kept sorted by the first objective (so the second strictly decreases);
    a new point is dominated only by its left neighbour or by a point with the same first value,
    and the points it dominates are contiguous to its right.
    """
    xs: list[float] = []
    ys: list[float] = []
    volume = 0.0
    history = []
    for x, y in points:
        if x < ref[0] and y < ref[1]:
            i = bisect.bisect_left(xs, x)
            dominated = (i > 0 and ys[i - 1] <= y) or (i < len(xs) and xs[i] == x and ys[i] <= y)
            if not dominated:
                j = i
                while j < len(xs) and ys[j] >= y:
                    j += 1
                del xs[i:j], ys[i:j]
                xs.insert(i, x)
                ys.insert(i, y)
                volume = _area(xs, ys, ref)
        history.append(volume)
    return history


def _area(xs: list[float], ys: list[float], ref: tuple[float, float]) -> float:
    right = xs[1:] + [ref[0]]
    return sum((r - x) * (ref[1] - y) for x, y, r in zip(xs, ys, right))


def hypervolume(points: Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """Volume dominated by loss `points` and bounded by `reference`, in any dimension.

    Exact: a sweep in 2-D, slicing along the last objective above that (fine for the fronts of a
    few hundred points that studies and benchmarks produce). Points not strictly better than the
    reference in every objective add nothing."""
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
        pts = sorted(pts)
        return _area([p[0] for p in pts], list(np.minimum.accumulate([p[1] for p in pts])), ref)
    pts = sorted(pts, key=lambda p: p[-1])
    volume = 0.0
    for i, p in enumerate(pts):
        upper = pts[i + 1][-1] if i + 1 < len(pts) else ref[-1]
        if upper > p[-1]:
            volume += (upper - p[-1]) * _volume([q[:-1] for q in pts[: i + 1]], ref[:-1])
    return volume


def hypervolume_improvement(points: np.ndarray, front: np.ndarray,
                            reference: Sequence[float]) -> np.ndarray:
    """How much hypervolume each of `points` (n, m) would add to `front` (k, m), in loss space.

    2-D is vectorised: the area between a point and the front's staircase, summed over the
    staircase's segments. Above 2-D, per point: the volume the point dominates alone, less the
    volume of the front clipped to that point's box."""
    points = np.atleast_2d(np.asarray(points, dtype=float))
    front = np.asarray(front, dtype=float).reshape(-1, points.shape[1])
    ref = np.asarray(reference, dtype=float)
    if points.shape[1] == 2:
        return _improvement_2d(points, front, ref)
    box = np.prod(np.clip(ref - points, 0.0, None), axis=1)
    clipped = [hypervolume(np.maximum(front, p), ref) if b > 0 else 0.0
               for p, b in zip(points, box)]
    return np.maximum(box - np.asarray(clipped), 0.0)


def _improvement_2d(points: np.ndarray, front: np.ndarray, ref: np.ndarray) -> np.ndarray:
    front = front[np.all(front < ref, axis=1)]
    front = front[np.lexsort((front[:, 1], front[:, 0]))] if len(front) else front
    # staircase: segment j spans [edges[j], edges[j + 1]) at height levels[j]
    edges = np.concatenate([[-np.inf], front[:, 0], [ref[0]]])
    levels = np.minimum.accumulate(np.concatenate([[ref[1]], front[:, 1]]))
    left = np.maximum(edges[None, :-1], points[:, :1])
    right = np.maximum(edges[None, 1:], points[:, :1])
    height = np.clip(levels[None, :] - points[:, 1:], 0.0, None)
    return np.sum((right - left) * height, axis=1)

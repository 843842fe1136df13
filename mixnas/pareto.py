"""Pareto fronts and hypervolume: the one home of "which designs are best" in a study.

The CLI, the driver (weights it keeps, the live front count), the dashboard, export, promote and
the benchmarks all ask this module, so they all agree. The functions work in "loss" space
(maximised objectives negated, `to_loss`).

The rule for repeated designs: **a front has one point per distinct design.** A study may hold
several trials of one architecture (a design drawn again reuses the first trial's result, or is
trained again when `reuse_results` is off); they stand for one design, represented by its
earliest trial (`distinct`). Among distinct designs a point is on the front when no other point
dominates it; different designs with identical values are all on the front, as in Optuna's
`study.best_trials`.

This module imports nothing of mixnas (numpy only), so every layer may use it.
"""

from __future__ import annotations

import bisect
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Point:
    """One trial's objective values, and the design (architecture hash) it measured."""

    number: int  # the trial number
    values: tuple[float, ...]
    design: str | None = None  # None: the trial is a design of its own

    @property
    def key(self) -> Hashable:
        """What identifies the design: its hash, or the trial when it has none."""
        return self.design if self.design is not None else ("trial", self.number)


def to_loss(values: Sequence[float], directions: Sequence[str]) -> tuple[float, ...]:
    """Objective values in loss space: maximised ones negated, so that lower is better."""
    return tuple(-v if d == "maximize" else v for v, d in zip(values, directions))


def is_value(value: Any) -> bool:
    """An objective value: a real number, not a bool and not NaN (infinities are ranked)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def scored(rows: Iterable[tuple[int, str | None, Mapping[str, Any] | None]],
           names: Sequence[str]) -> list[Point]:
    """Points of the `(number, design, {objective: value})` rows that give every objective in
    `names` a value (`is_value`); the values are in the order of `names`."""
    return [
        Point(number, tuple(float(values[n]) for n in names), design)
        for number, design, values in rows
        if values and all(is_value(values.get(n)) for n in names)
    ]


def distinct(points: Iterable[Point]) -> list[Point]:
    """The earliest point (lowest trial number) of each design, by trial number."""
    first: dict[Hashable, Point] = {}
    for point in sorted(points, key=lambda p: p.number):
        first.setdefault(point.key, point)
    return list(first.values())


def front(points: Iterable[Point], directions: Sequence[str]) -> list[Point]:
    """The Pareto front under the rule for repeated designs (see the module docstring).

    Args:
        points: Complete trials' points (`scored`), repeats of one design included.
        directions: "minimize" or "maximize", one per value.

    Returns:
        The front's points, by trial number.
    """
    designs = distinct(points)
    losses = [to_loss(p.values, directions) for p in designs]
    members = front_2d(losses) if len(directions) == 2 else front_nd(losses)
    return sorted((designs[i] for i in members), key=lambda p: p.number)


def front_2d(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated loss points, ordered by the first objective: sort and sweep."""
    order = sorted(range(len(points)), key=lambda i: points[i])
    members: list[int] = []
    best: tuple[float, float] | None = None  # the point that last lowered the second objective
    for i in order:
        x, y = points[i]
        if best is None or y < best[1]:
            best = (x, y)
            members.append(i)
        elif (x, y) == best:  # a duplicate of a front point is on the front too
            members.append(i)
    return members


def front_nd(points: Sequence[tuple[float, ...]]) -> list[int]:
    """Indices of the non-dominated loss points in any dimension, by a dominance filter.

    In lexicographic order the first remaining point is never dominated: it joins the front and
    every remaining point it dominates is dropped at once, so the cost is O(n * front) vectorised.
    """
    if not points:
        return []
    values = np.asarray(points, dtype=float)
    remaining = np.lexsort(values.T[::-1])  # lexicographic order of the rows
    members = []
    while remaining.size:
        best, rest = values[remaining[0]], values[remaining[1:]]
        members.append(int(remaining[0]))
        dominated = np.all(best <= rest, axis=1) & np.any(best < rest, axis=1)
        remaining = remaining[1:][~dominated]
    return sorted(members)


def hypervolume(points: Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """Volume that loss `points` dominate, bounded by `reference` (points beyond it add nothing).

    Exact: a sweep in 2-D, a grid in 3-D (`_volume_3d`), slicing along the last objective above
    that down to 3-D (fine for the fronts of a few hundred points that studies produce).

    Raises:
        ValueError: A point has another number of objectives than `reference`.
    """
    ref = np.asarray(reference, dtype=float).reshape(-1)
    pts = np.asarray(points, dtype=float)
    if pts.size == 0:
        return 0.0
    if pts.ndim != 2 or pts.shape[1] != len(ref):
        raise ValueError(f"every point needs {len(ref)} objectives")
    inside = pts[np.all(pts < ref, axis=1)]
    if len(ref) == 3 and 0 < len(inside) <= GRID_3D_MAX:
        return _volume_3d(inside, ref)
    return _volume([tuple(p) for p in inside.tolist()], tuple(ref.tolist()))


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
    if len(ref) == 3 and len(pts) <= GRID_3D_MAX:
        return _volume_3d(np.asarray(pts, dtype=float), np.asarray(ref, dtype=float))
    pts = sorted(pts, key=lambda p: p[-1])
    volume = 0.0
    for i, p in enumerate(pts):
        upper = pts[i + 1][-1] if i + 1 < len(pts) else ref[-1]
        if upper > p[-1]:
            volume += (upper - p[-1]) * _volume([q[:-1] for q in pts[: i + 1]], ref[:-1])
    return volume


# Above this many points the 3-D grid's n x n matrix (8 n^2 bytes) gives way to slicing.
GRID_3D_MAX = 2048


def _volume_3d(points: np.ndarray, ref: np.ndarray) -> float:
    """Exact 3-D hypervolume of loss `points` (n, 3), all strictly inside `ref` (3,): O(n^2).

    The x and y coordinates of the points cut the (x, y) plane into an n x n grid of cells; cell
    (i, j), between the i-th and (i+1)-th smallest x and the j-th and (j+1)-th smallest y (the
    last cells end at the reference), is covered up to the lowest z of the points whose x-rank
    is <= i and y-rank <= j. That height is a running maximum of `ref_z - z` over both ranks, so
    the volume is `dx @ H @ dy`. Dominated points and ties need no care: they only add cells of
    zero width or heights already reached.
    """
    n = len(points)
    by_x, by_y = np.argsort(points[:, 0]), np.argsort(points[:, 1])
    y_rank = np.empty(n, dtype=int)
    y_rank[by_y] = np.arange(n)
    heights = np.zeros((n, n))
    heights[np.arange(n), y_rank[by_x]] = ref[2] - points[by_x, 2]
    np.maximum.accumulate(heights, axis=0, out=heights)
    np.maximum.accumulate(heights, axis=1, out=heights)
    dx = np.diff(np.append(points[by_x, 0], ref[0]))
    dy = np.diff(np.append(points[by_y, 1], ref[1]))
    return float(dx @ heights @ dy)


def reference_point(points: Sequence[Sequence[float]], margin: float = 0.1) -> tuple[float, ...]:
    """The worst loss of each objective pushed out by `margin` of its range, so the extreme front
    points still add volume (Optuna's hypervolume plots ask the user for this point)."""
    ref = []
    for k in range(len(points[0])):
        column = [p[k] for p in points]
        worst = max(column)
        span = (worst - min(column)) or abs(worst) or 1.0
        ref.append(worst + margin * span)
    return tuple(ref)


def readable_reference(
    values: Sequence[Sequence[float]], directions: Sequence[str], margin: float = 0.1
) -> tuple[float, ...]:
    """A reference point a reader can check, in the objectives' own units (not loss space).

    Like `reference_point`, the worst value of each objective pushed out by `margin` of its
    range, then rounded outwards to two significant digits of that range (168,305 -> 190,000),
    and never past zero for an objective whose values are all >= 0 (an accuracy's reference is
    0, not -0.0031). A design at the reference value itself adds no volume.

    Args:
        values: Objective values of the points, in their own units, one row per point.
        directions: "minimize" or "maximize", one per objective.
        margin: How far beyond the worst value, as a share of the objective's range.

    Returns:
        The reference point in the objectives' own units.
    """
    ref = []
    for k, direction in enumerate(directions):
        column = [float(v[k]) for v in values]
        loss = [-x if direction == "maximize" else x for x in column]
        worst = max(loss)
        span = (worst - min(loss)) or abs(worst) or 1.0
        quantum = 10.0 ** (np.floor(np.log10(span)) - 1)
        r = float(np.ceil((worst + margin * span) / quantum) * quantum)
        r = float(f"{r:.12g}")  # no 0.30000000000000004
        natural = -r if direction == "maximize" else r
        if min(column) >= 0 and natural < 0:
            natural = 0.0
        ref.append(natural + 0.0)
    return tuple(ref)


def hypervolume_history(
    points: Sequence[Sequence[float]], ref: Sequence[float]
) -> list[float]:
    """Hypervolume of the front of points[:i+1] for every i, updated incrementally.

    2-D: the running front is kept sorted by the first objective (so the second strictly
    decreases); a new point is dominated only by its left neighbour or by a point with the same
    first value, and the points it dominates are contiguous to its right. More objectives: a new
    non-dominated point adds its improvement over the running front (`_improvement`). Repeats of a
    design change nothing.
    """
    if len(ref) != 2:
        return _history_nd(points, ref)
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
                volume = hypervolume(list(zip(xs, ys)), ref)
        history.append(volume)
    return history


def _history_nd(points: Sequence[Sequence[float]], ref: Sequence[float]) -> list[float]:
    reference = np.asarray(ref, dtype=float)
    points = np.asarray(points, dtype=float).reshape(-1, len(reference))
    inside = np.all(points < reference, axis=1)
    front = np.empty_like(points)  # the running front is front[:size]
    size, volume = 0, 0.0
    history = np.empty(len(points))
    for i, point in enumerate(points):
        if inside[i] and not (front[:size] <= point).all(axis=1).any():
            current = front[:size]
            volume += _improvement(point, current, reference)
            kept = current[~(point <= current).all(axis=1)]
            size = len(kept)
            front[:size], front[size] = kept, point
            size += 1
        history[i] = volume
    return history.tolist()


def _improvement(point: np.ndarray, front: np.ndarray, ref: np.ndarray) -> float:
    """The volume `point` (inside `ref`) adds to `front`: its box less the front clipped to the
    box. Clipped, a front of hundreds keeps a handful of minimal points (`_weakly_minimal`)."""
    box = float(np.prod(ref - point))
    if not len(front):
        return box
    return max(box - hypervolume(_weakly_minimal(np.maximum(front, point)), ref), 0.0)


def _weakly_minimal(points: np.ndarray) -> np.ndarray:
    """The points (n, m) no other point weakly dominates, repeats kept once: in lexicographic
    order the first point is minimal, and every later point it weakly dominates goes. Cost
    O(n * result), so it suits sets with small fronts (as clipped ones)."""
    rest = points[np.lexsort(points.T[::-1])]
    kept = []
    while len(rest):
        kept.append(rest[0])
        rest = rest[1:][~(rest[0] <= rest[1:]).all(axis=1)]
    return np.asarray(kept).reshape(-1, points.shape[1])


def normalized(volume: float, ideal: Sequence[float], ref: Sequence[float]) -> float:
    """`volume` as a share of the box between the ideal point (best loss of each objective) and
    `ref`: a unitless number in [0, 1] that reads the same for any objectives."""
    box = float(np.prod([r - i for i, r in zip(ideal, ref)]))
    return volume / box if box > 0 else 0.0


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
    front = front[np.all(front < ref, axis=1)]
    return np.asarray([_improvement(p, front, ref) if np.all(p < ref) else 0.0 for p in points])


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

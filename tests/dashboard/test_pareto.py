"""Pareto fronts and hypervolume against brute force and Optuna's own hypervolume."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from optuna._hypervolume import compute_hypervolume

from mixnas import pareto
from mixnas.pareto import (
    front_2d,
    front_nd,
    hypervolume_history,
    normalized,
    readable_reference,
    reference_point,
    to_loss,
)

# Small integer grids make ties and duplicates common, which is where fronts go wrong.
coordinate = st.integers(0, 6).map(float)


def points_of(dim: int, max_size: int = 40):
    return st.lists(st.tuples(*[coordinate] * dim), max_size=max_size)


def brute_front(points: list[tuple]) -> list[int]:
    def dominates(a, b):
        return all(x <= y for x, y in zip(a, b)) and a != b

    return [i for i, p in enumerate(points) if not any(dominates(q, p) for q in points)]


@given(points_of(2))
@settings(max_examples=200, deadline=None)
def test_front_2d_is_the_non_dominated_set_with_duplicates(points):
    front = front_2d(points)
    assert sorted(front) == brute_front(points)
    assert [points[i][0] for i in front] == sorted(points[i][0] for i in front)  # sweep order


@given(st.integers(1, 4).flatmap(points_of))
@settings(max_examples=200, deadline=None)
def test_front_nd_is_the_non_dominated_set(points):
    assert front_nd(points) == brute_front(points)


def test_fronts_handle_infinities_like_any_value():
    points = [(float("inf"), 0.0), (1.0, float("inf")), (2.0, 2.0), (float("inf"), float("inf"))]
    assert sorted(front_2d(points)) == front_nd(points) == [0, 1, 2]


def test_to_loss_negates_maximised_objectives():
    assert to_loss((1.0, 2.0, 3.0), ["minimize", "maximize", "minimize"]) == (1.0, -2.0, 3.0)


@given(points_of(2, max_size=30).filter(bool))
@settings(max_examples=150, deadline=None)
def test_hypervolume_history_matches_optuna_on_every_prefix(points):
    ref = reference_point(points)
    history = hypervolume_history(points, ref)
    assert len(history) == len(points)
    for i in range(len(points)):
        expected = compute_hypervolume(np.asarray(points[: i + 1]), np.asarray(ref))
        assert history[i] == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_reference_point_lies_beyond_the_worst_values():
    points = [(1.0, 10.0), (3.0, 4.0), (2.0, 6.0)]
    assert reference_point(points) == pytest.approx((3.2, 10.6))
    assert reference_point([(5.0, 0.0)]) == pytest.approx((5.5, 0.1))  # no range: 10% of |worst|


@given(st.integers(3, 4).flatmap(lambda d: points_of(d, max_size=25)).filter(bool))
@settings(max_examples=80, deadline=None)
def test_nd_hypervolume_history_matches_optuna_on_every_prefix(points):
    ref = reference_point(points)
    history = hypervolume_history(points, ref)
    for i in range(len(points)):
        expected = compute_hypervolume(np.asarray(points[: i + 1]), np.asarray(ref))
        assert history[i] == pytest.approx(expected, rel=1e-9, abs=1e-9)


@given(points_of(3, max_size=60), st.tuples(*[st.integers(2, 7).map(float)] * 3))
@settings(max_examples=150, deadline=None)
def test_3d_grid_volume_matches_optuna_and_slicing(points, ref):
    # the reference cuts through the points: some lie on or beyond it and add nothing
    expected = compute_hypervolume(
        np.asarray([p for p in points if all(x < r for x, r in zip(p, ref))] or [ref]),
        np.asarray(ref),
    )
    assert pareto.hypervolume(points, ref) == pytest.approx(expected, rel=1e-12, abs=1e-12)
    grid_max = pareto.GRID_3D_MAX
    try:
        pareto.GRID_3D_MAX = 0  # the slicing path that large fronts take
        assert pareto.hypervolume(points, ref) == pytest.approx(expected, rel=1e-12, abs=1e-12)
    finally:
        pareto.GRID_3D_MAX = grid_max


def test_readable_reference_is_round_and_never_crosses_zero():
    values = [(0.05, 168_305.0, -3.0), (0.95, 20_000.0, -1.0)]
    ref = readable_reference(values, ["maximize", "minimize", "minimize"])
    # accuracy would be 0.05 - 0.09 < 0: clipped to 0; params rounded up on the range's scale
    assert ref == (0.0, 190_000.0, -0.8)
    assert readable_reference([(5.0,)], ["minimize"]) == (5.5,)


def test_normalized_hypervolume_is_a_share_of_the_box():
    assert normalized(2.0, ideal=(0.0, 0.0), ref=(2.0, 2.0)) == 0.5
    assert normalized(1.0, ideal=(1.0, 0.0), ref=(1.0, 2.0)) == 0.0

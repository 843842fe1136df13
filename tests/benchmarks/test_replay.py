"""Replay mode on a small synthetic table: enumeration, lookups, seeding, hypervolume curves."""

import itertools
import random

import pytest

from benchmarks.tabular.hypervolume import Normaliser, hypervolume
from benchmarks.tabular.replay import Replay, replay, trials_to_fraction
from benchmarks.tabular.table import NotFinite, Row, Table, distinct_architectures, enumerate_space
from mixnas.search_space.constraints import footprint
from mixnas.search_space.grammar import Grammar
from mixnas.search_space.sampling import RandomDecider, ScriptedDecider

# 2 widths x (4 token derivations x 2 channel mixers)^2 = 128 derivations; `full` builds the same
# network as attention with 4 heads, so there are 2 x (3 x 2)^2 = 72 distinct architectures.
GRAMMAR = """\
name: tiny
architecture:
  d_model: {choice: [16, 32]}
  depth: 2
  layers: stack
rules:
  stack: {per_layer: layer}
  layer: {token_mixer: token_mixer, channel_mixer: channel_mixer}
  token_mixer:
    - {primitive: attention, params: {heads: {choice: [2, 4]}}}
    - {primitive: attention, label: full, params: {heads: 4, window: null}}
    - {primitive: short_conv}
  channel_mixer:
    - {primitive: none}
    - {primitive: swiglu}
"""
OBJECTIVES = [("accuracy", "maximize"), ("non_embedding_params", "minimize")]


def synthetic_accuracy(arch) -> float:
    """More attention layers, MLPs and width score higher; deterministic."""
    attention = sum(layer.token_mixer.type == "attention" for layer in arch.layers)
    mlps = sum(layer.channel_mixer.type == "swiglu" for layer in arch.layers)
    return 0.1 + 0.3 * attention / 2 + 0.05 * mlps + 0.02 * (arch.d_model == 32)


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tabular")
    path = tmp / "tiny.yaml"
    path.write_text(GRAMMAR)
    grammar = Grammar.load(path)
    table = Table(tmp / "tiny.sqlite")
    for h, (decisions, arch) in distinct_architectures(grammar).items():
        if arch.d_model == 16 and all(layer.token_mixer.type == "short_conv" for layer in arch.layers):
            table.add(Row(h, arch.canonical_json(), decisions, "failed", reason="diverged"))
            continue
        params = footprint(arch).non_embedding_params
        table.add(Row(h, arch.canonical_json(), decisions, "complete",
                      {"accuracy": synthetic_accuracy(arch)}, {"non_embedding_params": params}))
    table.set_meta(settings={"task": {"name": "mqar"}, "budget": {"steps": 1}})
    yield grammar, table
    table.close()


def test_enumeration_visits_every_derivation_once(space):
    grammar, table = space
    derivations = list(enumerate_space(grammar))
    assert len(derivations) == 128
    keys = {tuple(sorted(d.items())) for d, _ in derivations}
    assert len(keys) == 128, "no derivation is visited twice"
    distinct = distinct_architectures(grammar)
    assert len(distinct) == 72
    decider = RandomDecider(0)
    for _ in range(100):
        assert grammar.sample(decider).hash in distinct
    for h, (decisions, _) in distinct.items():  # the stored decisions derive the same network
        assert grammar.sample(ScriptedDecider(decisions)).hash == h


def test_enumeration_refuses_a_continuous_space(tmp_path):
    path = tmp_path / "cont.yaml"
    path.write_text(GRAMMAR.replace("{primitive: swiglu}", "{primitive: swiglu, params: "
                                    "{expand: {float: [1.0, 4.0]}}}"))
    with pytest.raises(NotFinite, match="continuous"):
        list(enumerate_space(Grammar.load(path)))


def test_replay_looks_up_the_table(space):
    grammar, table = space
    result = replay(table, grammar, OBJECTIVES, sampler="random", n_trials=60, seed=3)
    assert len(result.hashes) == len(result.values) == 60
    for h, values in zip(result.hashes, result.values):
        row = table.lookup(h)
        if row.status == "complete":
            assert values == [row.metrics["accuracy"], row.profile["non_embedding_params"]]
        else:
            assert values is None
    assert result.distinct > 20


def test_replay_is_deterministic_per_seed(space):
    grammar, table = space
    a = replay(table, grammar, OBJECTIVES, sampler="nsga2", n_trials=25, seed=1)
    b = replay(table, grammar, OBJECTIVES, sampler="nsga2", n_trials=25, seed=1)
    c = replay(table, grammar, OBJECTIVES, sampler="nsga2", n_trials=25, seed=2)
    assert a.hashes == b.hashes and a.values == b.values
    assert a.hashes != c.hashes


@pytest.mark.parametrize("sampler", ["nsga2", "tpe", "random"])
@pytest.mark.parametrize("mode", ["arch", "params"])
def test_seeds_are_the_first_trials(space, sampler, mode):
    grammar, table = space
    rows = [r for r in table.rows().values() if r.status == "complete"][:3]
    seeds = [r.architecture for r in rows]
    result = replay(table, grammar, OBJECTIVES, sampler=sampler, n_trials=12, seed=0,
                    seeds=seeds, seed_mode=mode)
    assert result.hashes[:3] == [r.hash for r in rows]
    assert len(result.hashes) == 12


def test_missing_architecture_names_the_table(space, tmp_path):
    grammar, _ = space
    with Table(tmp_path / "empty.sqlite") as empty, pytest.raises(KeyError, match="not in the table"):
        replay(empty, grammar, OBJECTIVES, sampler="random", n_trials=1)


def test_hypervolume_curve_grows_to_the_full_front(space):
    grammar, table = space
    normaliser = Normaliser([d for _, d in OBJECTIVES], table.values(OBJECTIVES))
    full = normaliser.hypervolume(table.values(OBJECTIVES))
    assert 0 < full < 1
    rows = list(table.rows().values())
    random.Random(0).shuffle(rows)
    everything = Replay("manual", 0, OBJECTIVES, [r.hash for r in rows],
                        [[r.measured[n] for n, _ in OBJECTIVES] if r.status == "complete" else None
                         for r in rows])
    curve = everything.hypervolume_curve(normaliser)
    assert all(b >= a for a, b in zip(curve, curve[1:]))
    assert curve[-1] == pytest.approx(full)
    t95 = trials_to_fraction([v / full for v in curve], 0.95)
    assert t95 is not None and curve[t95 - 1] >= 0.95 * full > (curve[t95 - 2] if t95 > 1 else 0)
    sampled = replay(table, grammar, OBJECTIVES, sampler="random", n_trials=10, seed=0)
    assert max(sampled.hypervolume_curve(normaliser)) <= full + 1e-12


def test_hypervolume_exact_values():
    assert hypervolume([(0.5, 0.5)], (1, 1)) == pytest.approx(0.25)
    assert hypervolume([(0.0, 0.5), (0.5, 0.0)], (1, 1)) == pytest.approx(0.75)
    assert hypervolume([(0.2, 0.2), (0.5, 0.5)], (1, 1)) == pytest.approx(0.64)  # dominated point
    assert hypervolume([(1.5, 0.0), (1.0, 0.5)], (1, 1)) == 0.0  # beyond the reference
    assert hypervolume([], (1, 1)) == 0.0
    assert hypervolume([(0.5, 0.5, 0.5)], (1, 1, 1)) == pytest.approx(0.125)


def test_hypervolume_matches_counting_cells_in_3d():
    rng = random.Random(0)
    for _ in range(20):
        points = [tuple(rng.randint(0, 5) for _ in range(3)) for _ in range(7)]
        cells = sum(
            any(all(p[i] <= c[i] for i in range(3)) for p in points)
            for c in itertools.product(range(6), repeat=3)
        )
        assert hypervolume(points, (6, 6, 6)) == pytest.approx(cells)


def test_normaliser_maps_best_to_0_and_worst_to_1():
    n = Normaliser(["maximize", "minimize"], [[0.2, 100], [0.8, 300], [0.5, 200]])
    assert n([0.8, 100]) == (0.0, 0.0)
    assert n([0.2, 300]) == (1.0, 1.0)
    assert n([0.5, 200]) == pytest.approx((0.5, 0.5))
    with pytest.raises(ValueError, match="direction"):
        Normaliser(["up"], [[1.0]])


def test_trials_to_fraction():
    assert trials_to_fraction([0.1, 0.5, 0.96, 1.0], 0.95) == 3
    assert trials_to_fraction([0.1, 0.5], 0.95) is None

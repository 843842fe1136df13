"""Rung dominance: stop a trial only when another is clearly better AND no more expensive."""

from mixnas.orchestrator.pruning import RungEntry, dominator, split_objectives

QUALITY = {"accuracy": "maximize"}
COSTS = {"non_embedding_params": "minimize"}


def entry(number, accuracy, params):
    return RungEntry(number, {"accuracy": accuracy}, {"non_embedding_params": params})


def test_clearly_better_and_cheaper_dominates():
    me = entry(5, 0.30, 1000)
    better = entry(1, 0.90, 800)
    assert dominator(me, [better], QUALITY, COSTS, margin=0.1) == better


def test_better_but_more_expensive_does_not_dominate():
    me = entry(5, 0.30, 1000)
    assert dominator(me, [entry(1, 0.95, 5000)], QUALITY, COSTS, margin=0.1) is None


def test_within_margin_does_not_dominate():
    me = entry(5, 0.85, 1000)
    assert dominator(me, [entry(1, 0.90, 500)], QUALITY, COSTS, margin=0.1) is None


def test_missing_cost_never_supports_dominance():
    me = RungEntry(5, {"accuracy": 0.1}, {})
    assert dominator(me, [entry(1, 0.99, 10)], QUALITY, COSTS, margin=0.1) is None


def test_minimized_quality_metric():
    me = RungEntry(5, {"loss": 3.0}, {"non_embedding_params": 100})
    other = RungEntry(1, {"loss": 1.0}, {"non_embedding_params": 100})
    assert dominator(me, [other], {"loss": "minimize"}, COSTS, margin=0.5) == other
    assert dominator(other, [me], {"loss": "minimize"}, COSTS, margin=0.5) is None


def test_a_trial_never_dominates_itself():
    me = entry(5, 0.3, 1000)
    assert dominator(me, [entry(5, 0.99, 1)], QUALITY, COSTS, margin=0.1) is None


def test_split_objectives():
    objectives = [
        {"name": "accuracy", "direction": "maximize"},
        {"name": "state_bytes", "direction": "minimize"},
        {"name": "loss", "direction": "minimize"},
        {"name": "prefill_ms@512", "direction": "minimize"},
    ]
    quality, costs = split_objectives(objectives)
    assert quality == {"accuracy": "maximize", "loss": "minimize"}
    assert costs == {"state_bytes": "minimize", "prefill_ms@512": "minimize"}

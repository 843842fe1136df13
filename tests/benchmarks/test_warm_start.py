"""The warm-start benchmark's runs: a replayed earlier study becomes a source whose front is
enqueued first and whose trials the surrogate learns from (on the shipped MQAR table)."""

import pytest

from benchmarks.tabular.build import TABLE
from benchmarks.tabular.table import Table
from benchmarks.warm_start import MQAR, _one, _source, _transfer


@pytest.mark.slow
def test_warm_run_enqueues_the_source_front_and_weighs_the_source():
    with Table(TABLE) as table:
        rows = sorted(table.rows().values(), key=lambda r: -r.metrics["accuracy"])
    hashes = [r.hash for r in rows[:6]] + [r.hash for r in rows[-6:]]
    earlier = {"label": "surrogate", "seed": 0, "hashes": hashes}
    source = _source(earlier, None)
    assert len(source.trials) == 12 and source.name == "surrogate-0"
    front = {t.arch_json for t in source.front()}
    inverted = _source(earlier, "invert")
    assert {t.arch_json for t in inverted.front()} != front  # the worst designs now look best
    job = {"label": "warm", "sampler": "surrogate", "seed": 0, "spec": MQAR, "n_trials": 10,
           "options": {"candidates": 8}, "transform": None, "source": earlier}
    run = _one(job)
    assert run["enqueued"] == len(front)
    assert run["hashes"][: len(front)] != [] and len(run["curve"]) == 10
    assert all(a <= b for a, b in zip(run["curve"], run["curve"][1:]))
    assert run["source_weight"][: len(front)] == [None] * len(front)  # enqueued: no screen
    assert all(0.0 <= w <= 1.0 for w in run["source_weight"][len(front):])
    cold = {**run, "label": "cold", "source_weight": [None] * 10, "enqueued": 0}
    summary = _transfer([run, cold], "warm", "cold")
    assert summary["seeds_compared"] == 1 and summary["median_enqueued"] == len(front)

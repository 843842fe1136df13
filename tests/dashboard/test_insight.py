"""The "what matters" API and the compare API: importances, composition rows, the cache, the
minimum below which a figure is hidden, and two studies side by side."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from mixnas.dashboard.app import create_app
from mixnas.dashboard.demo import OBJECTIVES, build_demo_db
from mixnas.dashboard.designs import describe
from mixnas.pareto import Point, front
from mixnas.storage import TrialRecord, utcnow

from .conftest import TestClient
from .test_api import db_rows

NAMES = [o["name"] for o in OBJECTIVES]


def distinct_complete(url: str) -> list[tuple]:
    rows = db_rows(url, "SELECT number, arch_hash, params FROM mixnas_trials "
                        "WHERE state = 'complete' ORDER BY number")
    seen, first = set(), []
    for number, design, params in rows:
        if design not in seen:
            seen.add(design)
            first.append((number, params))
    return first


def test_importances_per_objective_on_distinct_designs(client, demo_db):
    answer = client.get("/api/studies/demo/insight").json()
    found = answer["importance"]
    designs = distinct_complete(demo_db)
    assert found["n"] == sum(1 for _, params in designs if params not in (None, "null"))
    assert found["hidden"] is None and found["evaluator"] == "PED-ANOVA"
    assert set(found["by_objective"]) == set(NAMES)
    for ranking in [*found["by_objective"].values(), found["front"]]:
        values = [v for _, v in ranking]
        assert values == sorted(values, reverse=True)
        assert sum(values) == pytest.approx(1.0, abs=1e-4)  # rounded to 6 places each
    # the demo's cost model makes latency grow with d_model**1.6 * depth: those two lead
    assert {found["by_objective"]["latency_ms"][0][0]} <= {"d_model", "depth"}


def test_composition_rows_read_the_architecture(client, demo_db):
    comp = client.get("/api/studies/demo/insight").json()["composition"]
    assert [r[0] for r in comp["rows"]] == [n for n, _ in distinct_complete(demo_db)]
    by_number = {r[0]: dict(zip(comp["fields"], r)) for r in comp["rows"]}
    assert by_number[0]["attention_share"] == 1.0  # transformer++
    assert by_number[0]["placement"] == "all attention"
    gdn = by_number[3]  # gdn-3:1: three gated DeltaNet layers, then attention
    assert (gdn["attention_share"], gdn["placement"], gdn["recurrent_family"]) == (
        0.25, "last", "delta")
    assert comp["decisions"] and len(comp["rows"][0][7]) == len(comp["decisions"])


def test_design_placement_rules():
    import json

    def arch(*types):
        return json.dumps({"d_model": 64, "layers": [
            {"token_mixer": {"type": t, "params": {}}, "channel_mixer": {"type": "none"}}
            for t in types]})

    assert describe(arch("attention", "mamba2", "attention", "mamba2")).placement == "interleaved"
    assert describe(arch("mamba2", "attention", "mamba2")).placement == "middle"
    assert describe(arch("attention", "gla", "gla")).placement == "first"
    assert describe(arch("gla", "gla")).placement == "no attention"
    assert describe(arch("gla", "mamba2", "mamba2")).recurrent_family == "ssm"
    assert describe("{not json") is None


def test_importances_are_cached_until_the_trials_change(writable_db):
    with TestClient(create_app(writable_db)) as client:
        first = client.get("/api/studies/demo/insight").json()
        again = client.get("/api/studies/demo/insight").json()
        assert (first["cached"], again["cached"]) == (False, True)
        now = utcnow()
        with Session(create_engine(writable_db)) as session:
            session.add(TrialRecord(
                study_id=1, number=1000, state="complete", started_at=now - timedelta(seconds=1),
                finished_at=now, params={"d_model": 64, "depth": 2, "norm": "rms"},
                values={"loss": 3.0, "latency_ms": 0.5, "mqar_acc": 0.5},
            ))
            session.commit()
        changed = client.get("/api/studies/demo/insight").json()
        assert changed["cached"] is False
        assert changed["importance"]["n"] == first["importance"]["n"] + 1


def test_too_few_designs_hide_the_figures_with_a_reason(tmp_path):
    url = build_demo_db(tmp_path / "small.db", n_trials=12, with_optuna=False)
    with TestClient(create_app(url)) as client:
        found = client.get("/api/studies/demo/insight").json()
    assert found["importance"]["by_objective"] == {}
    assert "importances need at least 20" in found["importance"]["hidden"]


def test_compare_two_studies_matches_shared_designs(tmp_path):
    url = build_demo_db(tmp_path / "two.db", n_trials=40, with_optuna=False)
    build_demo_db(url, n_trials=30, seed=5, study_name="child", with_optuna=False)
    with TestClient(create_app(url)) as client:
        answer = client.get("/api/compare?a=demo&b=child").json()
        assert client.get("/compare?a=demo&b=child").status_code == 200
        assert client.get("/api/compare?a=demo").status_code == 400
        assert client.get("/api/compare?a=demo&b=nope").status_code == 404
        assert client.get("/compare?a=demo&b=child&x=loss&y=mqar_acc&front=all").status_code == 200
        bad = client.get("/compare?a=demo&b=child&x=params")
        assert bad.status_code == 400 and "is not an objective both studies share" in bad.text
        assert client.get("/compare?a=demo&b=child&front=pair").status_code == 400
        assert client.get("/api/compare?a=demo&b=child&x=loss").status_code == 400  # page-only
    assert [o["name"] for o in answer["objectives"]] == NAMES
    a, b = answer["studies"]
    assert (a["name"], b["name"]) == ("demo", "child")
    # both studies start from the same four baselines: the same designs, matched by hash
    shared = {m["design"]: m for m in answer["shared_designs"]}
    hashes = dict(db_rows(url, "SELECT number, arch_hash FROM mixnas_trials WHERE study_id = 1"))
    for number in range(4):
        assert shared[hashes[number]]["a"] == number == shared[hashes[number]]["b"]
    assert set(a["front"]) <= set(a["trials"]) and set(b["front"]) <= set(b["trials"])
    # the front of each pair of objectives, by mixnas.pareto over the designs' two values
    assert sorted(a["pair_fronts"]) == ["latency_ms,mqar_acc", "loss,latency_ms", "loss,mqar_acc"]
    values = dict(zip(a["trials"], a["values"]))
    points = [Point(n, (v[0], v[2])) for n, v in values.items()]
    expected = [p.number for p in front(points, ["minimize", "maximize"])]
    assert a["pair_fronts"]["loss,mqar_acc"] == expected

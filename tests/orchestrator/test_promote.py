"""Promotion: scaling rules, and a real promoted study trained by the driver on a local Ray."""

import json
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import sqlalchemy as sa

from mixnas.errors import StudyExists
from mixnas.orchestrator.config import Objective, StudyConfig
from mixnas.orchestrator.promote import (
    Scaling,
    promote,
    promoted_name,
    promotion_report,
    quality_objective,
    scale_architecture,
    scale_budget,
    top_designs,
    verdict,
)
from mixnas.orchestrator.study import create_study
from mixnas.search_space import Architecture, Layer, Mixer
from mixnas.search_space.constraints import footprint
from mixnas.stats import rank_agreement
from mixnas.storage import StudyRecord, TrialRecord

REPO = Path(__file__).resolve().parents[2]


def arch(d_model, *layers):
    return Architecture(d_model, [Layer(Mixer(t, p), Mixer(c)) for t, p, c in layers])


def test_scaling_multiplies_width_depth_and_budget():
    small = arch(64, ("attention", {"heads": 4}, "swiglu"), ("mamba2", {"heads": 2}, "none"))
    big = scale_architecture(small, 2)
    assert big.d_model == 128 and len(big.layers) == 4
    assert [l.token_mixer.type for l in big.layers] == ["attention", "mamba2"] * 2
    assert big.layers[0].token_mixer.params == {"heads": 4}
    assert footprint(big).non_embedding_params > 4 * footprint(small).non_embedding_params
    odd = scale_architecture(arch(48, ("attention", {"heads": 4}, "none")), 1.5)
    assert odd.d_model % 32 == 0 and odd.d_model == 64  # 72 rounded to a multiple of 4 heads x 8
    assert len(scale_architecture(small, 1.5).layers) == 3  # a, b, a
    assert scale_budget({"steps": 300, "eval_every": 50}, 2) == {"steps": 600, "eval_every": 100}
    assert scale_budget({"tokens": 10_000}, 4) == {"tokens": 40_000}
    assert scale_budget({"tokens": 1000}, 1.5) == {"tokens": 1500}
    assert promoted_name("quick", 2) == "quick-x2" and promoted_name("quick", 1.5) == "quick-x1.5"
    with pytest.raises(ValueError, match="positive"):
        scale_architecture(small, 0)


def test_width_depth_and_budget_factors_apart():
    scaling = Scaling.of(2, depth=1, budget=4)
    assert (scaling.width, scaling.depth, scaling.budget) == (2, 1, 4)
    assert promoted_name("lm", scaling) == "lm-w2-d1-b4"
    assert promoted_name("lm", Scaling.of(3)) == "lm-x3"
    small = arch(64, ("attention", {"heads": 4}, "swiglu"), ("mamba2", {"heads": 2}, "none"))
    wide = scale_architecture(small, scaling.width, scaling.depth)
    assert wide.d_model == 128 and len(wide.layers) == 2
    with pytest.raises(ValueError, match="--budget: the factor must be above 0"):
        Scaling.of(2, budget=0)


def test_verdict_compares_the_searched_pick_with_the_best_large_baseline():
    pairs = [  # bpb: lower is better
        {"parent_trial": 5, "baseline": None, "small": 2.0, "large": 1.55},
        {"parent_trial": 7, "baseline": None, "small": 2.1, "large": 1.50},
        {"parent_trial": 0, "baseline": "transformer", "small": 2.2, "large": 1.60},
        {"parent_trial": 1, "baseline": "mamba2", "small": 2.3, "large": 1.58},
    ]
    v = verdict(pairs, Objective("bpb", "minimize"))
    assert v["pick_parent_trial"] == 5 and v["best_baseline"] == "mamba2"
    assert v["margin"] == pytest.approx(0.03) and v["pick_beats_best_baseline"]
    assert v["pick_rank_large"] == 2 and v["designs"] == 4
    worse = [dict(p, large=1.7) if p["parent_trial"] == 5 else p for p in pairs]
    v = verdict(worse, Objective("bpb", "minimize"))
    assert not v["pick_beats_best_baseline"] and v["margin"] == pytest.approx(-0.12)
    assert verdict(pairs[:2], Objective("bpb", "minimize")) is None  # no baseline promoted


def test_rank_agreement_has_reproducible_bootstrap_intervals():
    x = [0.1, 0.4, 0.2, 0.9, 0.5, 0.3, 0.8, 0.7]
    y = [1.0, 3.5, 2.5, 8.0, 4.0, 2.0, 9.0, 6.0]
    a, b = rank_agreement(x, y), rank_agreement(x, y)
    assert a == b and a["n"] == 8
    assert a["ci95"][0] <= a["spearman"] <= a["ci95"][1] <= 1.0
    assert a["kendall_ci95"][0] <= a["kendall"] <= a["kendall_ci95"][1]
    perfect = rank_agreement(x, [2 * v for v in x])
    assert perfect["spearman"] == 1.0 and perfect["ci95"] == [1.0, 1.0]
    assert rank_agreement(x, [1.0] * 8)["ci95"] is None


def test_scaling_keeps_parallel_branches_buildable():
    mixer = {"branches": [{"type": "attention", "params": {"heads": 4}},
                          {"type": "mamba2", "params": {"heads": 2}}]}
    small = arch(32, ("parallel", mixer, "none"))
    big = scale_architecture(small, 3)
    assert big.d_model >= 96 and (big.d_model // 2) % 4 == 0
    footprint(big)


def test_top_designs_rank_by_the_quality_objective():
    front = [
        {"trial": 0, "values": {"accuracy": 0.5}, "architecture": {}},
        {"trial": 3, "values": {"accuracy": 0.9}, "architecture": {}},
        {"trial": 1, "values": {"accuracy": 0.9}, "architecture": {}},
        {"trial": 2, "values": {"accuracy": 0.7}, "architecture": None},
    ]
    top = top_designs(front, Objective("accuracy", "maximize"), 2)
    assert [t["trial"] for t in top] == [1, 3]
    assert [t["trial"] for t in top_designs(front, Objective("accuracy", "minimize"), 9)] == [0, 1, 3]


def test_the_quality_objective_is_the_first_that_is_not_a_cost():
    study = SimpleNamespace(name="s", task={"name": "mqar"})  # the fields quality_objective reads
    study.objectives = [Objective("state_bytes", "minimize"), Objective("accuracy", "maximize"),
                        Objective("loss", "minimize")]
    assert quality_objective(study).name == "accuracy"
    study.objectives = [Objective("state_bytes", "minimize"), Objective("prefill_ms@64", "minimize")]
    with pytest.raises(ValueError, match="no quality objective"):
        quality_objective(study)


def rank_correlation(small, large):
    out = rank_agreement(small, large)
    return out["spearman"], out["spearman_p"]


def test_rank_correlation():
    rho, p = rank_correlation([0.1, 0.2, 0.3, 0.4], [1.0, 3.0, 2.0, 4.0])
    assert rho == pytest.approx(0.8) and 0 < p < 1
    assert rank_correlation([0.1, 0.2, 0.3], [3.0, 2.0, 1.0])[0] == pytest.approx(-1.0)
    assert rank_correlation([0.1, 0.2], [1.0, 2.0]) == (None, None)
    assert rank_correlation([0.1, 0.2, 0.3], [1.0, 1.0, 1.0]) == (None, None)


# A parent study written directly into the database: four designs, three on the front.
DESIGNS = [  # (token mixer, params, channel mixer, accuracy); the first is a baseline
    ("short_conv", {}, "none", 0.20),
    ("attention", {"heads": 2}, "none", 0.50),
    ("attention", {"heads": 2}, "swiglu", 0.60),
    ("hyena", {}, "none", 0.30),  # more parameters than attention+swiglu and worse: off the front
]


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("promote")
    storage = f"sqlite:///{tmp}/promote.db"
    config = StudyConfig(
        name="small",
        search_space=str(REPO / "studies/spaces/tabular.yaml"),
        task={"name": "mqar", "vocab_size": 16, "seq_len": 16, "num_kv_pairs": 2,
              "num_train": 256, "num_test": 32},
        budget={"steps": 4},
        train={"batch_size": 8},
        profile={"latency": False, "context_length": 64},
        objectives=[Objective("accuracy", "maximize"), Objective("non_embedding_params", "minimize")],
        storage=storage,
        workers=2,
        baselines=[],
    )
    handle = create_study(config)
    with handle.storage.sessions() as session, session.begin():
        for token, params, channel, accuracy in DESIGNS:
            a = arch(16, (token, params, channel))
            cost = float(footprint(a).non_embedding_params)
            trial = optuna.trial.create_trial(values=[accuracy, cost])
            handle.optuna_study.add_trial(trial)
            number = handle.optuna_study.trials[-1].number
            session.add(TrialRecord(
                study_id=handle.record_id, number=number, state="complete",
                baseline="conv" if number == 0 else None,
                arch_json=a.canonical_json(), arch_hash=a.hash, params={},
                values={"accuracy": accuracy, "non_embedding_params": cost},
            ))
    yield storage
    import ray

    if ray.is_initialized():
        ray.shutdown()


def test_promote_trains_the_top_designs_at_scale(parent):
    storage = parent
    report = promote("small", storage, top_k=2, scale=2, workers=2)
    assert report["study"] == "small-x2" and report["parent"] == "small"
    assert report["objective"] == {"name": "accuracy", "direction": "maximize"}
    # the best two front designs by accuracy, then the baseline
    assert [p["parent_trial"] for p in report["pairs"]] == [2, 1, 0]
    assert [p["small"] for p in report["pairs"]] == [0.60, 0.50, 0.20]
    assert [p["baseline"] for p in report["pairs"]] == [None, None, "conv"]
    assert report["missing"] == []
    assert report["n"] == 3 and report["verdict"]["pick_parent_trial"] == 2
    assert report["verdict"]["best_baseline"] == "conv"

    engine = sa.create_engine(storage)
    with engine.connect() as conn:
        child = conn.execute(sa.select(StudyRecord).where(StudyRecord.name == "small-x2")).one()
        assert child.parent_study == "small" and child.state == "finished"
        assert child.config["budget"]["steps"] == 8
        trials = conn.execute(sa.select(TrialRecord).where(TrialRecord.study_id == child.id)).all()
    assert len(trials) == 3 and {t.state for t in trials} == {"complete"}
    by_origin = {p["parent_trial"]: p for p in report["pairs"]}
    for t in trials:
        big = Architecture.from_json(t.arch_json)
        assert big.d_model == 32 and len(big.layers) == 2  # 16 x 2 rounded to 2 heads x 8
        label = f"small#{t.parent_trial}" + (":conv" if t.parent_trial == 0 else "")
        assert t.baseline == label  # shown by name, linked by number
        pair = by_origin[t.parent_trial]
        assert pair["large"] == t.values["accuracy"] and pair["arch_hash_large"] == t.arch_hash
        assert 0.0 <= pair["large"] <= 1.0

    assert promotion_report("small-x2", storage) == report
    with pytest.raises(StudyExists, match="already exists"):
        promote("small", storage, top_k=2, scale=2)
    with pytest.raises(ValueError, match="not made by promote"):
        promotion_report("small", storage)
    json.dumps(report)  # plain data, ready for --json

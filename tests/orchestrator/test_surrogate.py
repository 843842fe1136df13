"""The surrogate sampler, its models and the warm-start helpers, in-process (no Ray, no training).

A synthetic objective over the tabular grammar stands in for training: a score that depends on
the architecture in a learnable way (attention late, width), against exact non-embedding params.
"""

from pathlib import Path

import numpy as np
import optuna
import pytest

from mixnas.orchestrator.config import Objective, StudyConfig
from mixnas.orchestrator.study import make_sampler
from mixnas.orchestrator.surrogate import SCREEN_ATTR, SurrogateOptions
from mixnas.orchestrator.surrogate_model import Regressor, SourceData, TransferModel
from mixnas.orchestrator.warm_start import (
    WarmSource,
    WarmTrial,
    front_to_enqueue,
    map_objectives,
    mapped_decisions,
)
from mixnas.pareto import hypervolume, hypervolume_improvement
from mixnas.search_space.features import FeatureTable, architecture_features
from mixnas.search_space.grammar import Grammar
from mixnas.search_space.sampling import OptunaDecider, RandomDecider, RecordingDecider

REPO = Path(__file__).resolve().parents[2]
GRAMMAR = REPO / "studies/spaces/tabular.yaml"
OBJECTIVES = [("score", "maximize"), ("non_embedding_params", "minimize")]


def score(arch) -> float:
    """Learnable from the features: attention in the last layer and width help."""
    last = arch.layers[-1].token_mixer
    return (2.0 * (last.type == "attention" and not last.params.get("window"))
            + arch.d_model / 64 + 0.3 * (arch.layers[0].token_mixer.type == "short_conv"))


def run_study(sampler, grammar, n_trials, enqueue=()):
    study = optuna.create_study(directions=[d for _, d in OBJECTIVES], sampler=sampler)
    for decisions in enqueue:
        study.enqueue_trial(decisions, user_attrs={"warm_start": "x"})
    archs = []
    for _ in range(n_trials):
        trial = study.ask()
        arch = grammar.sample(OptunaDecider(trial))
        params = architecture_features(arch)["log_params"]
        study.tell(trial, [score(arch), 10**params])
        archs.append(arch)
    return study, archs


def config(sampler="surrogate", **options):
    return StudyConfig(name="t", search_space=str(GRAMMAR), task={"name": "mqar"},
                       budget={"steps": 1}, objectives=[Objective(n, d) for n, d in OBJECTIVES],
                       sampler=sampler, sampler_options=options, n_trials=30, seed=3)


def test_surrogate_screens_never_repeats_and_finds_the_best_design():
    grammar = Grammar.load(GRAMMAR)
    sampler = make_sampler(config(candidates=16, inner="grammar", n_startup_trials=4))
    study, archs = run_study(sampler, grammar, 20)
    assert len({a.hash for a in archs}) == len(archs), "a trained design was proposed again"
    screens = [t.system_attrs.get(SCREEN_ATTR) for t in study.trials]
    assert screens[:4] == [None] * 4  # start-up: the inner proposal alone
    assert all(s and s["screened"] == 16 for s in screens[4:])
    assert max(score(a) for a in archs) >= 3.0  # attention last, full width
    late = [a.layers[-1].token_mixer.type == "attention" for a in archs[4:]]
    assert sum(late) / len(late) > 0.5  # a third of the space (1/6 x 2 kinds): it learnt


def test_surrogate_with_inner_tpe_and_enqueued_trials_pass_through():
    grammar = Grammar.load(GRAMMAR)
    recorder = RecordingDecider(RandomDecider(0))
    grammar.sample(recorder)
    decisions = recorder.decisions
    sampler = make_sampler(config(candidates=8, n_startup_trials=2))
    study, archs = run_study(sampler, grammar, 8, enqueue=[decisions])
    assert study.trials[0].params == decisions
    assert study.trials[0].system_attrs.get(SCREEN_ATTR) is None
    assert study.trials[-1].system_attrs[SCREEN_ATTR]["screened"] == 8


def test_warm_started_surrogate_learns_from_a_correlated_source():
    grammar = Grammar.load(GRAMMAR)
    rng = np.random.default_rng(0)
    trials = []
    for _ in range(40):
        recorder = RecordingDecider(RandomDecider(int(rng.integers(1 << 30))))
        arch = grammar.sample(recorder)
        trials.append(WarmTrial(arch.canonical_json(), recorder.decisions,
                                {"acc": 5 * score(arch)}))
    source = WarmSource("earlier", [("acc", "maximize")], trials)
    sampler = make_sampler(config(candidates=16, inner="grammar"), warm=[source])
    study, archs = run_study(sampler, grammar, 6)
    weights = study.trials[-1].system_attrs[SCREEN_ATTR]["weights"]["score"]
    assert weights["earlier"] > 0.5
    assert max(score(a) for a in archs) >= 3.0  # learnt from the source from the first trial


def test_transfer_model_drops_a_source_that_ranks_wrongly():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 3))
    y = X[:, 0] + 0.1 * rng.normal(size=60)
    good = SourceData("good", X, 3 * y + 1)
    bad = SourceData("bad", X, -y)
    fitted = [(s.name, Regressor("forest").fit(s.X, s.y)) for s in (good, bad)]
    model = TransferModel("forest", [good, bad]).fit(X[:12], y[:12])
    assert model.weights["bad"] < 0.05 and model.weights["good"] > 0.5
    mean, std = model.predict(X[12:])
    assert np.corrcoef(mean, y[12:])[0, 1] > 0.8 and np.all(std > 0)
    assert fitted  # plain regressors fit and predict as well


@pytest.mark.parametrize("kind", ["forest", "gp", "gbm"])
def test_regressors_predict_with_uncertainty(kind):
    rng = np.random.default_rng(2)
    X = rng.uniform(size=(30, 2))
    y = np.sin(3 * X[:, 0]) + X[:, 1]
    mean, std = Regressor(kind).fit(X, y).predict(X)
    assert np.corrcoef(mean, y)[0, 1] > 0.9 and np.all(std > 0)
    constant = Regressor(kind).fit(X[:1], y[:1]).predict(X)
    assert np.allclose(constant[0], y[0])


def test_hypervolume_improvement_matches_the_definition():
    rng = np.random.default_rng(3)
    for m in (2, 3):
        front = rng.uniform(size=(5, m))
        points = rng.uniform(size=(20, m)) * 1.2
        ref = np.full(m, 1.1)
        want = [hypervolume(list(front) + [p], ref) - hypervolume(front, ref) for p in points]
        assert np.allclose(hypervolume_improvement(points, front, ref), want)
        assert np.allclose(hypervolume_improvement(points, front[:0], ref),
                           [hypervolume([p], ref) for p in points])


def test_features_are_the_same_names_for_every_architecture():
    grammar = Grammar.load(GRAMMAR)
    a, b = grammar.sample(RandomDecider(0)), grammar.sample(RandomDecider(5))
    fa, fb = architecture_features(a), architecture_features(b)
    assert set(fa) == set(fb) and fa["depth"] == 2
    assert sum(fa[f"token.{f}.count"] for f in ("attention", "attention_window", "conv",
                                                 "delta", "ssm", "linear")) == 2
    table = FeatureTable([fa])
    assert table.matrix([{**fb, "unknown": 1.0}]).shape == (1, len(fa))


def test_objectives_map_by_name_then_task_scores_in_order():
    target = [("bpb", "minimize"), ("non_embedding_params", "minimize")]
    source = [("accuracy", "maximize"), ("state_bytes", "minimize"),
              ("non_embedding_params", "minimize")]
    assert map_objectives(target, source) == {
        "non_embedding_params": ("non_embedding_params", "minimize"),
        "bpb": ("accuracy", "maximize"),
    }


def test_front_maps_onto_the_same_grammar_and_not_onto_another():
    grammar = Grammar.load(GRAMMAR)
    other = Grammar.load(REPO / "studies/spaces/quickstart.yaml")
    trials = []
    for seed in range(6):
        recorder = RecordingDecider(RandomDecider(seed))
        arch = grammar.sample(recorder)
        trials.append(WarmTrial(arch.canonical_json(), recorder.decisions,
                                {"acc": score(arch), "p": float(seed)}))
    source = WarmSource("s", [("acc", "maximize"), ("p", "minimize")], trials)
    assert all(mapped_decisions(grammar, t) == t.params for t in trials)
    assert all(mapped_decisions(other, t) is None for t in trials)
    queued = front_to_enqueue(grammar, [source])
    assert queued and len(queued) == len(source.front())
    assert front_to_enqueue(other, [source]) == []


def test_bad_surrogate_options_are_one_line_errors():
    with pytest.raises(ValueError, match="unknown surrogate option 'candidate'"):
        SurrogateOptions.from_dict({"candidate": 3})
    with pytest.raises(ValueError, match="'model' must be one of"):
        SurrogateOptions.from_dict({"model": "xgb"})
    with pytest.raises(ValueError, match="'candidates' must be a positive int"):
        SurrogateOptions.from_dict({"candidates": 0})

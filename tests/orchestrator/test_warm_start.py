"""Warm starts through the real CLI, Ray and SQLite: an MQAR study, then an LM study learning from it
with the surrogate sampler; and the bad inputs that must stop before anything is written."""

import json
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa

from mixnas.orchestrator.surrogate import SCREEN_ATTR
from mixnas.storage import StudyRecord, TrialRecord

from .test_end_to_end import mixnas  # the CLI in a subprocess, as users run it

REPO = Path(__file__).resolve().parents[2]
TABULAR = REPO / "studies/spaces/tabular.yaml"

FIRST = f"""\
name: first
search_space: {TABULAR}
task: {{name: mqar, vocab_size: 16, seq_len: 16, num_kv_pairs: 2, num_train: 256, num_test: 32}}
budget: {{steps: 8}}
train: {{lr: 3.0e-3, batch_size: 16}}
objectives:
  - {{name: accuracy, direction: maximize}}
  - {{name: non_embedding_params, direction: minimize}}
profile: {{latency: false}}
sampler: random
n_trials: 5
workers: 2
seed: 1
baselines: []
pruning: {{enabled: false}}
"""

SECOND = """\
name: second
search_space: {space}
task: {{name: lm, max_bytes: 20000, seq_len: 16, num_val: 8}}
budget: {{steps: 6}}
train: {{lr: 3.0e-3, batch_size: 8}}
objectives:
  - {{name: bpb, direction: minimize}}
  - {{name: non_embedding_params, direction: minimize}}
profile: {{latency: false}}
sampler: surrogate
sampler_options: {{candidates: 8, n_startup_trials: 1, mc_samples: 16}}
n_trials: {n}
workers: 2
seed: 2
baselines: []
pruning: {{enabled: false}}
"""


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("warm")
    (tmp / "first.yaml").write_text(FIRST)
    url = f"sqlite:///{tmp}/studies.db"
    mixnas("study", "start", str(tmp / "first.yaml"), "--storage", url, "--quiet")
    return tmp, url


def _studies(url):
    with sa.create_engine(url).connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(StudyRecord)).scalar()


@pytest.mark.slow
def test_warm_started_surrogate_study_re_evaluates_the_front_and_learns_from_it(first):
    tmp, url = first
    path = tmp / "second.yaml"
    path.write_text(SECOND.format(space=TABULAR, n=6))
    mixnas("study", "start", str(path), "--storage", url, "--warm-start", "first", "--quiet")
    front = json.loads(mixnas("study", "pareto", "first", "--storage", url, "--json").stdout)
    front_hashes = [entry["arch_hash"] for entry in front]
    second = optuna.load_study(study_name="second", storage=url)
    trials = sorted(second.trials, key=lambda t: t.number)
    queued = [t for t in trials if t.user_attrs.get("warm_start") == "first"]
    assert [t.number for t in queued] == list(range(len(queued)))  # enqueued first
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = {r.number: r for r in conn.execute(
            sa.select(TrialRecord).join(StudyRecord).where(StudyRecord.name == "second"))}
        record = conn.execute(sa.select(StudyRecord).where(StudyRecord.name == "second")).one()
    assert record.config["warm_start"] == ["first"] and record.state == "finished"
    assert sorted(rows[t.number].arch_hash for t in queued) == sorted(set(front_hashes))
    for t in queued:  # trained again on the new task: its own metric, not a copied one
        assert rows[t.number].state == "complete" and "bpb" in rows[t.number].values
    screens = [t.system_attrs.get(SCREEN_ATTR) for t in trials if t not in queued]
    screened = [s for s in screens if s and s["screened"]]
    assert screened, screens
    assert all("first" in s["weights"]["bpb"] for s in screened)
    assert len({rows[t.number].arch_hash for t in trials}) == len(trials)  # nothing twice


def test_warm_start_from_a_study_that_does_not_exist_writes_nothing(first):
    tmp, url = first
    path = tmp / "missing.yaml"
    path.write_text(SECOND.format(space=TABULAR, n=2).replace("name: second", "name: missing"))
    before = _studies(url)
    proc = mixnas("study", "start", str(path), "--storage", url, "--warm-start", "frist",
                  check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no study named 'frist'" in lines[0] and "first" in lines[0]
    assert _studies(url) == before
    fresh = tmp / "fresh.db"
    proc = mixnas("study", "start", str(path), "--storage", f"sqlite:///{fresh}",
                  "--warm-start", "first", check=False)
    assert proc.returncode == 2 and "no mixnas database" in proc.stderr
    assert not fresh.exists()


def test_warm_start_from_a_study_whose_grammar_does_not_map_writes_nothing(first):
    tmp, url = first
    path = tmp / "other.yaml"
    other = SECOND.format(space=REPO / "studies/spaces/quickstart.yaml", n=2)
    path.write_text(other.replace("name: second", "name: other") + "warm_start: [first]\n")
    before = _studies(url)
    proc = mixnas("study", "start", str(path), "--storage", url, check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot be mapped onto this study's grammar" in lines[0]
    assert str(path) in lines[0]
    assert _studies(url) == before


@pytest.mark.parametrize("text, message", [
    ("warm_start: 3\n", "'warm_start' must be list or str"),
    ("warm_start: [3]\n", "'warm_start' must be a list of study names"),
    ("warm_start: [second]\n", "cannot warm-start from itself"),
    ("sampler_options: {model: xgboost}\n", "sampler_options: surrogate option 'model'"),
])
def test_bad_warm_start_and_surrogate_settings_name_the_line(tmp_path, text, message):
    from mixnas.errors import ConfigError
    from mixnas.orchestrator.config import load_study_config

    study = SECOND.format(space=TABULAR, n=2).replace(
        "sampler_options: {candidates: 8, n_startup_trials: 1, mc_samples: 16}\n", "")
    path = tmp_path / "s.yaml"
    path.write_text(study + text)
    with pytest.raises(ConfigError, match=message) as info:
        load_study_config(path, validate_names=False)
    assert f"{path}:{len(study.splitlines()) + 1}:" in str(info.value)

"""A tiny study through the real CLI, a real local Ray instance and a real SQLite file."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from mixnas.storage import CurvePoint, StudyRecord, TrialRecord

REPO = Path(__file__).resolve().parents[2]

STUDY = """\
name: tiny
search_space: {space}
task: {{name: mqar, vocab_size: 16, seq_len: 32, num_kv_pairs: 4}}
budget: {{steps: 40}}
train: {{lr: 3.0e-3, batch_size: 32}}
objectives:
  - {{name: accuracy, direction: maximize}}
  - {{name: non_embedding_params, direction: minimize}}
  - {{name: state_bytes, direction: minimize}}
profile: {{latency: false}}
n_trials: {n}
workers: 2
seed: 1
baselines: []
pruning: {{enabled: false}}
"""


def mixnas(*args, check=True):
    proc = subprocess.run(
        [sys.executable, "-m", "mixnas.cli", *args],
        capture_output=True, text=True, timeout=600, cwd=REPO,
        env={**__import__("os").environ, "CI": "true"},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"mixnas {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    path = tmp / "tiny.yaml"
    path.write_text(STUDY.format(space=REPO / "studies/spaces/quickstart.yaml", n=4))
    url = f"sqlite:///{tmp}/tiny.db"
    mixnas("study", "start", str(path), "--storage", url, "--quiet")
    return path, url


def test_study_runs_to_completion_and_stores_everything(study):
    _, url = study
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        record = conn.execute(sa.select(StudyRecord)).one()
        assert record.state == "finished"
        trials = conn.execute(sa.select(TrialRecord)).all()
        assert len(trials) >= 4
        done = [t for t in trials if t.state in ("complete", "infeasible")]
        assert len(done) >= 4, [(t.state, t.failure_reason) for t in trials]
        complete = [t for t in trials if t.state == "complete"]
        assert complete, [(t.state, t.failure_reason) for t in trials]
        for t in complete:
            arch = json.loads(t.arch_json)
            assert arch["layers"] and len(t.arch_hash) == 16
            assert 0.0 <= t.metrics["accuracy"] <= 1.0
            assert t.profile["non_embedding_params"] > 0
            assert set(t.values) == {"accuracy", "non_embedding_params", "state_bytes"}
        curve = conn.execute(sa.select(CurvePoint)).all()
        assert curve, "learning curves are kept"
        assert not [t for t in trials if t.state == "running"]


def test_status_and_pareto_json_match_optuna(study):
    import optuna

    _, url = study
    status = json.loads(mixnas("study", "status", "tiny", "--storage", url, "--json").stdout)
    assert status["name"] == "tiny"
    assert status["objectives"][0] == {"name": "accuracy", "direction": "maximize"}
    assert set(status["trials"]) >= {"complete", "running", "failed", "pruned"}
    assert status["trials"]["running"] == 0

    front = json.loads(mixnas("study", "pareto", "tiny", "--storage", url, "--json").stdout)
    assert front, "the Pareto front is not empty"
    optuna_front = optuna.load_study(study_name="tiny", storage=url).best_trials
    assert sorted(item["trial"] for item in front) == sorted(t.number for t in optuna_front)
    for item in front:
        assert set(item) == {"trial", "values", "arch_hash", "architecture"}
        assert item["architecture"]["layers"]


def test_second_start_refuses_and_resume_continues(study):
    path, url = study
    again = mixnas("study", "start", str(path), "--storage", url, check=False)
    assert again.returncode == 2
    assert "already exists" in again.stderr and "mixnas study resume tiny" in again.stderr
    assert "Traceback" not in again.stderr

    mixnas("study", "resume", "tiny", "--storage", url, "--n-trials", "6", "--quiet")
    status = json.loads(mixnas("study", "status", "tiny", "--storage", url, "--json").stdout)
    trials = status["trials"]
    assert trials["complete"] + trials["failed"] + trials["pruned"] + trials["infeasible"] >= 6


@pytest.mark.parametrize(
    "args,message",
    [
        (["study", "start", "no/such/file.yaml"], "no such file"),
        (["study", "status", "nope", "--storage", "sqlite:///{tmp}/x.db"], "no study named 'nope'"),
        (["study", "list", "--storage", "bogus://"], "storage URL"),
        (["study", "list", "--storage", "postgresql+psycopg://postgres@127.0.0.1:1/none"], "cannot reach storage"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    proc = mixnas(*args, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr

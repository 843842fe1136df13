"""A study does not train the same architecture twice: a trial the sampler draws again completes
with the earlier trial's result, also when it is drawn while that trial is still training (real
CLI, real Ray, real SQLite)."""

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa

from mixnas.storage import TrialRecord

REPO = Path(__file__).resolve().parents[2]

# One architecture in all, so that every trial after the first repeats it.
SPACE = """\
name: one-design
architecture:
  d_model: 16
  depth: 1
  tie_embeddings: false
  layers: stack
rules:
  stack:
    motif: [layer]
  layer:
    token_mixer: conv
    channel_mixer: none
  conv:
    primitive: short_conv
    params:
      conv_size: 3
  none:
    primitive: none
"""

STUDY = """\
name: {name}
search_space: {space}
task: {{name: mqar, vocab_size: 16, seq_len: 16, num_kv_pairs: 2}}
budget: {{steps: 10}}
objectives:
  - {{name: accuracy, direction: maximize}}
  - {{name: non_embedding_params, direction: minimize}}
profile: {{latency: false}}
sampler: random
n_trials: 5
workers: {workers}
baselines: []
pruning: {{enabled: false}}
reuse_results: {reuse}
"""


def mixnas(*args):
    proc = subprocess.run(
        [sys.executable, "-m", "mixnas.cli", *args],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )
    assert proc.returncode == 0, f"mixnas {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reuse")
    (tmp / "space.yaml").write_text(SPACE)
    url = f"sqlite:///{tmp}/reuse.db"
    # two workers: the repeats are drawn while the first trial is still training
    for name, reuse, workers in (("reusing", "true", 2), ("retraining", "false", 1)):
        path = tmp / f"{name}.yaml"
        path.write_text(
            STUDY.format(name=name, space=tmp / "space.yaml", reuse=reuse, workers=workers)
        )
        mixnas("study", "start", str(path), "--storage", url, "--quiet")
    return tmp, url


def trials(url, study_name):
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        study_id = conn.execute(
            sa.text("SELECT id FROM mixnas_studies WHERE name = :n"), {"n": study_name}
        ).scalar_one()
        return conn.execute(
            sa.select(TrialRecord).where(TrialRecord.study_id == study_id)
            .order_by(TrialRecord.number)
        ).all()


def test_each_architecture_is_trained_once_and_repeats_reuse_its_result(db):
    _, url = db
    rows = trials(url, "reusing")
    assert len(rows) == 5 and all(t.state == "complete" for t in rows)
    first, *repeats = rows
    assert first.duplicate_of is None and first.compute_seconds > 0
    for t in repeats:
        assert t.duplicate_of == first.number and t.arch_hash == first.arch_hash
        assert t.values == first.values and t.metrics == first.metrics
        assert t.compute_seconds == 0.0
    told = optuna.load_study(study_name="reusing", storage=url)
    assert [tuple(t.values) for t in told.trials] == [
        tuple(t.values[n] for n in ("accuracy", "non_embedding_params")) for t in rows
    ]


def test_reuse_can_be_turned_off(db):
    _, url = db
    rows = trials(url, "retraining")
    assert len(rows) == 5 and all(t.state == "complete" for t in rows)
    assert all(t.duplicate_of is None and t.compute_seconds > 0 for t in rows)
    assert len({t.arch_hash for t in rows}) == 1


def test_front_lists_each_architecture_once_and_repeats_export_with_the_weights(db):
    tmp, url = db
    front = json.loads(mixnas("study", "pareto", "reusing", "--storage", url, "--json"))
    assert [p["trial"] for p in front] == [0]
    out = tmp / "export"
    mixnas("export", "reusing", "--storage", url, "--trial", "3", "-o", str(out))
    assert (out / "model.safetensors").is_file()
    assert json.loads((out / "config.json").read_text())["d_model"] == 16

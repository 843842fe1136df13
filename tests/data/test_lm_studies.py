"""Language-model studies: the shipped study files validate, the lm task trains on a prepared
corpus, and bad corpus settings in a study file are one line and exit 2 with nothing written."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from mixnas.cli import main
from mixnas.data import PrepareOptions, prepare
from mixnas.evaluator import evaluate
from mixnas.orchestrator.config import load_study_config
from mixnas.search_space import get_baseline

from .test_prepare import write_docs

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bpe_corpus(tmp_path_factory):
    """A small BPE corpus prepared the way lm-gpu.yaml's is (`--tokenizer bpe:8192`): the
    trainer learns fewer merges on little text, but the corpus records what was asked."""
    root = tmp_path_factory.mktemp("corpus")
    docs = write_docs(root / "docs", n=60)
    prepare(PrepareOptions([str(docs)], root / "bpe8k", tokenizer="bpe:8192", val_frac=0.3))
    return root / "bpe8k"


def copy_study(tmp: Path, name: str, data: Path) -> Path:
    """The shipped study files and grammars, with `data` where study `name` expects its corpus."""
    shutil.copytree(REPO / "studies", tmp / "studies")
    study = tmp / "studies" / f"{name}.yaml"
    target = (study.parent / yaml.safe_load(study.read_text())["task"]["data"]).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(data, target)
    return study


def test_lm_gpu_study_validates_on_cpu(tmp_path, bpe_corpus):
    study = copy_study(tmp_path, "lm-gpu", bpe_corpus)
    config = load_study_config(study)
    assert config.task["seq_len"] >= 1024 and config.task["tokenizer"] == "bpe:8192"
    assert Path(config.task["data"]).is_absolute()  # resolved against the study file
    assert config.budget["tokens"] * config.n_trials >= 100_000_000  # hundreds of millions
    assert [o.name for o in config.objectives] == ["bpb", "non_embedding_params", "state_bytes"]
    assert config.profile["context_length"] == 4096


def test_lm_cpu_study_validates(tmp_path):
    src = write_docs(tmp_path / "docs", n=40)
    data = tmp_path / "bytes"
    prepare(PrepareOptions([str(src)], data, val_frac=0.3))
    study = copy_study(tmp_path, "lm", data)
    config = load_study_config(study)
    assert config.n_trials >= 24 and config.train["schedule"] == "wsd"
    assert config.task["tokenizer"] == "byte" and config.baselines == ["all"]  # seeded first
    assert [o.name for o in config.objectives] == ["bpb", "non_embedding_params", "state_bytes"]


def test_lm_task_trains_on_a_prepared_corpus(bpe_corpus):
    task = {"name": "lm", "data": str(bpe_corpus), "tokenizer": "bpe:8192", "seq_len": 32,
            "num_val": 8}
    result = evaluate(get_baseline("transformer"), task,
                      {"steps": 3, "rungs": [0.5], "eval_every": 3},  # evaluated at rung and end
                      {"batch_size": 4, "eval_batch_size": 8},
                      {"latency": False, "context_length": 64}, device="cpu")
    embedding = result.profile["params"] - result.profile["non_embedding_params"]
    assert result.vocab_size > 256 and embedding == 64 * result.vocab_size  # tied, width 64
    for name in ("val_loss", "bpb", "perplexity"):
        assert result.metrics[name] > 0
    assert [p["rung"] for p in result.curve] == [0, None]


STUDY = """\
name: lmbad
search_space: {space}
task: {{name: lm, data: {data}, seq_len: 16, num_val: 4{extra}}}
budget: {{steps: 2}}
objectives:
  - {{name: bpb, direction: minimize}}
n_trials: 1
baselines: []
"""
BAD = {
    "missing corpus": ("{tmp}/nowhere", "", "no meta.json"),
    "other tokenizer": ("{corpus}", ", tokenizer: bpe:4096", "prepared with tokenizer bpe:8192"),
    "unknown tokenizer": ("{corpus}", ", tokenizer: sentencepiece", "sentencepiece"),
    "raw-file setting with data": ("{corpus}", ", max_bytes: 1000", "setting 'max_bytes'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_corpus_in_a_study_is_one_line_and_writes_nothing(case, tmp_path, bpe_corpus,
                                                               capsys):
    data, extra, needle = BAD[case]
    study = tmp_path / "lm.yaml"
    study.write_text(STUDY.format(space=REPO / "studies/spaces/lm-cpu.yaml", extra=extra,
                                  data=data.format(tmp=tmp_path, corpus=bpe_corpus)))
    db = tmp_path / "s.db"
    assert main(["study", "start", str(study), "--storage", f"sqlite:///{db}", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and f"{study}:3" in err
    assert not db.exists()

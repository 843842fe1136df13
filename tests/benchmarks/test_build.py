"""Building a table with the real evaluator (a 2-architecture space, a few training steps)."""

import pytest

from benchmarks.tabular.build import build
from benchmarks.tabular.table import Table

GRAMMAR = """\
name: two
architecture:
  d_model: 16
  depth: 1
  layers: stack
rules:
  stack: {per_layer: layer}
  layer: {token_mixer: token_mixer, channel_mixer: {primitive: none}}
  token_mixer:
    - {primitive: attention, params: {heads: 2}}
    - {primitive: short_conv}
"""
SETTINGS = {
    "task": {"name": "mqar", "vocab_size": 16, "seq_len": 16, "num_kv_pairs": 2,
             "num_train": 64, "num_test": 16},
    "budget": {"steps": 2},
    "train": {"batch_size": 8},
    "profile": {"latency": False, "context_length": 32},
    "seed": 0,
}


def test_build_is_resumable_and_refuses_other_settings(tmp_path):
    grammar = tmp_path / "two.yaml"
    grammar.write_text(GRAMMAR)
    path = tmp_path / "two.sqlite"
    logs = []
    assert build(path, grammar, limit=1, settings=SETTINGS, log=logs.append) == 1
    assert build(path, grammar, settings=SETTINGS, log=logs.append) == 1  # only the missing one
    assert build(path, grammar, settings=SETTINGS, log=logs.append) == 0
    assert "2 architectures" in logs[0]
    with Table(path) as table:
        rows = list(table.rows().values())
        assert len(rows) == 2 and {r.status for r in rows} == {"complete"}
        for row in rows:
            assert 0.0 <= row.metrics["accuracy"] <= 1.0
            assert row.profile["non_embedding_params"] > 0 and row.seconds > 0
            assert row.architecture.hash == row.hash
        meta = table.meta()
        assert meta["settings"] == SETTINGS and "torch" in meta["versions"]
    other = {**SETTINGS, "budget": {"steps": 3}}
    with pytest.raises(SystemExit, match="settings differ"):
        build(path, grammar, settings=other, log=logs.append)

"""The published MQAR result: attention solves multi-query associative recall, short convolutions
of the same size cannot (they only see a few tokens back).

Settings: MQAR with vocab 64, seq_len 64, 8 key-value pairs, 500 test sequences; width 64, two
layers (token mixer + SwiGLU), untied embeddings; AdamW lr 3e-3, batch 32, up to 600 steps with
evaluations every 100 (training stops early once test accuracy reaches 0.999).
"""

import pytest

from mixnas.evaluator import evaluate
from mixnas.search_space import Architecture, Layer, Mixer

TASK = {"name": "mqar", "vocab_size": 64, "seq_len": 64, "num_kv_pairs": 8, "num_test": 500}
BUDGET = {"steps": 600, "eval_every": 100}
TRAIN = {"lr": 3e-3, "batch_size": 32}


def two_layer(token: Mixer) -> Architecture:
    return Architecture(64, [Layer(token, Mixer("swiglu", {}))] * 2, tie_embeddings=False)


@pytest.mark.slow
def test_attention_solves_mqar_and_short_convolutions_do_not():
    profile = {"latency": False, "context_length": 64}
    attention = evaluate(two_layer(Mixer("attention", {"heads": 2})), TASK, BUDGET, TRAIN, profile)
    conv = evaluate(two_layer(Mixer("short_conv", {"conv_size": 4})), TASK, BUDGET, TRAIN, profile)
    assert attention.metrics["accuracy"] > 0.95, attention.curve
    assert conv.metrics["accuracy"] < 0.5, conv.curve

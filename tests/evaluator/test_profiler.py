"""Profile fields: present, consistent with the model's own formulas, latency optional."""

import pytest

from mixnas.evaluator import PROFILE_METRICS, evaluate, profile_metric_names
from mixnas.search_space import build_model

from .helpers import EASY, QUICK_TRAIN, tiny_arch

LATENCY = {
    "latency": True,
    "context_length": 64,
    "seq_lens": [16, 32],
    "repeats": 2,
    "decode_tokens": 3,
}


@pytest.mark.parametrize("token", ["attention", "short_conv", "gated_deltanet"])
def test_profile_fields_match_the_model(token):
    arch = tiny_arch(token, d_model=32, layers=2)
    result = evaluate(arch, EASY, {"steps": 2}, QUICK_TRAIN, LATENCY)
    prof = result.profile
    assert set(prof) == set(profile_metric_names(LATENCY))
    assert set(profile_metric_names(LATENCY)) - {"prefill_ms@16", "prefill_ms@32"} < set(
        PROFILE_METRICS
    )
    model = build_model(arch, result.vocab_size)
    assert prof["state_bytes"] == model.state_bytes(64)
    assert prof["params"] == model.num_params(non_embedding=False)
    assert prof["non_embedding_params"] == model.num_params(non_embedding=True)
    assert prof["flops_per_token"] == model.flops_per_token(64)
    # every non-embedding weight is used in a matmul or convolution of the forward pass
    assert prof["flops_per_token_counted"] >= 1.5 * prof["non_embedding_params"]
    assert prof["peak_memory_bytes"] > 4 * 4 * prof["params"]  # weights, grads, 2 Adam moments
    assert prof["prefill_ms"] == prof["prefill_ms@32"]
    assert all(prof[k] > 0 for k in ("train_step_ms", "prefill_ms@16", "decode_ms_per_token"))


def test_counted_attention_flops_grow_with_context():
    arch = tiny_arch("attention", d_model=32)
    short, long = (
        evaluate(arch, EASY, {"steps": 1}, QUICK_TRAIN, {"latency": False, "context_length": t})
        for t in (64, 256)
    )
    # a causal query attends (T + 1) / 2 keys on average, each pair costing 4 * d FLOPs
    extra = long.profile["flops_per_token_counted"] - short.profile["flops_per_token_counted"]
    assert extra == 2 * (256 - 64) * 32


def test_latency_is_optional():
    result = evaluate(
        tiny_arch(), EASY, {"steps": 1}, QUICK_TRAIN, {"latency": False, "context_length": 32}
    )
    assert (
        set(result.profile)
        == set(profile_metric_names({"latency": False}))
        == {
            "params",
            "non_embedding_params",
            "flops_per_token",
            "flops_per_token_counted",
            "state_bytes",
            "peak_memory_bytes",
        }
    )

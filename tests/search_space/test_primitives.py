"""Every primitive: forward/backward, causality, step form == parallel form, state size, FLOPs.

The hand-picked cases below pin exact expectations; `check_primitive` (what `mixnas primitive
check` runs on users' primitives) checks the same properties over each declared domain.
"""

import pytest
import torch

from mixnas.search_space.architecture import Mixer
from mixnas.search_space.checks import check_primitive, counted_flops, run_steps, tensor_bytes
from mixnas.search_space.primitives.common import attention_flops
from mixnas.search_space.registry import REGISTRY, build_mixer, get_primitive

D = 16
T = 24

PARALLEL_CONCAT = {
    "branches": [
        {"type": "attention", "params": {"heads": 2}},
        {"type": "gated_deltanet", "params": {"heads": 2}},
    ],
    "combine": "concat",
}
PARALLEL_MIX = {
    "branches": [
        {"type": "mamba2", "params": {"heads": 2, "d_state": 4}},
        {"type": "attention", "params": {"heads": 2, "window": 5}},
        {"type": "short_conv", "params": {}},
    ],
    "combine": "mix",
}

TOKEN_CASES = [
    ("attention", {"heads": 4}),
    ("attention", {"heads": 4, "kv_heads": 2}),
    ("attention", {"heads": 2, "kv_heads": 1, "rope": False}),
    ("attention", {"heads": 2, "window": 5}),
    ("mla", {"heads": 2, "kv_rank": 8, "rope_dim": 4}),
    ("mla", {"heads": 2, "kv_rank": 6, "rope_dim": 0}),
    ("linear_attention", {"heads": 2, "feature_map": "elu1", "feature_dim": 8}),
    ("linear_attention", {"heads": 2, "feature_map": "taylor", "feature_dim": 4}),
    ("retention", {"heads": 2}),
    ("retention", {"heads": 2, "rope": False}),
    ("gla", {"heads": 2, "gate_rank": 4}),
    ("mamba2", {"heads": 2, "expand": 2, "d_state": 4, "conv_size": 3}),
    ("deltanet", {"heads": 2}),
    ("gated_deltanet", {"heads": 2, "conv_size": 3}),
    ("hyena", {"order": 2, "filter_hidden": 8}),
    ("hyena", {"order": 3, "filter_hidden": 8, "filter_bands": 2}),
    ("short_conv", {"conv_size": 3}),
    ("parallel", PARALLEL_CONCAT),
    ("parallel", PARALLEL_MIX),
]
CHANNEL_CASES = [
    ("mlp", {"activation": "gelu"}),
    ("mlp", {"activation": "relu2", "expand": 2.0}),
    ("swiglu", {}),
    ("geglu", {"expand": 2.0}),
    ("moe", {"experts": 4, "top_k": 2, "expand": 1.0}),
    ("moe", {"experts": 3, "top_k": 1, "expert": "mlp"}),
]
CASES = [("token", *c) for c in TOKEN_CASES] + [("channel", *c) for c in CHANNEL_CASES]
IDS = [f"{name}-{i}" for i, (_, name, _) in enumerate(CASES)]


def build(role, name, params):
    torch.manual_seed(0)
    return build_mixer(Mixer(name, params), role, D).float()


def test_every_primitive_is_covered():
    covered = {name for _, name, _ in CASES}
    # built-ins only: plugin tests in the same session register primitives of their own
    builtin = {name for name, spec in REGISTRY.items()
               if getattr(spec.build, "__module__", "").startswith("mixnas.search_space")}
    assert covered == builtin - {"none"}
    assert get_primitive("none").build(D) is None


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted({name for _, name, _ in CASES} - {"parallel"}))
def test_every_builtin_passes_the_primitive_check(name):
    failures = check_primitive(get_primitive(name), examples=3)
    assert [f.line(name) for f in failures] == []


@pytest.mark.parametrize("role,name,params", CASES, ids=IDS)
def test_backward_is_causal_and_reaches_every_parameter(role, name, params):
    module = build(role, name, params)
    x = torch.randn(2, T, D, requires_grad=True)
    y = module(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    cut = T // 2
    y[:, cut].square().sum().backward()
    seen, unseen = x.grad[:, : cut + 1].abs().max(), x.grad[:, cut + 1:].abs().max()
    assert seen > 0
    assert unseen <= 1e-6 * seen  # output at cut never sees later inputs (FFT round-off aside)
    y = module(x)
    (y.square().sum() + (module.aux_loss if name == "moe" else 0)).backward()
    for pname, p in module.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("role,name,params", CASES, ids=IDS)
def test_future_tokens_never_change_earlier_outputs(role, name, params):
    module = build(role, name, params)
    torch.manual_seed(1)
    x = torch.randn(2, T, D)
    x2 = x.clone()
    x2[:, T - 7:] = torch.randn(2, 7, D)
    y, y2 = module(x), module(x2)
    torch.testing.assert_close(y[:, : T - 7], y2[:, : T - 7], atol=1e-5, rtol=1e-5)
    assert (y[:, T - 7:] - y2[:, T - 7:]).abs().max() > 1e-4


@pytest.mark.parametrize("role,name,params", CASES, ids=IDS)
def test_step_form_equals_parallel_form_and_state_bytes(role, name, params):
    module = build(role, name, params)
    torch.manual_seed(2)
    x = torch.randn(2, T, D)
    with torch.no_grad():
        expected = module(x)
        got, state = run_steps(module, x)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    # state_bytes is per sequence: the batch of 2 holds twice as much
    assert tensor_bytes(state) == 2 * module.state_bytes(T, bytes_per_element=4)
    assert module.state_bytes(T, bytes_per_element=2) * 2 == module.state_bytes(T, 4)


def test_attention_cache_grows_and_window_caps_it():
    full = build("token", "attention", {"heads": 4, "kv_heads": 2})
    local = build("token", "attention", {"heads": 4, "kv_heads": 2, "window": 8})
    hd = D // 4
    assert full.state_bytes(100) == 2 * 2 * hd * 100 * 2
    assert local.state_bytes(100) == local.state_bytes(8) == 2 * 2 * hd * 8 * 2
    assert local.state_bytes(5) == full.state_bytes(5)
    recurrent = build("token", "gated_deltanet", {"heads": 2})
    assert recurrent.state_bytes(10) == recurrent.state_bytes(10_000) > 0
    mla = build("token", "mla", {"heads": 2, "kv_rank": 8, "rope_dim": 4})
    assert mla.state_bytes(100) == (8 + 4) * 100 * 2


# FlopCounterMode counts matmuls and convolutions as executed, and nothing else. Dense primitives
# (MLPs, GLUs, MoE, convolutions, Hyena without its FFTs, which it cannot see) must match to 1%.
# Where a kernel runs, the reference does more than the analytic count: attention materialises the
# full T x T score matrix (twice the causal average; for a sliding window it still computes all of
# it, so those cases are counted as full attention), chunked linear attention computes full
# chunk x chunk blocks, the delta rule adds the WY terms. At seq 64 (one whole chunk, no padding)
# that keeps the measured count within a factor of 2 of the analytic one.
@pytest.mark.parametrize("role,name,params", CASES, ids=IDS)
def test_flops_per_token_matches_flop_counter(role, name, params):
    module = build(role, name, params)
    seq = 64
    if getattr(module, "window", None):
        module.window = None
    analytic = module.flops_per_token(seq)
    assert analytic > 0
    if name == "hyena":
        analytic = _hyena_without_fft(module, seq)
    measured = counted_flops(module, torch.randn(1, seq, D)) / seq
    if get_primitive(name).family in ("mlp", "glu", "moe", "conv"):
        assert measured == pytest.approx(analytic, rel=0.01)
    else:
        assert 0.5 <= measured / analytic <= 2.0, (measured, analytic)


def _hyena_without_fft(module, seq):
    d, h, c = module.d_model, module.filter_hidden, (module.order - 1) * module.d_model
    proj = 2 * d * (module.order + 1) * d + 2 * d * d + 2 * module.conv.weight.numel()
    mlp = 2 * ((1 + 2 * module.filter_bands) * h + h * h + h * c)
    assert module.flops_per_token(seq) > proj + mlp  # the FFTs add to it
    return proj + mlp


@pytest.mark.parametrize("seq,window", [(1, None), (7, None), (7, 3), (50, 8), (8, 8), (5, 9)])
def test_attention_flops_is_the_causal_average(seq, window):
    keys = [min(t, window or t) for t in range(1, seq + 1)]
    expected = 2 * 3 * (4 + 5) * sum(keys) / seq
    assert attention_flops(seq, heads=3, qk_dim=4, v_dim=5, window=window) == pytest.approx(expected)


def test_moe_reports_balance_loss():
    module = build("channel", "moe", {"experts": 4, "top_k": 2})
    assert module.aux_loss is None
    module(torch.randn(2, T, D))
    assert module.aux_loss.dim() == 0 and module.aux_loss.requires_grad
    assert 0.5 <= module.aux_loss.item() <= 4.0  # 1 when balanced, `experts` when collapsed


@pytest.mark.parametrize(
    "mixer,role,message",
    [
        (Mixer("attention", {"heads": 3}), "token", "d_model 16 is not divisible by heads 3"),
        (Mixer("attention", {"heads": 4, "kv_heads": 3}), "token", "not a multiple of kv_heads"),
        (Mixer("attention", {"heads": 0}), "token", "attention.heads: 0 is below the minimum"),
        (Mixer("linear_attention", {"feature_map": "exp"}), "token", "feature_map: 'exp' is not"),
        (Mixer("moe", {"top_k": 5}), "channel", "top_k 5 must be between 1 and experts 4"),
        (Mixer("mlp", {"expand": "4"}), "channel", "mlp.expand: expected a number"),
        (Mixer("swiglu"), "token", "swiglu' is a channel mixer"),
        (Mixer("nope"), "token", "unknown primitive 'nope'"),
        (Mixer("parallel", {"branches": [{"type": "attention"}]}), "token", "at least 2"),
        (
            Mixer("parallel", {"branches": [{"type": "gla", "params": {"heads": 3}}] * 2}),
            "token",
            "parallel: branch 0: gla: d_model 8 is not divisible by heads 3",
        ),
    ],
)
def test_bad_parameters_give_one_line_errors(mixer, role, message):
    with pytest.raises(ValueError, match=message) as err:
        build_mixer(mixer, role, D, where="layer 1 token_mixer: ")
    assert str(err.value).startswith("layer 1 token_mixer: ") and "\n" not in str(err.value)

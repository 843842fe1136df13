"""FlopCounterMode counts the Triton custom ops with the analytic formulas, and the reference
path (torch ops, on CPU) close to the same numbers. The Triton ops run on the test device
(_device.py); the references on CPU, whose attention op has our registered formula."""

from functools import partial

import pytest
import torch
import torch.nn.functional as F

from mixnas.kernels import reference as R
from mixnas.kernels import triton_ops
from mixnas.kernels.flops import (
    FlopCounterMode,
    attended_pairs,
    attention_flops,
    linear_attention_flops,
)

from ._device import DEVICE


def counted(fn, *inputs):
    """(forward FLOPs, forward + backward FLOPs) as FlopCounterMode counts them."""
    inputs = [x.requires_grad_() if isinstance(x, torch.Tensor) and x.is_floating_point() else x
              for x in inputs]
    with FlopCounterMode(display=False) as forward:
        fn(*inputs)
    with FlopCounterMode(display=False) as both:
        out = fn(*inputs)
        (out[0] if isinstance(out, tuple) else out).sum().backward()
    return forward.get_total_flops(), both.get_total_flops()


def on_device(fn):
    """fn with its tensor arguments moved to the test device (for the Triton ops)."""
    return lambda *xs: fn(*[x.detach().to(DEVICE).requires_grad_(x.requires_grad)
                            if isinstance(x, torch.Tensor) else x for x in xs])


def test_attended_pairs():
    assert attended_pairs(5, 5, causal=True) == 15
    assert attended_pairs(5, 5, causal=True, window=2) == 1 + 2 * 4
    assert attended_pairs(2, 5, causal=True, window=10) == 4 + 5
    assert attended_pairs(3, 7, causal=False) == 21


@pytest.mark.parametrize("H,Hkv", [(2, 2), (4, 1)])
def test_causal_attention_is_counted_exactly_on_both_paths(H, Hkv):
    B, T, D = 1, 64, 32
    q, k, v = torch.randn(B, T, H, D), torch.randn(B, T, Hkv, D), torch.randn(B, T, Hkv, D)
    expected = attention_flops(B, T, T, H, D)
    assert expected == 4 * B * H * D * T * (T + 1) // 2
    for impl in (R.attention, on_device(triton_ops.attention)):
        fwd, both = counted(impl, q.clone(), k.clone(), v.clone())
        assert fwd == expected
        assert both == expected * 7 // 2


def test_windowed_attention_reference_counts_at_most_twice_the_attended_pairs():
    B, T, H, D, W = 1, 256, 1, 16, 32
    q, k, v = (torch.randn(B, T, H, D) for _ in range(3))
    expected = attention_flops(B, T, T, H, D, window=W)
    assert counted(on_device(lambda *a: triton_ops.attention(*a, window=W)), q, k, v)[0] == expected
    ref = counted(lambda *a: R.attention(*a, window=W), q.clone(), k.clone(), v.clone())[0]
    assert expected < ref <= 2 * expected
    assert ref < 0.5 * attention_flops(B, T, T, H, D)  # the window shows in the count


def test_linear_attention_and_delta_rule_counts_agree():
    B, T, H, D = 1, 128, 2, 32
    q, k, v = (torch.randn(B, T, H, D) for _ in range(3))
    g = F.logsigmoid(torch.randn(B, T, H))
    expected = linear_attention_flops(B, T, H, D, D)
    for log_decay in (None, g, F.logsigmoid(torch.randn(B, T, H, D))):
        # the Triton kernels chunk by 64; the references default to 16 on CPU (faster there)
        ref = counted(partial(R.linear_attention, chunk_size=64), q.clone(), k.clone(), v.clone(),
                      log_decay)
        tri = counted(on_device(triton_ops.linear_attention), q.clone(), k.clone(), v.clone(),
                      log_decay)
        assert ref[0] == tri[0] == expected
        assert 0.8 < tri[1] / ref[1] < 1.25
    qn, kn = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    beta = torch.rand(B, T, H)
    ref = counted(partial(R.delta_rule, chunk_size=64), qn.clone(), kn.clone(), v.clone(), beta,
                  g)
    tri = counted(on_device(triton_ops.delta_rule), qn.clone(), kn.clone(), v.clone(), beta, g)
    assert ref[0] == tri[0] > 0
    assert 0.8 < tri[1] / ref[1] < 1.25


def test_small_ops_are_counted():
    x, w = torch.randn(2, 50, 32), torch.randn(32, 4)
    fwd, both = counted(on_device(triton_ops.causal_conv1d), x, w)
    assert fwd == 2 * 2 * 50 * 32 * 4 and both == 3 * fwd
    assert abs(counted(R.causal_conv1d, x.clone(), w.clone())[0] / fwd - 1) < 0.1
    assert counted(on_device(triton_ops.rms_norm), x.clone(), torch.randn(32))[0] == 4 * x.numel()
    assert counted(on_device(triton_ops.swiglu), x.clone(), x.clone())[0] == 6 * x.numel()


def test_delta_rule_flops_are_the_reference_matmuls_plus_the_solve():
    """FlopCounterMode counts the reference's matmuls; the triangular solve (C^2 per right-hand
    side) is the one term it does not see."""
    from mixnas.kernels.flops import delta_rule_flops

    torch.manual_seed(0)
    B, T, H, Dk, Dv, C = 1, 256, 2, 32, 16, 64
    q, k = (F.normalize(torch.randn(B, T, H, Dk), dim=-1) for _ in range(2))
    v, beta = torch.randn(B, T, H, Dv), torch.rand(B, T, H)
    g = F.logsigmoid(torch.randn(B, T, H))
    with FlopCounterMode(display=False) as counter:
        R.delta_rule(q, k, v, beta, g, chunk_size=C)
    solve = B * H * (T // C) * C * C * (Dk + Dv)
    assert counter.get_total_flops() + solve == delta_rule_flops(B, T, H, Dk, Dv, C)

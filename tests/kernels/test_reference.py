"""The plain-torch references agree with their recurrent ground truths and with naive forms (on
CPU, or on CUDA with MIXNAS_TEST_DEVICE=cuda, see _device.py)."""

import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from mixnas.kernels import reference as R

from ._device import DEVICE

DT = torch.float64


def rand(*shape, dtype=DT):
    return torch.randn(*shape, dtype=dtype, device=DEVICE)


def naive_attention(q, k, v, causal, window, scale):
    """Loop-free but mask-explicit softmax attention on repeated kv heads."""
    H, Hkv = q.shape[2], k.shape[2]
    k = k.repeat_interleave(H // Hkv, dim=2)
    v = v.repeat_interleave(H // Hkv, dim=2)
    s = torch.einsum("bthd,bshd->bhts", q, k) * scale
    Tq, Tk = q.shape[1], k.shape[1]
    for i in range(Tq):
        t = i + Tk - Tq
        for j in range(Tk):
            if (causal and j > t) or (window is not None and j <= t - window):
                s[:, :, i, j] = -math.inf
    return torch.einsum("bhts,bshd->bthd", s.softmax(-1), v)


@pytest.mark.parametrize(
    "H,Hkv,causal,window,Tq",
    [(4, 4, True, None, 37), (4, 1, True, None, 37), (8, 2, False, None, 37), (4, 2, True, 5, 37),
     (2, 2, True, 100, 37), (2, 1, True, 1, 37), (4, 2, True, 7, 3), (2, 2, True, None, 1)],
)
def test_attention_matches_naive(H, Hkv, causal, window, Tq):
    torch.manual_seed(0)
    Tk, D = 37, 12
    q, k, v = rand(2, Tq, H, D), rand(2, Tk, Hkv, D), rand(2, Tk, Hkv, D)
    out = R.attention(q, k, v, causal=causal, window=window, scale=0.3)
    torch.testing.assert_close(out, naive_attention(q, k, v, causal, window, 0.3))
    naive = R.attention_naive(q, k, v, causal=causal, window=window, scale=0.3)
    torch.testing.assert_close(naive, naive_attention(q, k, v, causal, window, 0.3))


def test_attention_gqa_equals_repeated_heads_and_window_edge_cases():
    torch.manual_seed(0)
    q, k, v = rand(1, 20, 6, 8), rand(1, 20, 2, 8), rand(1, 20, 2, 8)
    rep = R.attention(q, k.repeat_interleave(3, 2), v.repeat_interleave(3, 2))
    torch.testing.assert_close(R.attention(q, k, v), rep)
    torch.testing.assert_close(R.attention(q, k, v, window=20), rep)
    torch.testing.assert_close(R.attention(q, k, v, window=1), v.repeat_interleave(3, 2))
    with pytest.raises(ValueError, match="multiple"):
        R.attention(rand(1, 4, 3, 8), k[:, :4], v[:, :4])
    with pytest.raises(ValueError, match="causal"):
        R.attention(q, k, v, causal=False, window=4)
    with pytest.raises(ValueError, match="as many keys"):
        R.attention(q, k[:, :5], v[:, :5])


def decays(B, T, H, D):
    return {
        "none": None,
        "head": -torch.rand(H, dtype=DT, device=DEVICE),
        "token": F.logsigmoid(rand(B, T, H)),
        "channel": F.logsigmoid(rand(B, T, H, D)),
    }


def growths(B, T, H, D):
    """Small positive log decays (a decay factor above 1), which the chunked forms must not clamp
    (issue 14: per-channel growth was clamped to 1 in the chunked form, 7-14 % off)."""
    shapes = {"head": (H,), "token": (B, T, H), "channel": (B, T, H, D)}
    return {f"{form}_growth": torch.rand(*shape, dtype=DT, device=DEVICE) * 0.05
            for form, shape in shapes.items()}


FORMS = ["none", "head", "token", "channel", "head_growth", "token_growth", "channel_growth"]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("T,chunk", [(45, 16), (64, 64), (7, 64), (21, 12)])
def test_linear_attention_chunked_equals_recurrent(form, T, chunk):
    torch.manual_seed(0)
    B, H, Dk, Dv = 2, 3, 8, 5
    q, k, v = rand(B, T, H, Dk), rand(B, T, H, Dk), rand(B, T, H, Dv)
    g = {**decays(B, T, H, Dk), **growths(B, T, H, Dk)}[form]
    s0 = rand(B, H, Dk, Dv)
    o, s = R.linear_attention(
        q, k, v, g, scale=0.5, initial_state=s0, output_final_state=True, chunk_size=chunk
    )
    o_ref, s_ref = R.linear_attention_recurrent(
        q, k, v, g, scale=0.5, initial_state=s0, output_final_state=True
    )
    torch.testing.assert_close(o, o_ref)
    torch.testing.assert_close(s, s_ref)


def test_plain_linear_attention_is_masked_unnormalised_attention():
    torch.manual_seed(0)
    q, k, v = rand(2, 30, 2, 4), rand(2, 30, 2, 4), rand(2, 30, 2, 6)
    scores = torch.einsum("bthd,bshd->bhts", q, k).tril()
    expected = torch.einsum("bhts,bshd->bthd", scores, v) * 0.5
    torch.testing.assert_close(R.linear_attention(q, k, v), expected)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("T,chunk", [(45, 16), (32, 32), (5, 64), (21, 12)])
def test_delta_rule_chunked_equals_recurrent(form, T, chunk):
    """Every decay form, per head and per channel included (issue 14: those raised IndexError /
    a shape RuntimeError)."""
    torch.manual_seed(0)
    B, H, Dk, Dv = 2, 2, 8, 6
    q = F.normalize(rand(B, T, H, Dk), dim=-1)
    k = F.normalize(rand(B, T, H, Dk), dim=-1)
    v, beta = rand(B, T, H, Dv), torch.rand(B, T, H, dtype=DT, device=DEVICE)
    g = {**decays(B, T, H, Dk), **growths(B, T, H, Dk)}[form]
    s0 = rand(B, H, Dk, Dv)
    o, s = R.delta_rule(
        q, k, v, beta, g, initial_state=s0, output_final_state=True, chunk_size=chunk
    )
    o_ref, s_ref = R.delta_rule_recurrent(
        q, k, v, beta, g, initial_state=s0, output_final_state=True
    )
    torch.testing.assert_close(o, o_ref)
    torch.testing.assert_close(s, s_ref)


def test_delta_rule_with_beta_one_stores_the_value():
    """With beta = 1 and a unit key, reading the state with that key returns the value written."""
    k = F.normalize(rand(1, 1, 1, 4), dim=-1)
    v = rand(1, 1, 1, 3)
    s0 = rand(1, 1, 4, 3)
    _, s = R.delta_rule(k, k, v, torch.ones(1, 1, 1, dtype=DT), initial_state=s0,
                        output_final_state=True)
    torch.testing.assert_close((k[0, 0, 0] @ s[0, 0]), v[0, 0, 0])


def test_steps_continue_the_parallel_forms():
    torch.manual_seed(0)
    B, T, H, D = 2, 20, 2, 6
    q, k, v = rand(B, T, H, D), rand(B, T, H, D), rand(B, T, H, D)
    for g in decays(B, T, H, D).values():
        g_prefix = g if g is None or g.dim() == 1 else g[:, :-1]
        g_last = g if g is None or g.dim() == 1 else g[:, -1]
        full = R.linear_attention(q, k, v, g)
        _, s = R.linear_attention(q[:, :-1], k[:, :-1], v[:, :-1], g_prefix,
                                  output_final_state=True)
        o, _ = R.linear_attention_step(q[:, -1], k[:, -1], v[:, -1], s, g_last)
        torch.testing.assert_close(o, full[:, -1])
    qn, kn = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    beta, g = torch.rand(B, T, H, dtype=DT), F.logsigmoid(rand(B, T, H))
    full = R.delta_rule(qn, kn, v, beta, g)
    _, s = R.delta_rule(qn[:, :-1], kn[:, :-1], v[:, :-1], beta[:, :-1], g[:, :-1],
                        output_final_state=True)
    o, _ = R.delta_rule_step(qn[:, -1], kn[:, -1], v[:, -1], beta[:, -1], s, g[:, -1])
    torch.testing.assert_close(o, full[:, -1])
    x, w, bias = rand(B, T, 5), rand(5, 4), rand(5)
    full = R.causal_conv1d(x, w, bias, activation="silu")
    state = x[:, -4:-1].transpose(1, 2)
    y, state = R.causal_conv1d_step(x[:, -1], state, w, bias, activation="silu")
    torch.testing.assert_close(y, full[:, -1])
    torch.testing.assert_close(state, x[:, -3:].transpose(1, 2))
    kv_cached = R.attention(q[:, -1:], k, v, window=5)
    torch.testing.assert_close(kv_cached, R.attention(q, k, v, window=5)[:, -1:])


def test_strong_decay_is_finite_in_float32():
    """Per-step log decays of -60 overflow exp() of a naive cumulative form; the chunked forms
    only exponentiate non-positive numbers."""
    torch.manual_seed(0)
    B, T, H, D = 1, 64, 2, 8
    q, k, v = (torch.randn(B, T, H, D) for _ in range(3))
    g = torch.full((B, T, H, D), -60.0)
    o = R.linear_attention(q, k, v, g)
    o_tok = R.linear_attention(q, k, v, g[..., 0])
    # with such strong decay only the current token survives
    expected = (q * k).sum(-1, keepdim=True) * v * D ** -0.5
    torch.testing.assert_close(o, expected)
    torch.testing.assert_close(o_tok, expected)
    qn, kn = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    od = R.delta_rule(qn, kn, v, torch.full((B, T, H), 0.5), g[..., 0])
    torch.testing.assert_close(od, R.delta_rule_recurrent(qn, kn, v, torch.full((B, T, H), 0.5),
                                                          g[..., 0]))


def test_chunked_forms_pass_gradcheck():
    torch.manual_seed(0)
    B, T, H, D = 1, 9, 1, 3
    q, k, v = (rand(B, T, H, D).requires_grad_() for _ in range(3))
    g = F.logsigmoid(rand(B, T, H, D)).requires_grad_()
    s0 = rand(B, H, D, D).requires_grad_()
    torch.autograd.gradcheck(
        lambda *a: R.linear_attention(*a, output_final_state=True, chunk_size=4),
        (q, k, v, g, None, s0),
    )
    gt = F.logsigmoid(rand(B, T, H)).requires_grad_()
    beta = torch.rand(B, T, H, dtype=DT).requires_grad_()
    torch.autograd.gradcheck(
        lambda q, k, *a: R.delta_rule(
            F.normalize(q, dim=-1), F.normalize(k, dim=-1), *a, output_final_state=True,
            chunk_size=4,
        ),
        (q, k, v, beta, gt, None, s0),
    )


def test_low_precision_inputs_keep_dtype_and_have_gradients():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 33, 2, 8, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    beta = torch.rand(2, 33, 2, requires_grad=True)
    g = F.logsigmoid(torch.randn(2, 33, 2)).requires_grad_()
    outs = [R.attention(q, k, v, window=4), R.linear_attention(q, k, v, g),
            R.delta_rule(q, k, v, beta, g)]
    for o in outs:
        assert o.dtype == torch.bfloat16
    sum(o.float().sum() for o in outs).backward()
    for t in (q, k, v, beta, g):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


def test_rms_norm_swiglu_and_conv_match_naive_forms():
    torch.manual_seed(0)
    x, w = rand(3, 7, 10), rand(10)
    expected = x / torch.sqrt((x ** 2).mean(-1, keepdim=True) + 1e-6) * w
    torch.testing.assert_close(R.rms_norm(x, w), expected)
    torch.testing.assert_close(R.rms_norm(x, None, eps=1e-3),
                               x / torch.sqrt((x ** 2).mean(-1, keepdim=True) + 1e-3))
    gate, up = rand(4, 9), rand(4, 9)
    torch.testing.assert_close(R.swiglu(gate, up), gate * torch.sigmoid(gate) * up)
    xc, wc, bc = rand(2, 11, 3), rand(3, 4), rand(3)
    y = torch.zeros_like(xc)
    for t in range(11):
        for j in range(4):
            if t - 3 + j >= 0:
                y[:, t] += wc[:, j] * xc[:, t - 3 + j]
    torch.testing.assert_close(R.causal_conv1d(xc, wc, bc), y + bc)
    torch.testing.assert_close(R.causal_conv1d(xc, wc, activation="silu"), F.silu(y))
    with pytest.raises(ValueError, match="activation"):
        R.causal_conv1d(xc, wc, activation="relu6")


@pytest.mark.parametrize("activation", [None, "silu"])
@pytest.mark.parametrize("bias", [True, False])
def test_causal_conv1d_backward_equals_the_naive_conv(activation, bias):
    """The shifted multiply-add backward of `causal_conv1d` gives autograd's conv1d gradients
    (float64 gradcheck too); T shorter than the kernel included."""
    torch.manual_seed(0)
    for T, K in ((13, 4), (2, 4), (9, 1)):
        x, w = rand(2, T, 5).requires_grad_(), rand(5, K).requires_grad_()
        b = rand(5).requires_grad_() if bias else None
        leaves = [x, w] + ([b] if bias else [])
        y, y0 = R.causal_conv1d(x, w, b, activation), R.causal_conv1d_naive(x, w, b, activation)
        torch.testing.assert_close(y, y0)
        grad = rand(*y.shape)
        fast = torch.autograd.grad(y, leaves, grad)
        naive = torch.autograd.grad(y0, leaves, grad)
        for a, c in zip(fast, naive):
            torch.testing.assert_close(a, c)
        assert torch.autograd.gradcheck(
            lambda *t: R.causal_conv1d(t[0], t[1], t[2] if bias else None, activation), leaves)
    xf, wf = rand(2, 8, 3, dtype=torch.float32), rand(3, 4, dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(R.causal_conv1d(xf, wf), R.causal_conv1d_naive(xf, wf))


def test_bad_log_decay_shape_is_a_clear_error():
    q = rand(1, 4, 2, 3)
    beta = torch.rand(1, 4, 2, dtype=DT, device=DEVICE)
    for bad in (rand(3), rand(1, 4, 3), rand(1, 4, 2, 5), rand(2, 4, 2)):
        with pytest.raises(ValueError, match="log_decay"):
            R.linear_attention(q, q, q, bad)
        with pytest.raises(ValueError, match="log_decay"):
            R.delta_rule(q, q, q, beta, bad)
    with pytest.raises(ValueError, match="log_decay"):
        R.delta_rule_step(q[:, 0], q[:, 0], q[:, 0], beta[:, 0], None, rand(3))


@pytest.mark.parametrize("chunk", [0, -4, 32.0, True, "16"])
def test_bad_chunk_size_is_a_clear_error(chunk):
    q = rand(1, 4, 2, 3)
    with pytest.raises(ValueError, match="linear_attention: chunk_size must be a positive integer"):
        R.linear_attention(q, q, q, chunk_size=chunk)
    with pytest.raises(ValueError, match="delta_rule: chunk_size must be a positive integer"):
        R.delta_rule(q, q, q, q[..., 0], chunk_size=chunk)


def test_no_chunk_size_means_the_device_default():
    """chunk_size None picks `default_chunk_size` (16 on a CPU, 64 on a GPU): the same numbers as
    naming it, and the recurrent ground truth."""
    B, T, H, D = 2, 70, 2, 8  # longer than either default: several chunks
    q, k, v = rand(B, T, H, D), F.normalize(rand(B, T, H, D), dim=-1), rand(B, T, H, D)
    beta, g = torch.rand(B, T, H, dtype=DT, device=DEVICE), -torch.rand(B, T, H, dtype=DT,
                                                                       device=DEVICE)
    C = R.default_chunk_size(q)
    assert C < T
    assert (R.GPU_CHUNK_SIZE if q.is_cuda else R.CPU_CHUNK_SIZE) == C
    torch.testing.assert_close(R.linear_attention(q, k, v, g),
                               R.linear_attention(q, k, v, g, chunk_size=C))
    torch.testing.assert_close(R.linear_attention(q, k, v, g),
                               R.linear_attention_recurrent(q, k, v, g))
    torch.testing.assert_close(R.delta_rule(q, k, v, beta, g),
                               R.delta_rule(q, k, v, beta, g, chunk_size=C))
    torch.testing.assert_close(R.delta_rule(q, k, v, beta, g),
                               R.delta_rule_recurrent(q, k, v, beta, g))


@pytest.mark.parametrize("window", [1, 7, 130, 200, 299])
def test_banded_window_matches_a_dense_mask(window):
    torch.manual_seed(0)
    T = 300
    q, k, v = rand(1, T, 2, 8), rand(1, T, 1, 8), rand(1, T, 1, 8)
    pos = torch.arange(T)
    mask = (pos[None, :] <= pos[:, None]) & (pos[None, :] > pos[:, None] - window)
    kr, vr = (x.repeat_interleave(2, 2).transpose(1, 2) for x in (k, v))
    dense = F.scaled_dot_product_attention(q.transpose(1, 2), kr, vr, attn_mask=mask)
    torch.testing.assert_close(R.attention(q, k, v, window=window), dense.transpose(1, 2))


def test_importing_the_ops_does_not_import_triton():
    """Triton fixes interpret mode when it is imported: it must load on the first Triton call."""
    code = (
        "import sys, torch, mixnas.kernels as K\n"
        "q = torch.randn(1, 4, 1, 8)\n"
        "K.attention(q, q, q); K.linear_attention(q, q, q); K.rms_norm(q)\n"
        "assert 'triton' not in sys.modules, 'triton imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

"""Every Triton kernel, forward and all gradients, against the float64 reference: on CPU under
TRITON_INTERPRET=1 (bfloat16 is not testable there), on CUDA with MIXNAS_TEST_DEVICE=cuda (every
case in float32 and bfloat16 too, plus larger GPU-only shapes; see _device.py). Shapes are awkward
on purpose: T not a multiple of any block, head_dim 60, GQA 4:1 and MQA, windows longer than T."""

import pytest
import torch
import torch.nn.functional as F

from mixnas.kernels import reference as R
from mixnas.kernels import triton_ops

from ._device import DEVICE, ON_GPU, TOL, gpu_only, with_gpu_dtypes


def rel_rms(x, ref):
    x, ref = x.double(), ref.double()
    return ((x - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt().clamp_min(1e-12)).item()


def compare(fn, ref_fn, inputs, dtype, tol_scale=1.0):
    """Forward outputs and the gradients of every float input requiring grad, within a relative
    RMS error of TOL[dtype] * tol_scale of the float64 reference."""
    out = fn(*inputs)
    outs = out if isinstance(out, tuple) else (out,)
    grads_out = [torch.randn_like(o) for o in outs]
    leaves = [x for x in inputs if isinstance(x, torch.Tensor) and x.requires_grad]
    grads = torch.autograd.grad(outs, leaves, grads_out)
    inputs64 = [x.detach().double().requires_grad_(x.requires_grad)
                if isinstance(x, torch.Tensor) else x for x in inputs]
    ref = ref_fn(*inputs64)
    refs = ref if isinstance(ref, tuple) else (ref,)
    leaves64 = [x for x in inputs64 if isinstance(x, torch.Tensor) and x.requires_grad]
    ref_grads = torch.autograd.grad(refs, leaves64, [g.double() for g in grads_out])
    tol = TOL[DEVICE.type, dtype] * tol_scale
    for i, (o, r) in enumerate(zip(outs, refs)):
        assert o.dtype == r.dtype or o.dtype in (dtype, torch.float32), o.dtype
        assert rel_rms(o, r) < tol, f"output {i}: {rel_rms(o, r):.2e}"
    for i, (g, r) in enumerate(zip(grads, ref_grads)):
        assert rel_rms(g, r) < tol, f"grad {i}: {rel_rms(g, r):.2e}"


def leaf(*shape, dtype=torch.float32, fn=None):
    x = torch.randn(*shape, device=DEVICE)
    x = fn(x) if fn is not None else x
    return x.to(dtype).requires_grad_()


ATTENTION_CASES = [
    (torch.float32, 1, 100, 100, 4, 1, 60, True, None),  # MQA, head_dim 60
    (torch.float16, 1, 70, 70, 8, 2, 32, True, 9),  # GQA 4:1, window
    (torch.float32, 2, 33, 33, 2, 2, 64, True, 500),  # window longer than T
    (torch.float16, 1, 65, 65, 4, 4, 16, False, None),
    (torch.float32, 1, 7, 90, 4, 2, 24, True, 20),  # queries at the end (decoding)
    (torch.float32, 1, 300, 300, 2, 1, 16, True, 100),  # unmasked middle blocks too
]
GPU_ATTENTION_CASES = [  # several autotuned blocks per row and column, head dims 64 and 128
    (torch.bfloat16, 2, 1030, 1030, 8, 2, 128, True, None),
    (torch.bfloat16, 1, 777, 777, 4, 4, 64, True, 256),
    (torch.float16, 1, 300, 1030, 4, 1, 128, True, None),
]


@pytest.mark.parametrize(
    "dtype,B,Tq,Tk,H,Hkv,D,causal,window",
    with_gpu_dtypes(ATTENTION_CASES) + [pytest.param(*c, marks=gpu_only)
                                        for c in GPU_ATTENTION_CASES],
)
def test_attention(dtype, B, Tq, Tk, H, Hkv, D, causal, window):
    torch.manual_seed(0)
    q, k, v = leaf(B, Tq, H, D, dtype=dtype), leaf(B, Tk, Hkv, D, dtype=dtype), \
        leaf(B, Tk, Hkv, D, dtype=dtype)
    compare(lambda *a: triton_ops.attention(*a, causal=causal, window=window),
            lambda *a: R.attention(*a, causal=causal, window=window), [q, k, v], dtype)


def test_strided_views_are_read_correctly():
    """q/k/v as slices of one fused projection (attention reads them through their strides)."""
    torch.manual_seed(0)
    qkv = torch.randn(1, 40, 3, 2, 16, device=DEVICE)
    q, k, v = (x.requires_grad_() for x in qkv.unbind(2))
    compare(triton_ops.attention, R.attention, [q, k, v], torch.float32)
    q2 = torch.randn(1, 40, 2, 32, device=DEVICE)[..., :16].requires_grad_()  # strides differ
    compare(triton_ops.linear_attention, R.linear_attention, [q2, k, v], torch.float32)


def decay(form, B, T, H, D, sign=-1):
    """Log decays of one form; sign=+1 gives small positive ones (growth)."""
    shapes = {"head": (H,), "token": (B, T, H), "channel": (B, T, H, D)}
    if form not in shapes:
        return None
    if sign > 0:
        return (torch.rand(*shapes[form], device=DEVICE) * 0.02).requires_grad_()
    if form == "head":
        return (-torch.rand(H, device=DEVICE)).requires_grad_()
    shift = 2 if form == "channel" else 0
    return F.logsigmoid(torch.randn(*shapes[form], device=DEVICE) + shift).requires_grad_()


LINEAR_CASES = [(torch.float32, 100, 60, 32, 64), (torch.float16, 33, 16, 24, 16)]
GPU_LINEAR_CASES = [(torch.bfloat16, 1000, 128, 192, 64), (torch.float32, 300, 256, 64, 32)]


@pytest.mark.parametrize("form", ["none", "head", "token", "channel"])
@pytest.mark.parametrize("dtype,T,Dk,Dv,chunk", with_gpu_dtypes(LINEAR_CASES) + [
    pytest.param(*c, marks=gpu_only) for c in GPU_LINEAR_CASES])
def test_linear_attention(form, dtype, T, Dk, Dv, chunk):
    torch.manual_seed(0)
    B, H = 1, 2
    q, k, v = leaf(B, T, H, Dk, dtype=dtype), leaf(B, T, H, Dk, dtype=dtype), \
        leaf(B, T, H, Dv, dtype=dtype)
    g = decay(form, B, T, H, Dk)
    s0 = leaf(B, H, Dk, Dv)
    inputs = [q, k, v, g, s0]

    def run(impl):
        return lambda q, k, v, g, s0: impl(q, k, v, g, initial_state=s0, output_final_state=True,
                                           chunk_size=chunk)

    compare(run(triton_ops.linear_attention), run(R.linear_attention), inputs, dtype)


@pytest.mark.parametrize("form", ["head", "token", "channel"])
def test_linear_attention_with_positive_log_decay(form):
    """Growth (log decay > 0) is computed exactly, per channel too (it was clamped to 0 once)."""
    torch.manual_seed(0)
    B, T, H, D = 1, 50, 2, 16
    q, k, v = (leaf(B, T, H, D) for _ in range(3))
    g = decay(form, B, T, H, D, sign=+1)
    compare(lambda *a: triton_ops.linear_attention(*a, chunk_size=16),
            lambda *a: R.linear_attention_recurrent(*a), [q, k, v, g], torch.float32)


DELTA_CASES = [(torch.float32, 100, 60, 32), (torch.float16, 33, 16, 24)]
GPU_DELTA_CASES = [(torch.bfloat16, 1000, 128, 128), (torch.float32, 500, 64, 256)]


@pytest.mark.parametrize("form", ["none", "head", "token", "channel"])
@pytest.mark.parametrize("dtype,T,Dk,Dv", with_gpu_dtypes(DELTA_CASES) + [
    pytest.param(*c, marks=gpu_only) for c in GPU_DELTA_CASES])
def test_delta_rule(form, dtype, T, Dk, Dv):
    torch.manual_seed(0)
    B, H = 1, 2
    q, k = leaf(B, T, H, Dk, dtype=dtype), leaf(B, T, H, Dk, dtype=dtype)
    v = leaf(B, T, H, Dv, dtype=dtype)
    beta = leaf(B, T, H, fn=torch.sigmoid)
    g = decay(form, B, T, H, Dk)
    s0 = leaf(B, H, Dk, Dv)

    def run(impl):
        def f(q, k, v, beta, g, s0):
            return impl(F.normalize(q, dim=-1), F.normalize(k, dim=-1), v, beta, g,
                        initial_state=s0, output_final_state=True)
        return f

    # the fp16 case stores the WY operands in fp16 products; the recurrence adds a little error
    compare(run(triton_ops.delta_rule), run(R.delta_rule), [q, k, v, beta, g, s0], dtype,
            tol_scale=2.0)


@pytest.mark.parametrize("dtype", [c[0] for c in with_gpu_dtypes([(torch.float32,),
                                                                   (torch.float16,)])])
def test_rms_norm_swiglu_conv(dtype):
    torch.manual_seed(0)
    x, w = leaf(3, 37, 60, dtype=dtype), leaf(60, dtype=dtype)
    compare(triton_ops.rms_norm, R.rms_norm, [x, w], dtype)
    compare(lambda x: triton_ops.rms_norm(x, None, 1e-3), lambda x: R.rms_norm(x, None, 1e-3),
            [x], dtype)
    compare(triton_ops.swiglu, R.swiglu, [x, leaf(3, 37, 60, dtype=dtype)], dtype)
    xc, wc, bc = leaf(2, 100, 40, dtype=dtype), leaf(40, 4, dtype=dtype), leaf(40, dtype=dtype)
    compare(lambda *a: triton_ops.causal_conv1d(*a, activation="silu"),
            lambda *a: R.causal_conv1d(*a, activation="silu"), [xc, wc, bc], dtype)
    compare(triton_ops.causal_conv1d, R.causal_conv1d, [xc, leaf(40, 3, dtype=dtype)], dtype)


@pytest.mark.skipif(ON_GPU, reason="the interpreter's limitation")
def test_bfloat16_is_refused_under_the_interpreter():
    q = torch.randn(1, 4, 1, 16, dtype=torch.bfloat16)
    with pytest.raises(RuntimeError, match="bfloat16"):
        triton_ops.attention(q, q, q)


def test_bad_arguments_are_clear_errors():
    q = torch.randn(1, 8, 3, 16, device=DEVICE)
    with pytest.raises(ValueError, match="multiple"):
        triton_ops.attention(q, q[:, :, :2], q[:, :, :2])
    for chunk in (24, 128, 32.0, True, 0):
        for op, extra in ((triton_ops.linear_attention, ()),
                          (triton_ops.delta_rule, (q[..., 0],))):
            with pytest.raises(ValueError, match=r"chunk_size=.* take 16, 32, 64 .*reference"):
                op(q, q, q, *extra, chunk_size=chunk)
    with pytest.raises(ValueError, match="channels"):
        triton_ops.causal_conv1d(q[:, :, 0], torch.randn(5, 4, device=DEVICE))

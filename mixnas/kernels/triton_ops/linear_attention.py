"""Chunked linear attention in Triton for scalar decays (none, per head, per token and head).

(Per-channel decays take the torch chunk preparation of the reference plus the Triton chunk scan,
see `chunk_scan.py`.)

S_t = exp(g_t) S_{t-1} + k_t^T v_t, o_t = scale q_t S_t. With b the cumulative log decay from the
chunk start (computed in torch, so the kernels only exponentiate non-positive numbers):
  forward   1. `_state_kernel`  sequential over chunks: the state at every chunk start, H_n;
            2. `_output_kernel` parallel over chunks: o = scale (e^b q H_n + (QK^T * D) V),
               D[t, s] = e^(b_t - b_s) for s <= t.
  backward  1. `_dstate_kernel` reverse scan: G_n, the gradient of the state after chunk n;
            2. `_dqk_kernel` and `_dv_kernel` parallel over chunks.
The decay gradient needs no kernel: with B_t the global cumulative log decay,
dL/dB_t = q_t.dq_t - k_t.dk_t (+ <dS_T, S_T> at the last step), and dg is its reverse cumsum.
The states are recomputed in the backward instead of being stored.
"""

import torch
import triton
import triton.language as tl
from torch.utils.flop_counter import register_flop_formula

from mixnas.kernels import reference
from mixnas.kernels.flops import linear_attention_flops
from mixnas.kernels.triton_ops._config import INTERPRET, check_chunk_size, check_inputs, pow2
from mixnas.kernels.triton_ops.chunk_scan import chunk_scan_fwd


def _blocks(Dk, Dv):
    """(BK, BV): whole head dims under the interpreter, <= 64 wide tiles on a GPU."""
    if INTERPRET:
        return pow2(Dk), pow2(Dv)
    return min(64, pow2(Dk)), min(64, pow2(Dv))


@triton.jit
def _rows(X, b, h, t, offs, sx_b, sx_t, sx_h, T, D):
    """Load a (len(t), len(offs)) tile of a (B, T, H, D) tensor, zero outside."""
    ptr = X + b * sx_b + h * sx_h + t[:, None].to(tl.int64) * sx_t + offs[None, :]
    return tl.load(ptr, mask=(t[:, None] < T) & (offs[None, :] < D), other=0.0)


@triton.jit
def _tile(X, base, offs_k, offs_v, DK, DV):
    """Load a (BK, BV) tile of a contiguous (..., DK, DV) state at element offset `base`."""
    ptr = X + base + offs_k[:, None] * DV + offs_v[None, :]
    return tl.load(ptr, mask=(offs_k[:, None] < DK) & (offs_v[None, :] < DV), other=0.0)


@triton.jit
def _put(X, base, offs_k, offs_v, DK, DV, val):
    ptr = X + base + offs_k[:, None] * DV + offs_v[None, :]
    tl.store(ptr, val, mask=(offs_k[:, None] < DK) & (offs_v[None, :] < DV))


@triton.jit
def _state_kernel(
    K, V, BCUM, S0, HBUF, SFIN,
    sk_b, sk_t, sk_h, sv_b, sv_t, sv_h,
    T, TP, H, DK, DV, N,
    HAS_DECAY: tl.constexpr, HAS_S0: tl.constexpr,
    C: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
):
    """HBUF[bh, n] = state at the start of chunk n (float32), SFIN = final state."""
    i_k, i_v, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    b = (i_bh // H).to(tl.int64)
    h = i_bh % H
    offs_c = tl.arange(0, C)
    offs_k = i_k * BK + tl.arange(0, BK)
    offs_v = i_v * BV + tl.arange(0, BV)
    state_base = i_bh.to(tl.int64) * DK * DV
    S = tl.zeros([BK, BV], dtype=tl.float32)
    if HAS_S0:
        S += _tile(S0, state_base, offs_k, offs_v, DK, DV)
    for n in range(N):
        _put(HBUF, (i_bh.to(tl.int64) * N + n) * DK * DV, offs_k, offs_v, DK, DV, S)
        t = n * C + offs_c
        k = _rows(K, b, h, t, offs_k, sk_b, sk_t, sk_h, T, DK)
        v = _rows(V, b, h, t, offs_v, sv_b, sv_t, sv_h, T, DV)
        if HAS_DECAY:
            bt = tl.load(BCUM + (b * TP + t) * H + h)
            b_last = tl.load(BCUM + (b * TP + n * C + C - 1) * H + h)
            S = S * tl.exp(b_last)
            k = (k * tl.exp(b_last - bt)[:, None]).to(v.dtype)
        S += tl.dot(tl.trans(k), v)
    _put(SFIN, state_base, offs_k, offs_v, DK, DV, S)


@triton.jit
def _decay_matrix(BCUM, b, h, t, TP, H, HAS_DECAY: tl.constexpr):
    """exp(b_t - b_s) on s <= t, 0 above the diagonal, as a (C, C) tile."""
    causal = t[:, None] >= t[None, :]
    if HAS_DECAY:
        bt = tl.load(BCUM + (b * TP + t) * H + h)
        return tl.exp(tl.where(causal, bt[:, None] - bt[None, :], float("-inf")))
    return tl.where(causal, 1.0, 0.0)


@triton.jit
def _output_kernel(
    Q, K, V, BCUM, HBUF, O,
    sq_b, sq_t, sq_h, sv_b, sv_t, sv_h, so_b, so_t, so_h,
    T, TP, H, DK, DV, N, scale,
    HAS_DECAY: tl.constexpr, C: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
):
    i_v, n, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    b = (i_bh // H).to(tl.int64)
    h = i_bh % H
    t = n * C + tl.arange(0, C)
    offs_v = i_v * BV + tl.arange(0, BV)
    inter = tl.zeros([C, BV], dtype=tl.float32)
    scores = tl.zeros([C, C], dtype=tl.float32)
    for i_k in range(tl.cdiv(DK, BK)):
        offs_k = i_k * BK + tl.arange(0, BK)
        q = _rows(Q, b, h, t, offs_k, sq_b, sq_t, sq_h, T, DK)
        k = _rows(K, b, h, t, offs_k, sq_b, sq_t, sq_h, T, DK)
        hn = _tile(HBUF, (i_bh.to(tl.int64) * N + n) * DK * DV, offs_k, offs_v, DK, DV)
        inter += tl.dot(q, hn.to(q.dtype))
        scores += tl.dot(q, tl.trans(k))
    if HAS_DECAY:
        inter = inter * tl.exp(tl.load(BCUM + (b * TP + t) * H + h))[:, None]
    scores = scores * _decay_matrix(BCUM, b, h, t, TP, H, HAS_DECAY)
    v = _rows(V, b, h, t, offs_v, sv_b, sv_t, sv_h, T, DV)
    o = (inter + tl.dot(scores.to(v.dtype), v)) * scale
    ptr = O + b * so_b + h * so_h + t[:, None].to(tl.int64) * so_t + offs_v[None, :]
    tl.store(ptr, o.to(O.dtype.element_ty), mask=(t[:, None] < T) & (offs_v[None, :] < DV))


@triton.jit
def _dstate_kernel(
    Q, DO, BCUM, DSFIN, GBUF, DS0,
    sq_b, sq_t, sq_h, sd_b, sd_t, sd_h,
    T, TP, H, DK, DV, N, scale,
    HAS_DECAY: tl.constexpr, HAS_DSFIN: tl.constexpr,
    C: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
):
    """GBUF[bh, n] = dL/d(state after chunk n); DS0 = dL/d(initial state)."""
    i_k, i_v, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    b = (i_bh // H).to(tl.int64)
    h = i_bh % H
    offs_c = tl.arange(0, C)
    offs_k = i_k * BK + tl.arange(0, BK)
    offs_v = i_v * BV + tl.arange(0, BV)
    state_base = i_bh.to(tl.int64) * DK * DV
    G = tl.zeros([BK, BV], dtype=tl.float32)
    if HAS_DSFIN:
        G += _tile(DSFIN, state_base, offs_k, offs_v, DK, DV)
    for i in range(N):
        n = N - 1 - i
        _put(GBUF, (i_bh.to(tl.int64) * N + n) * DK * DV, offs_k, offs_v, DK, DV, G)
        t = n * C + offs_c
        q = _rows(Q, b, h, t, offs_k, sq_b, sq_t, sq_h, T, DK)
        do = _rows(DO, b, h, t, offs_v, sd_b, sd_t, sd_h, T, DV)
        if HAS_DECAY:
            bt = tl.load(BCUM + (b * TP + t) * H + h)
            G = G * tl.exp(tl.load(BCUM + (b * TP + n * C + C - 1) * H + h))
            q = (q * tl.exp(bt)[:, None]).to(do.dtype)
        G += tl.dot(tl.trans(q), do) * scale
    _put(DS0, state_base, offs_k, offs_v, DK, DV, G)


@triton.jit
def _dqk_kernel(
    Q, K, V, DO, BCUM, HBUF, GBUF, DQ, DK_,
    sq_b, sq_t, sq_h, sv_b, sv_t, sv_h, sd_b, sd_t, sd_h, sg_b, sg_t, sg_h,
    T, TP, H, DK, DV, N, scale,
    HAS_DECAY: tl.constexpr, C: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
):
    """dq = scale (e^b do H_n^T + (dO V^T * D) K), dk = e^(b_last - b) V G_n^T + scale
    (dO V^T * D)^T Q. DQ and DK_ share strides sg_*."""
    i_k, n, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    b = (i_bh // H).to(tl.int64)
    h = i_bh % H
    t = n * C + tl.arange(0, C)
    offs_k = i_k * BK + tl.arange(0, BK)
    state_base = (i_bh.to(tl.int64) * N + n) * DK * DV
    dq = tl.zeros([C, BK], dtype=tl.float32)
    dk = tl.zeros([C, BK], dtype=tl.float32)
    dp = tl.zeros([C, C], dtype=tl.float32)
    for i_v in range(tl.cdiv(DV, BV)):
        offs_v = i_v * BV + tl.arange(0, BV)
        do = _rows(DO, b, h, t, offs_v, sd_b, sd_t, sd_h, T, DV)
        v = _rows(V, b, h, t, offs_v, sv_b, sv_t, sv_h, T, DV)
        hn = _tile(HBUF, state_base, offs_k, offs_v, DK, DV)
        gn = _tile(GBUF, state_base, offs_k, offs_v, DK, DV)
        dp += tl.dot(do, tl.trans(v))
        dq += tl.dot(do, tl.trans(hn).to(do.dtype))
        dk += tl.dot(v, tl.trans(gn).to(v.dtype))
    if HAS_DECAY:
        bt = tl.load(BCUM + (b * TP + t) * H + h)
        b_last = tl.load(BCUM + (b * TP + n * C + C - 1) * H + h)
        dq = dq * tl.exp(bt)[:, None]
        dk = dk * tl.exp(b_last - bt)[:, None]
    dp = dp * _decay_matrix(BCUM, b, h, t, TP, H, HAS_DECAY)
    q = _rows(Q, b, h, t, offs_k, sq_b, sq_t, sq_h, T, DK)
    k = _rows(K, b, h, t, offs_k, sq_b, sq_t, sq_h, T, DK)
    dq = (dq + tl.dot(dp.to(k.dtype), k)) * scale
    dk = dk + tl.dot(tl.trans(dp).to(q.dtype), q) * scale
    out = b * sg_b + h * sg_h + t[:, None].to(tl.int64) * sg_t + offs_k[None, :]
    mask = (t[:, None] < T) & (offs_k[None, :] < DK)
    tl.store(DQ + out, dq.to(DQ.dtype.element_ty), mask=mask)
    tl.store(DK_ + out, dk.to(DK_.dtype.element_ty), mask=mask)


@triton.jit
def _dv_kernel(
    Q, K, DO, BCUM, GBUF, DV_,
    sq_b, sq_t, sq_h, sd_b, sd_t, sd_h, sg_b, sg_t, sg_h,
    T, TP, H, DK, DV, N, scale,
    HAS_DECAY: tl.constexpr, C: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
):
    """dv = e^(b_last - b) K G_n + scale (QK^T * D)^T dO."""
    i_v, n, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    b = (i_bh // H).to(tl.int64)
    h = i_bh % H
    t = n * C + tl.arange(0, C)
    offs_v = i_v * BV + tl.arange(0, BV)
    state_base = (i_bh.to(tl.int64) * N + n) * DK * DV
    dv = tl.zeros([C, BV], dtype=tl.float32)
    scores = tl.zeros([C, C], dtype=tl.float32)
    for i_k in range(tl.cdiv(DK, BK)):
        offs_k = i_k * BK + tl.arange(0, BK)
        q = _rows(Q, b, h, t, offs_k, sq_b, sq_t, sq_h, T, DK)
        k = _rows(K, b, h, t, offs_k, sq_b, sq_t, sq_h, T, DK)
        gn = _tile(GBUF, state_base, offs_k, offs_v, DK, DV)
        scores += tl.dot(q, tl.trans(k))
        dv += tl.dot(k, gn.to(k.dtype))
    if HAS_DECAY:
        bt = tl.load(BCUM + (b * TP + t) * H + h)
        b_last = tl.load(BCUM + (b * TP + n * C + C - 1) * H + h)
        dv = dv * tl.exp(b_last - bt)[:, None]
    scores = scores * _decay_matrix(BCUM, b, h, t, TP, H, HAS_DECAY)
    do = _rows(DO, b, h, t, offs_v, sd_b, sd_t, sd_h, T, DV)
    dv = dv + tl.dot(tl.trans(scores).to(do.dtype), do) * scale
    ptr = DV_ + b * sg_b + h * sg_h + t[:, None].to(tl.int64) * sg_t + offs_v[None, :]
    tl.store(ptr, dv.to(DV_.dtype.element_ty), mask=(t[:, None] < T) & (offs_v[None, :] < DV))


def _chunk_cumsum(g, C):
    """(B, T, H) log decays -> float32 (B, TP, H) cumulative sums restarting at every chunk,
    TP = T rounded up to C (the zero padding keeps the last value of a partial chunk)."""
    B, T, H = g.shape
    TP = triton.cdiv(T, C) * C
    g = torch.nn.functional.pad(g.float(), (0, 0, 0, TP - T))
    return g.view(B, TP // C, C, H).cumsum(2).view(B, TP, H).contiguous()


def _same_layout(x, like):
    """x in a layout with the strides of `like`."""
    return x if x.stride() == like.stride() else torch.empty_like(like).copy_(x)


def _states(k, v, bcum, s0, C):
    B, T, H, Dk = k.shape
    Dv = v.shape[-1]
    N = triton.cdiv(T, C)
    BK, BV = _blocks(Dk, Dv)
    hbuf = torch.empty(B, H, N, Dk, Dv, device=k.device, dtype=torch.float32)
    s_fin = torch.empty(B, H, Dk, Dv, device=k.device, dtype=torch.float32)
    _state_kernel[(triton.cdiv(Dk, BK), triton.cdiv(Dv, BV), B * H)](
        k, v, bcum, s0, hbuf, s_fin, *k.stride()[:3], *v.stride()[:3],
        T, N * C, H, Dk, Dv, N,
        HAS_DECAY=bcum is not None, HAS_S0=s0 is not None, C=C, BK=BK, BV=BV,
    )
    return hbuf, s_fin


@torch.library.custom_op("mixnas::linear_attention_fwd", mutates_args=())
def linear_attention_fwd(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor | None,
    initial_state: torch.Tensor | None, scale: float, chunk_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """o (B, T, H, Dv) and the final float32 state; g: None or (B, T, H) per-step log decays."""
    B, T, H, Dk = q.shape
    Dv = v.shape[-1]
    C = chunk_size
    N = triton.cdiv(T, C)
    bcum = None if g is None else _chunk_cumsum(g, C)
    s0 = None if initial_state is None else initial_state.float().contiguous()
    hbuf, s_fin = _states(k, v, bcum, s0, C)
    o = torch.empty(B, T, H, Dv, device=q.device, dtype=q.dtype)
    BK, BV = _blocks(Dk, Dv)
    _output_kernel[(triton.cdiv(Dv, BV), N, B * H)](
        q, k, v, bcum, hbuf, o, *q.stride()[:3], *v.stride()[:3], *o.stride()[:3],
        T, N * C, H, Dk, Dv, N, scale, HAS_DECAY=g is not None, C=C, BK=BK, BV=BV,
    )
    return o, s_fin


@linear_attention_fwd.register_fake
def _(q, k, v, g, initial_state, scale, chunk_size):
    B, T, H, Dk = q.shape
    Dv = v.shape[-1]
    return q.new_empty(B, T, H, Dv), q.new_empty(B, H, Dk, Dv, dtype=torch.float32)


@torch.library.custom_op("mixnas::linear_attention_bwd", mutates_args=())
def linear_attention_bwd(
    do: torch.Tensor, ds_fin: torch.Tensor | None, q: torch.Tensor, k: torch.Tensor,
    v: torch.Tensor, g: torch.Tensor | None, initial_state: torch.Tensor | None,
    s_fin: torch.Tensor, scale: float, chunk_size: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """dq, dk, dv, dg (empty without decay) and d(initial_state) (float32)."""
    B, T, H, Dk = q.shape
    Dv = v.shape[-1]
    C = chunk_size
    N = triton.cdiv(T, C)
    BK, BV = _blocks(Dk, Dv)
    bcum = None if g is None else _chunk_cumsum(g, C)
    s0 = None if initial_state is None else initial_state.float().contiguous()
    hbuf, _ = _states(k, v, bcum, s0, C)
    do = _same_layout(do, v)
    ds_fin = None if ds_fin is None else ds_fin.float().contiguous()
    gbuf = torch.empty_like(hbuf)
    ds0 = torch.empty(B, H, Dk, Dv, device=q.device, dtype=torch.float32)
    common = {"HAS_DECAY": g is not None, "C": C, "BK": BK, "BV": BV}
    _dstate_kernel[(triton.cdiv(Dk, BK), triton.cdiv(Dv, BV), B * H)](
        q, do, bcum, ds_fin, gbuf, ds0, *q.stride()[:3], *do.stride()[:3],
        T, N * C, H, Dk, Dv, N, scale, HAS_DSFIN=ds_fin is not None, **common,
    )
    dq, dk = torch.empty_like(q), torch.empty_like(q)
    dv = torch.empty_like(do)
    _dqk_kernel[(triton.cdiv(Dk, BK), N, B * H)](
        q, k, v, do, bcum, hbuf, gbuf, dq, dk,
        *q.stride()[:3], *v.stride()[:3], *do.stride()[:3], *dq.stride()[:3],
        T, N * C, H, Dk, Dv, N, scale, **common,
    )
    _dv_kernel[(triton.cdiv(Dv, BV), N, B * H)](
        q, k, do, bcum, gbuf, dv, *q.stride()[:3], *do.stride()[:3], *dv.stride()[:3],
        T, N * C, H, Dk, Dv, N, scale, **common,
    )
    dg = q.new_empty(0, dtype=torch.float32)
    if g is not None:
        dcum = (q.float() * dq.float() - k.float() * dk.float()).sum(-1)  # dL/dB_t
        if ds_fin is not None:
            dcum[:, -1] += (ds_fin * s_fin).sum((-1, -2))
        dg = dcum.flip(1).cumsum(1).flip(1)
    return dq, dk, dv, dg, ds0


@linear_attention_bwd.register_fake
def _(do, ds_fin, q, k, v, g, initial_state, s_fin, scale, chunk_size):
    B, T, H, Dk = q.shape
    dg = q.new_empty(0 if g is None else (B, T, H), dtype=torch.float32)
    e = torch.empty_like
    return e(q), e(k), e(v), dg, e(s_fin)


def _setup(ctx, inputs, output):
    q, k, v, g, s0, scale, chunk_size = inputs
    ctx.save_for_backward(q, k, v, g, s0, output[1])
    ctx.args = (scale, chunk_size)


def _backward(ctx, do, ds_fin):
    q, k, v, g, s0, s_fin = ctx.saved_tensors
    dq, dk, dv, dg, ds0 = linear_attention_bwd(do, ds_fin, q, k, v, g, s0, s_fin, *ctx.args)
    return (dq, dk, dv, None if g is None else dg.to(g.dtype),
            None if s0 is None else ds0.to(s0.dtype), None, None)


linear_attention_fwd.register_autograd(_backward, setup_context=_setup)


@register_flop_formula(torch.ops.mixnas.linear_attention_fwd)
def _fwd_flops(q_shape, k_shape, v_shape, *args, out_shape=None, **kw):
    B, T, H, Dk = q_shape
    return linear_attention_flops(B, T, H, Dk, v_shape[-1], args[3])


@register_flop_formula(torch.ops.mixnas.linear_attention_bwd)
def _bwd_flops(do_shape, ds_shape, q_shape, k_shape, v_shape, *args, out_shape=None, **kw):
    """Twice the forward plus the recomputed states (the two gradient passes mirror it)."""
    B, T, H, Dk = q_shape
    C = args[-1]
    N = -(-T // C)
    Dv = v_shape[-1]
    return 2 * linear_attention_flops(B, T, H, Dk, Dv, C) + 2 * B * H * N * C * Dk * Dv


def linear_attention(q, k, v, log_decay=None, scale=None, initial_state=None,
                     output_final_state=False, chunk_size=64):
    """Triton path of `mixnas.kernels.linear_attention` (same arguments, shapes and semantics;
    chunk_size 16, 32 or 64). Naive reference: `reference.linear_attention_recurrent`."""
    check_inputs("linear_attention", q, k, v, log_decay, initial_state)
    check_chunk_size("linear_attention", chunk_size)
    B, T, H, Dk = q.shape
    scale = Dk ** -0.5 if scale is None else float(scale)
    g = reference.decay_per_step(log_decay, B, T, H, Dk)
    if g is not None and g.dim() == 4:
        chunks = reference.linear_attention_chunks(q.float(), k.float(), v.float(), g.float(),
                                                    chunk_size)
        q_in, k_out, u, attn, decay = chunks
        o, s, _ = chunk_scan_fwd(q_in, k_out, u, None, attn, decay, initial_state)
        o = reference.unchunk(o * scale, T).to(q.dtype)
    else:
        if q.stride() != k.stride() or q.stride(-1) != 1:  # the kernels read q and k alike
            q, k = q.contiguous(), k.contiguous()
        v = v if v.stride(-1) == 1 else v.contiguous()
        o, s = linear_attention_fwd(q, k, v, g, initial_state, scale, int(chunk_size))
    return (o, s) if output_final_state else o

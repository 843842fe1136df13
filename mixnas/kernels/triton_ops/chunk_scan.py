"""The sequential part of the chunked delta rule and per-channel-decay linear attention in Triton.

The parallel per-chunk preparation (WY/UT triangular solve, in-chunk decayed scores) stays in
torch (`reference.delta_rule_chunks`, `reference.linear_attention_chunks`), where batched
matmuls and `solve_triangular` are already efficient; the chunk-to-chunk recurrence, a Python loop
of small launches in the reference, is one kernel here, forward and backward:

    U_n = u_n - w_n S_n (u_n without w),  o_n = q_n S_n + A_n U_n,  S_{n+1} = d_n * S_n + k_n^T U_n

with d_n none, a scalar or a Dk vector per chunk. Programs own a Dv slice of the state (the
recurrence is independent per state column); gradients that sum over Dv are written per slice and
summed in torch. The forward stores every S_n for the backward.
"""

import torch
import triton
import triton.language as tl
from torch.utils.flop_counter import register_flop_formula

from mixnas.kernels.triton_ops._config import INTERPRET, pow2


@triton.jit
def _load(X, base, rows, cols, R, Ccols):
    """(len(rows), len(cols)) tile of a row-major (R, Ccols) matrix at element offset `base`."""
    ptr = X + base + rows[:, None] * Ccols + cols[None, :]
    return tl.load(ptr, mask=(rows[:, None] < R) & (cols[None, :] < Ccols), other=0.0)


@triton.jit
def _store(X, base, rows, cols, R, Ccols, val):
    ptr = X + base + rows[:, None] * Ccols + cols[None, :]
    tl.store(ptr, val, mask=(rows[:, None] < R) & (cols[None, :] < Ccols))


@triton.jit
def _scan_fwd_kernel(
    Q, K, U, W, A, DEC, S0, O, STATES, SFIN,
    N, DK, DV,
    HAS_W: tl.constexpr, DECAY: tl.constexpr, HAS_S0: tl.constexpr,
    C: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
):
    """DECAY: 0 none, 1 scalar per chunk (DEC (BH, N)), 2 per channel (DEC (BH, N, DK))."""
    i_v, i_bh = tl.program_id(0), tl.program_id(1)
    bh = i_bh.to(tl.int64)
    offs_c = tl.arange(0, C)
    offs_k = tl.arange(0, BK)
    offs_v = i_v * BV + tl.arange(0, BV)
    S = tl.zeros([BK, BV], dtype=tl.float32)
    if HAS_S0:
        S += _load(S0, bh * DK * DV, offs_k, offs_v, DK, DV)
    for n in range(N):
        chunk = bh * N + n
        _store(STATES, chunk * DK * DV, offs_k, offs_v, DK, DV, S)
        q = _load(Q, chunk * C * DK, offs_c, offs_k, C, DK)
        k = _load(K, chunk * C * DK, offs_c, offs_k, C, DK)
        u = _load(U, chunk * C * DV, offs_c, offs_v, C, DV)
        a = _load(A, chunk * C * C, offs_c, offs_c, C, C)
        if HAS_W:
            w = _load(W, chunk * C * DK, offs_c, offs_k, C, DK)
            u = u - tl.dot(w, S)
        o = tl.dot(q, S) + tl.dot(a, u)
        _store(O, chunk * C * DV, offs_c, offs_v, C, DV, o)
        if DECAY == 1:
            S = S * tl.load(DEC + chunk)
        if DECAY == 2:
            S = S * tl.load(DEC + chunk * DK + offs_k, mask=offs_k < DK, other=0.0)[:, None]
        S += tl.dot(tl.trans(k), u)
    _store(SFIN, bh * DK * DV, offs_k, offs_v, DK, DV, S)


@triton.jit
def _scan_bwd_kernel(
    Q, K, U, W, A, DEC, STATES, DO, DSFIN,
    DQ, DK_, DU, DW, DA, DDEC, DS0,
    N, DK, DV, BH,
    HAS_W: tl.constexpr, DECAY: tl.constexpr, HAS_DSFIN: tl.constexpr,
    C: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
):
    """Reverse scan. DQ, DK_, DW, DA, DDEC hold one partial sum per Dv slice (leading dim NV);
    DU and DS0 are written slice by slice."""
    i_v, i_bh = tl.program_id(0), tl.program_id(1)
    bh = i_bh.to(tl.int64)
    part = i_v.to(tl.int64) * BH * N  # chunk offset of this slice's partial sums
    offs_c = tl.arange(0, C)
    offs_k = tl.arange(0, BK)
    offs_v = i_v * BV + tl.arange(0, BV)
    dS = tl.zeros([BK, BV], dtype=tl.float32)
    if HAS_DSFIN:
        dS += _load(DSFIN, bh * DK * DV, offs_k, offs_v, DK, DV)
    for i in range(N):
        n = N - 1 - i
        chunk = bh * N + n
        S = _load(STATES, chunk * DK * DV, offs_k, offs_v, DK, DV)
        q = _load(Q, chunk * C * DK, offs_c, offs_k, C, DK)
        k = _load(K, chunk * C * DK, offs_c, offs_k, C, DK)
        u = _load(U, chunk * C * DV, offs_c, offs_v, C, DV)
        a = _load(A, chunk * C * C, offs_c, offs_c, C, C)
        do = _load(DO, chunk * C * DV, offs_c, offs_v, C, DV)
        if HAS_W:
            w = _load(W, chunk * C * DK, offs_c, offs_k, C, DK)
            u = u - tl.dot(w, S)
        du = tl.dot(tl.trans(a), do) + tl.dot(k, dS)
        _store(DU, chunk * C * DV, offs_c, offs_v, C, DV, du)
        _store(DA, (part + chunk) * C * C, offs_c, offs_c, C, C, tl.dot(do, tl.trans(u)))
        _store(DQ, (part + chunk) * C * DK, offs_c, offs_k, C, DK, tl.dot(do, tl.trans(S)))
        _store(DK_, (part + chunk) * C * DK, offs_c, offs_k, C, DK, tl.dot(u, tl.trans(dS)))
        dS_prev = tl.dot(tl.trans(q), do)
        if HAS_W:
            _store(DW, (part + chunk) * C * DK, offs_c, offs_k, C, DK, -tl.dot(du, tl.trans(S)))
            dS_prev -= tl.dot(tl.trans(w), du)
        if DECAY == 1:
            tl.store(DDEC + part + chunk, tl.sum(tl.sum(dS * S, 1), 0))
            dS_prev += dS * tl.load(DEC + chunk)
        elif DECAY == 2:
            dec_ptr = chunk * DK + offs_k
            tl.store(DDEC + part * DK + dec_ptr, tl.sum(dS * S, 1), mask=offs_k < DK)
            dS_prev += dS * tl.load(DEC + dec_ptr, mask=offs_k < DK, other=0.0)[:, None]
        else:
            dS_prev += dS
        dS = dS_prev
    _store(DS0, bh * DK * DV, offs_k, offs_v, DK, DV, dS)


def _block_v(Dk, Dv):
    """Dv slice per program: the whole Dv under the interpreter; on a GPU keep the (Dk, BV) fp32
    state within ~8k elements and give the sequential scan more programs."""
    if INTERPRET:
        return pow2(Dv)
    return max(16, min(pow2(Dv), 8192 // pow2(Dk), 64))


def _decay_kind(decay):
    return 0 if decay is None else (1 if decay.dim() == 3 else 2)


@torch.library.custom_op("mixnas::chunk_scan_fwd", mutates_args=())
def chunk_scan_fwd(
    q: torch.Tensor, k: torch.Tensor, u: torch.Tensor, w: torch.Tensor | None, a: torch.Tensor,
    decay: torch.Tensor | None, initial_state: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """o (B, H, N, C, Dv), final state and the states at every chunk start (all float32)."""
    B, H, N, C, Dk = q.shape
    Dv = u.shape[-1]
    q, k, u, a = (x.float().contiguous() for x in (q, k, u, a))
    w = None if w is None else w.float().contiguous()
    dec = None if decay is None else decay.float().contiguous()
    s0 = None if initial_state is None else initial_state.float().contiguous()
    o = torch.empty(B, H, N, C, Dv, device=q.device, dtype=torch.float32)
    states = torch.empty(B, H, N, Dk, Dv, device=q.device, dtype=torch.float32)
    s_fin = torch.empty(B, H, Dk, Dv, device=q.device, dtype=torch.float32)
    BV = _block_v(Dk, Dv)
    _scan_fwd_kernel[(triton.cdiv(Dv, BV), B * H)](
        q, k, u, w, a, dec, s0, o, states, s_fin, N, Dk, Dv,
        HAS_W=w is not None, DECAY=_decay_kind(decay), HAS_S0=s0 is not None,
        C=C, BK=pow2(Dk), BV=BV, num_stages=1,
    )
    return o, s_fin, states


@chunk_scan_fwd.register_fake
def _(q, k, u, w, a, decay, initial_state):
    B, H, N, C, Dk = q.shape
    Dv = u.shape[-1]
    f32 = torch.float32
    return (q.new_empty(B, H, N, C, Dv, dtype=f32), q.new_empty(B, H, Dk, Dv, dtype=f32),
            q.new_empty(B, H, N, Dk, Dv, dtype=f32))


@torch.library.custom_op("mixnas::chunk_scan_bwd", mutates_args=())
def chunk_scan_bwd(
    do: torch.Tensor, ds_fin: torch.Tensor | None, q: torch.Tensor, k: torch.Tensor,
    u: torch.Tensor, w: torch.Tensor | None, a: torch.Tensor, decay: torch.Tensor | None,
    states: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
           torch.Tensor]:
    """dq, dk, du, dw, da, ddecay, d(initial_state); dw/ddecay are empty when w/decay are None."""
    B, H, N, C, Dk = q.shape
    Dv = u.shape[-1]
    q, k, u, a, do = (x.float().contiguous() for x in (q, k, u, a, do))
    w = None if w is None else w.float().contiguous()
    dec = None if decay is None else decay.float().contiguous()
    ds_fin = None if ds_fin is None else ds_fin.float().contiguous()
    BV = _block_v(Dk, Dv)
    NV = triton.cdiv(Dv, BV)
    f32 = {"device": q.device, "dtype": torch.float32}
    dq, dk = torch.empty(NV, *q.shape, **f32), torch.empty(NV, *q.shape, **f32)
    dw = torch.empty(NV, *q.shape, **f32) if w is not None else None
    da = torch.empty(NV, *a.shape, **f32)
    ddec = torch.empty(NV, *decay.shape, **f32) if decay is not None else None
    du = torch.empty(u.shape, **f32)
    ds0 = torch.empty(B, H, Dk, Dv, **f32)
    _scan_bwd_kernel[(NV, B * H)](
        q, k, u, w, a, dec, states, do, ds_fin, dq, dk, du, dw, da, ddec, ds0, N, Dk, Dv, B * H,
        HAS_W=w is not None, DECAY=_decay_kind(decay), HAS_DSFIN=ds_fin is not None,
        C=C, BK=pow2(Dk), BV=BV, num_stages=1,
    )
    empty = q.new_empty(0)
    return (dq.sum(0), dk.sum(0), du, empty if dw is None else dw.sum(0), da.sum(0),
            empty if ddec is None else ddec.sum(0), ds0)


@chunk_scan_bwd.register_fake
def _(do, ds_fin, q, k, u, w, a, decay, states):
    e = torch.empty_like
    B, H = q.shape[:2]
    return (e(q), e(q), e(u), q.new_empty(0) if w is None else e(q), e(a),
            q.new_empty(0) if decay is None else e(decay),
            q.new_empty(B, H, q.shape[-1], u.shape[-1]))


def _setup(ctx, inputs, output):
    q, k, u, w, a, decay, s0 = inputs
    ctx.save_for_backward(q, k, u, w, a, decay, output[2])
    ctx.s0 = None if s0 is None else s0.dtype


def _backward(ctx, do, ds_fin, dstates):
    q, k, u, w, a, decay, states = ctx.saved_tensors
    dq, dk, du, dw, da, ddec, ds0 = chunk_scan_bwd(do, ds_fin, q, k, u, w, a, decay, states)
    return (dq.to(q.dtype), dk.to(k.dtype), du.to(u.dtype), None if w is None else dw.to(w.dtype),
            da.to(a.dtype), None if decay is None else ddec.to(decay.dtype),
            None if ctx.s0 is None else ds0.to(ctx.s0))


chunk_scan_fwd.register_autograd(_backward, setup_context=_setup)


def scan_flops(q_shape, u_shape, has_w):
    """Matmul FLOPs of the forward scan: q S, A U, k^T U (and w S)."""
    B, H, N, C, Dk = q_shape
    Dv = u_shape[-1]
    return 2 * B * H * N * C * Dv * (C + (3 if has_w else 2) * Dk)


@register_flop_formula(torch.ops.mixnas.chunk_scan_fwd)
def _fwd_flops(q_shape, k_shape, u_shape, w_shape, *args, out_shape=None, **kw):
    return scan_flops(q_shape, u_shape, w_shape is not None)


@register_flop_formula(torch.ops.mixnas.chunk_scan_bwd)
def _bwd_flops(do_shape, ds_shape, q_shape, k_shape, u_shape, w_shape, *args, out_shape=None,
               **kw):
    """Recomputed U, then A^T dO, k dS, dO U^T, dO S^T, U dS^T, q^T dO (and dU S^T, w^T dU)."""
    B, H, N, C, Dk = q_shape
    Dv = u_shape[-1]
    has_w = w_shape is not None
    return 2 * B * H * N * C * Dv * (2 * C + (7 if has_w else 4) * Dk)

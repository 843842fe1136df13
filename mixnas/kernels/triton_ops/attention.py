"""Flash attention (forward and backward) in Triton: causal or not, GQA/MQA, sliding window.

Layout (B, T, H, D) is read through strides, so q/k/v slices of a fused projection need no copy.
Any head_dim works: it is padded to a power of two with masked loads. The forward keeps the
log-sum-exp (base 2) per query row; the backward recomputes probabilities from it, one kernel for
dK/dV (looping over the query heads of a kv group, so GQA needs no atomics) and one for dQ.
Each program visits only the blocks its rows can see, in three ranges: the blocks every row sees
whole run without a mask; only the diagonal, window-edge and tail blocks compute one.
"""

import torch
import triton
import triton.language as tl
from torch.utils.flop_counter import register_flop_formula

from mixnas.kernels.flops import attention_flops
from mixnas.kernels.reference import check_attention
from mixnas.kernels.triton_ops._config import autotune, check_inputs, pow2

LOG2E = 1.4426950408889634

_FWD_CONFIGS = [
    triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
    for bm, bn, w, s in [(128, 64, 8, 3), (128, 32, 4, 3), (64, 64, 4, 3), (64, 32, 4, 2)]
]
_BWD_CONFIGS = [
    triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
    for bm, bn, w, s in [(64, 64, 4, 2), (32, 64, 4, 2), (64, 128, 8, 2), (32, 32, 4, 2)]
]
_INTERPRETER_CONFIG = triton.Config({"BLOCK_M": 64, "BLOCK_N": 64})
_KEY = ["BLOCK_D", "CAUSAL", "HAS_WINDOW"]


@triton.jit
def _visible(rows, cols, Tk, shift, window, CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr):
    """Which (query row, key col) pairs attend; query row i sits at position i + shift."""
    ok = cols < Tk
    if CAUSAL:
        ok = ok & (cols <= rows + shift)
    if HAS_WINDOW:
        ok = ok & (cols > rows + shift - window)
    return ok


@triton.jit
def _key_ranges(m0, Tk, shift, window, CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """Key blocks for query rows [m0, m0 + BLOCK_M) as three consecutive ranges: masked (window
    edge), whole (every row sees every key: no mask), masked (diagonal and the end of Tk)."""
    lo = 0
    hi = Tk
    full_lo = 0
    full_hi = Tk // BLOCK_N * BLOCK_N
    if CAUSAL:
        hi = tl.minimum(Tk, m0 + BLOCK_M + shift)
        full_hi = tl.minimum(full_hi, (m0 + shift + 1) // BLOCK_N * BLOCK_N)
    if HAS_WINDOW:
        lo = tl.maximum(0, m0 + shift - window + 1) // BLOCK_N * BLOCK_N
        full_lo = tl.cdiv(tl.maximum(0, m0 + BLOCK_M + shift - window), BLOCK_N) * BLOCK_N
    edge_end = tl.minimum(full_lo, hi)
    return lo, edge_end, full_lo, full_hi, tl.maximum(full_hi, edge_end), hi


@triton.jit
def _query_ranges(n0, Tq, shift, window, CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """Query blocks for key cols [n0, n0 + BLOCK_N), split like `_key_ranges`: masked
    (diagonal), whole, masked (window edge and the end of Tq)."""
    lo = 0
    hi = Tq
    full_lo = 0
    full_hi = Tq // BLOCK_M * BLOCK_M
    if CAUSAL:
        lo = tl.maximum(0, n0 - shift) // BLOCK_M * BLOCK_M
        full_lo = tl.cdiv(tl.maximum(0, n0 + BLOCK_N - 1 - shift), BLOCK_M) * BLOCK_M
    if HAS_WINDOW:
        hi = tl.minimum(Tq, n0 + BLOCK_N - 1 - shift + window)
        full_hi = tl.minimum(full_hi, tl.maximum(0, n0 + window - shift) // BLOCK_M * BLOCK_M)
    edge_end = tl.minimum(full_lo, hi)
    return lo, edge_end, full_lo, full_hi, tl.maximum(full_hi, edge_end), hi


@triton.jit
def _fwd_inner(acc, m_i, l_i, q, k_base, v_base, sk_t, sv_t, rows, start, end, offs_n, offs_d,
               D, Tk, shift, window, qk_scale, MASK: tl.constexpr, CAUSAL: tl.constexpr,
               HAS_WINDOW: tl.constexpr, BLOCK_N: tl.constexpr):
    """Online-softmax accumulation over key blocks [start, end)."""
    for start_n in range(start, end, BLOCK_N):
        cols = start_n + offs_n
        kv_mask = (cols[:, None] < Tk) & (offs_d[None, :] < D)
        k = tl.load(k_base + cols[:, None].to(tl.int64) * sk_t + offs_d[None, :], mask=kv_mask,
                    other=0.0)
        s = tl.dot(q, tl.trans(k)) * qk_scale
        if MASK:
            ok = _visible(rows[:, None], cols[None, :], Tk, shift, window, CAUSAL, HAS_WINDOW)
            s = tl.where(ok, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.math.exp2(m_i - m_new)
        p = tl.math.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(v_base + cols[:, None].to(tl.int64) * sv_t + offs_d[None, :], mask=kv_mask,
                    other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m_i = m_new
    return acc, m_i, l_i


@autotune(_FWD_CONFIGS, _INTERPRETER_CONFIG, _KEY)
@triton.jit
def _fwd_kernel(
    Q, K, V, O, LSE,
    sq_b, sq_t, sq_h, sk_b, sk_t, sk_h, sv_b, sv_t, sv_h, so_b, so_t, so_h,
    Tq, Tk, H, GROUP, D, qk_scale, window,
    CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = pid_bh % H
    hk = h // GROUP
    shift = Tk - Tq
    m0 = pid_m * BLOCK_M
    rows = m0 + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    q_mask = (rows[:, None] < Tq) & (offs_d[None, :] < D)
    q = tl.load(Q + b * sq_b + h * sq_h + rows[:, None].to(tl.int64) * sq_t + offs_d[None, :],
                mask=q_mask, other=0.0)
    k_base = K + b * sk_b + hk * sk_h
    v_base = V + b * sv_b + hk * sv_h
    m_i = tl.full([BLOCK_M], -1.0e30, dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    a0, a1, b0, b1, c0, c1 = _key_ranges(m0, Tk, shift, window, CAUSAL, HAS_WINDOW, BLOCK_M,
                                         BLOCK_N)
    args = (k_base, v_base, sk_t, sv_t, rows)
    rest = (offs_n, offs_d, D, Tk, shift, window, qk_scale)
    acc, m_i, l_i = _fwd_inner(acc, m_i, l_i, q, *args, a0, a1, *rest, True, CAUSAL, HAS_WINDOW,
                               BLOCK_N)
    acc, m_i, l_i = _fwd_inner(acc, m_i, l_i, q, *args, b0, b1, *rest, False, CAUSAL,
                               HAS_WINDOW, BLOCK_N)
    acc, m_i, l_i = _fwd_inner(acc, m_i, l_i, q, *args, c0, c1, *rest, True, CAUSAL, HAS_WINDOW,
                               BLOCK_N)
    l_i = tl.where(l_i > 0, l_i, 1.0)  # rows past the end that see no key (never stored)
    acc = acc / l_i[:, None]
    tl.store(O + b * so_b + h * so_h + rows[:, None].to(tl.int64) * so_t + offs_d[None, :],
             acc.to(O.dtype.element_ty), mask=q_mask)
    tl.store(LSE + pid_bh.to(tl.int64) * Tq + rows, m_i + tl.math.log2(l_i), mask=rows < Tq)


@triton.jit
def _dkdv_inner(dk, dv, k, v, q_base, do_base, sq_t, so_t, LSE, DELTA, row_base, cols, start,
                end, offs_m, offs_d, D, Tq, Tk, shift, window, qk_scale, MASK: tl.constexpr,
                CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr, BLOCK_M: tl.constexpr):
    for start_m in range(start, end, BLOCK_M):
        rows = start_m + offs_m
        q_mask = (rows[:, None] < Tq) & (offs_d[None, :] < D)
        q = tl.load(q_base + rows[:, None].to(tl.int64) * sq_t + offs_d[None, :], mask=q_mask,
                    other=0.0)
        do = tl.load(do_base + rows[:, None].to(tl.int64) * so_t + offs_d[None, :], mask=q_mask,
                     other=0.0)
        lse = tl.load(LSE + row_base + rows, mask=rows < Tq, other=0.0)
        delta = tl.load(DELTA + row_base + rows, mask=rows < Tq, other=0.0)
        p_t = tl.math.exp2(tl.dot(k, tl.trans(q)) * qk_scale - lse[None, :])  # (BLOCK_N, BLOCK_M)
        if MASK:
            ok = _visible(rows[None, :], cols[:, None], Tk, shift, window, CAUSAL, HAS_WINDOW)
            p_t = tl.where(ok & (rows[None, :] < Tq), p_t, 0.0)
        dv += tl.dot(p_t.to(do.dtype), do)
        ds_t = p_t * (tl.dot(v, tl.trans(do)) - delta[None, :])
        dk += tl.dot(ds_t.to(q.dtype), q)
    return dk, dv


@autotune(_BWD_CONFIGS, _INTERPRETER_CONFIG, _KEY)
@triton.jit
def _bwd_dkdv_kernel(
    Q, K, V, DO, LSE, DELTA, DK, DV,
    sq_b, sq_t, sq_h, sk_b, sk_t, sk_h, sv_b, sv_t, sv_h, so_b, so_t, so_h, sd_b, sd_t, sd_h,
    Tq, Tk, H, GROUP, D, qk_scale, sm_scale, window,
    CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """dK, dV of one key block of one kv head, summed over the query heads of its group.
    DO has strides so_*; DK and DV share strides sd_*."""
    pid_n = tl.program_id(0)
    pid_bhk = tl.program_id(1)
    Hkv = H // GROUP
    b = (pid_bhk // Hkv).to(tl.int64)
    hk = pid_bhk % Hkv
    shift = Tk - Tq
    n0 = pid_n * BLOCK_N
    cols = n0 + tl.arange(0, BLOCK_N)
    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    kv_mask = (cols[:, None] < Tk) & (offs_d[None, :] < D)
    k = tl.load(K + b * sk_b + hk * sk_h + cols[:, None].to(tl.int64) * sk_t + offs_d[None, :],
                mask=kv_mask, other=0.0)
    v = tl.load(V + b * sv_b + hk * sv_h + cols[:, None].to(tl.int64) * sv_t + offs_d[None, :],
                mask=kv_mask, other=0.0)
    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    a0, a1, b0, b1, c0, c1 = _query_ranges(n0, Tq, shift, window, CAUSAL, HAS_WINDOW, BLOCK_M,
                                           BLOCK_N)
    rest = (offs_m, offs_d, D, Tq, Tk, shift, window, qk_scale)
    for g in range(GROUP):
        h = hk * GROUP + g
        args = (k, v, Q + b * sq_b + h * sq_h, DO + b * so_b + h * so_h, sq_t, so_t, LSE, DELTA,
                (b * H + h) * Tq, cols)
        dk, dv = _dkdv_inner(dk, dv, *args, a0, a1, *rest, True, CAUSAL, HAS_WINDOW, BLOCK_M)
        dk, dv = _dkdv_inner(dk, dv, *args, b0, b1, *rest, False, CAUSAL, HAS_WINDOW, BLOCK_M)
        dk, dv = _dkdv_inner(dk, dv, *args, c0, c1, *rest, True, CAUSAL, HAS_WINDOW, BLOCK_M)
    out = b * sd_b + hk * sd_h + cols[:, None].to(tl.int64) * sd_t + offs_d[None, :]
    tl.store(DK + out, (dk * sm_scale).to(DK.dtype.element_ty), mask=kv_mask)
    tl.store(DV + out, dv.to(DV.dtype.element_ty), mask=kv_mask)


@triton.jit
def _dq_inner(dq, q, do, lse, delta, k_base, v_base, sk_t, sv_t, rows, start, end, offs_n,
              offs_d, D, Tk, shift, window, qk_scale, MASK: tl.constexpr, CAUSAL: tl.constexpr,
              HAS_WINDOW: tl.constexpr, BLOCK_N: tl.constexpr):
    for start_n in range(start, end, BLOCK_N):
        cols = start_n + offs_n
        kv_mask = (cols[:, None] < Tk) & (offs_d[None, :] < D)
        k = tl.load(k_base + cols[:, None].to(tl.int64) * sk_t + offs_d[None, :], mask=kv_mask,
                    other=0.0)
        v = tl.load(v_base + cols[:, None].to(tl.int64) * sv_t + offs_d[None, :], mask=kv_mask,
                    other=0.0)
        p = tl.math.exp2(tl.dot(q, tl.trans(k)) * qk_scale - lse[:, None])
        if MASK:
            ok = _visible(rows[:, None], cols[None, :], Tk, shift, window, CAUSAL, HAS_WINDOW)
            p = tl.where(ok, p, 0.0)
        ds = p * (tl.dot(do, tl.trans(v)) - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k)
    return dq


@autotune(_BWD_CONFIGS, _INTERPRETER_CONFIG, _KEY)
@triton.jit
def _bwd_dq_kernel(
    Q, K, V, DO, LSE, DELTA, DQ,
    sq_b, sq_t, sq_h, sk_b, sk_t, sk_h, sv_b, sv_t, sv_h, so_b, so_t, so_h, sd_b, sd_t, sd_h,
    Tq, Tk, H, GROUP, D, qk_scale, sm_scale, window,
    CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """dQ of one query block of one head. DO has strides so_*, DQ strides sd_*."""
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = (pid_bh // H).to(tl.int64)
    h = pid_bh % H
    hk = h // GROUP
    shift = Tk - Tq
    m0 = pid_m * BLOCK_M
    rows = m0 + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    q_mask = (rows[:, None] < Tq) & (offs_d[None, :] < D)
    q = tl.load(Q + b * sq_b + h * sq_h + rows[:, None].to(tl.int64) * sq_t + offs_d[None, :],
                mask=q_mask, other=0.0)
    do = tl.load(DO + b * so_b + h * so_h + rows[:, None].to(tl.int64) * so_t + offs_d[None, :],
                 mask=q_mask, other=0.0)
    lse = tl.load(LSE + pid_bh.to(tl.int64) * Tq + rows, mask=rows < Tq, other=0.0)
    delta = tl.load(DELTA + pid_bh.to(tl.int64) * Tq + rows, mask=rows < Tq, other=0.0)
    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    a0, a1, b0, b1, c0, c1 = _key_ranges(m0, Tk, shift, window, CAUSAL, HAS_WINDOW, BLOCK_M,
                                         BLOCK_N)
    args = (q, do, lse, delta, K + b * sk_b + hk * sk_h, V + b * sv_b + hk * sv_h, sk_t, sv_t,
            rows)
    rest = (offs_n, offs_d, D, Tk, shift, window, qk_scale)
    dq = _dq_inner(dq, *args, a0, a1, *rest, True, CAUSAL, HAS_WINDOW, BLOCK_N)
    dq = _dq_inner(dq, *args, b0, b1, *rest, False, CAUSAL, HAS_WINDOW, BLOCK_N)
    dq = _dq_inner(dq, *args, c0, c1, *rest, True, CAUSAL, HAS_WINDOW, BLOCK_N)
    out = b * sd_b + h * sd_h + rows[:, None].to(tl.int64) * sd_t + offs_d[None, :]
    tl.store(DQ + out, (dq * sm_scale).to(DQ.dtype.element_ty), mask=q_mask)


def _window_arg(window):
    return (window is not None and window > 0), (window or 0)


@torch.library.custom_op("mixnas::attention_fwd", mutates_args=())
def attention_fwd(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, window: int, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns o (B, Tq, H, D) and the base-2 log-sum-exp (B, H, Tq). window <= 0: none."""
    B, Tq, H, D = q.shape
    Tk, Hkv = k.shape[1], k.shape[2]
    o = torch.empty_like(q, memory_format=torch.contiguous_format)
    lse = torch.empty(B, H, Tq, device=q.device, dtype=torch.float32)
    has_window, w = _window_arg(window)

    def grid(meta):
        return (triton.cdiv(Tq, meta["BLOCK_M"]), B * H)

    _fwd_kernel[grid](
        q, k, v, o, lse,
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2), o.stride(0), o.stride(1), o.stride(2),
        Tq, Tk, H, H // Hkv, D, scale * LOG2E, w,
        CAUSAL=causal, HAS_WINDOW=has_window, BLOCK_D=pow2(D),
    )
    return o, lse


@attention_fwd.register_fake
def _(q, k, v, causal, window, scale):
    B, Tq, H, _ = q.shape
    return torch.empty_like(q), q.new_empty(B, H, Tq, dtype=torch.float32)


@torch.library.custom_op("mixnas::attention_bwd", mutates_args=())
def attention_bwd(
    do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, o: torch.Tensor,
    lse: torch.Tensor, causal: bool, window: int, scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    B, Tq, H, D = q.shape
    Tk, Hkv = k.shape[1], k.shape[2]
    do = do if do.stride(-1) == 1 else do.contiguous()
    delta = (o.float() * do.float()).sum(-1).transpose(1, 2).contiguous()  # (B, H, Tq)
    dq = torch.empty(q.shape, device=q.device, dtype=q.dtype)
    dk = torch.empty(k.shape, device=k.device, dtype=k.dtype)
    dv = torch.empty(v.shape, device=v.device, dtype=v.dtype)
    has_window, w = _window_arg(window)
    common = {"CAUSAL": causal, "HAS_WINDOW": has_window, "BLOCK_D": pow2(D)}
    strides = (q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
               v.stride(0), v.stride(1), v.stride(2), do.stride(0), do.stride(1), do.stride(2))
    _bwd_dkdv_kernel[lambda meta: (triton.cdiv(Tk, meta["BLOCK_N"]), B * Hkv)](
        q, k, v, do, lse, delta, dk, dv, *strides, dk.stride(0), dk.stride(1), dk.stride(2),
        Tq, Tk, H, H // Hkv, D, scale * LOG2E, scale, w, **common,
    )
    _bwd_dq_kernel[lambda meta: (triton.cdiv(Tq, meta["BLOCK_M"]), B * H)](
        q, k, v, do, lse, delta, dq, *strides, dq.stride(0), dq.stride(1), dq.stride(2),
        Tq, Tk, H, H // Hkv, D, scale * LOG2E, scale, w, **common,
    )
    return dq, dk, dv


@attention_bwd.register_fake
def _(do, q, k, v, o, lse, causal, window, scale):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def _setup(ctx, inputs, output):
    q, k, v, causal, window, scale = inputs
    o, lse = output
    ctx.save_for_backward(q, k, v, o, lse)
    ctx.args = (causal, window, scale)


def _backward(ctx, do, dlse):
    q, k, v, o, lse = ctx.saved_tensors
    dq, dk, dv = attention_bwd(do, q, k, v, o, lse, *ctx.args)
    return dq, dk, dv, None, None, None


attention_fwd.register_autograd(_backward, setup_context=_setup)


@register_flop_formula(torch.ops.mixnas.attention_fwd)
def _fwd_flops(q_shape, k_shape, v_shape, causal, window, scale, *args, out_shape=None, **kw):
    """QK^T and PV over the attended pairs only (masked blocks are skipped)."""
    B, Tq, H, D = q_shape
    return attention_flops(B, Tq, k_shape[1], H, D, causal, window)


@register_flop_formula(torch.ops.mixnas.attention_bwd)
def _bwd_flops(do_shape, q_shape, k_shape, v_shape, o_shape, lse_shape, causal, window, scale,
               *args, out_shape=None, **kw):
    """2.5x the forward (dV, dP, dQ, dK and the recomputed QK^T), the usual flash convention."""
    B, Tq, H, D = q_shape
    return attention_flops(B, Tq, k_shape[1], H, D, causal, window, backward=True)


def attention(q, k, v, causal=True, window=None, scale=None):
    """Triton path of `mixnas.kernels.attention`: q `[B, Tq, H, D]`, k/v `[B, Tk, Hkv, D]` ->
    o `[B, Tq, H, D]` (same arguments and semantics; any head dim, padded to a power of two).
    Naive reference: `reference.attention_naive`."""
    check_inputs("attention", q, k, v)
    check_attention(q, k, causal, window)
    D = q.shape[3]
    q, k, v = (x if x.stride(-1) == 1 else x.contiguous() for x in (q, k, v))
    scale = D ** -0.5 if scale is None else float(scale)
    return attention_fwd(q, k, v, bool(causal), int(window or 0), scale)[0]

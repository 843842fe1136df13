"""Depthwise causal conv1d (+ bias, optional SiLU) in Triton, forward and backward.

Layout (B, T, C), weight (C, K). The backward first turns dy into the gradient of the
pre-activation (recomputing the convolution when there is a SiLU), then one kernel gives dx and
per-program partial sums of dweight and dbias (added up in torch, no atomics).
"""

import torch
import triton
import triton.language as tl
from torch.utils.flop_counter import register_flop_formula

from mixnas.kernels.triton_ops._config import INTERPRET, check_inputs


def _blocks(C):
    if INTERPRET:
        return 128, max(16, triton.next_power_of_2(C))
    return 64, min(128, max(16, triton.next_power_of_2(C)))


@triton.jit
def _conv(X, Wt, BIAS, b, t, c, T, C, K: tl.constexpr, HAS_BIAS: tl.constexpr):
    """Pre-activation (len(t), len(c)) tile: bias + sum_j w[c, j] x[t - K + 1 + j, c]."""
    acc = tl.zeros([t.shape[0], c.shape[0]], dtype=tl.float32)
    if HAS_BIAS:
        acc += tl.load(BIAS + c, mask=c < C, other=0.0).to(tl.float32)[None, :]
    for j in tl.static_range(K):
        src = t - K + 1 + j
        ok = (src[:, None] >= 0) & (src[:, None] < T) & (c[None, :] < C)
        x = tl.load(X + (b * T + src[:, None]) * C + c[None, :], mask=ok, other=0.0)
        w = tl.load(Wt + c * K + j, mask=c < C, other=0.0)
        acc += x.to(tl.float32) * w.to(tl.float32)[None, :]
    return acc


@triton.jit
def _fwd_kernel(X, Wt, BIAS, Y, T, C, K: tl.constexpr, HAS_BIAS: tl.constexpr,
                SILU: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr):
    b = tl.program_id(2).to(tl.int64)
    t = tl.program_id(0) * BT + tl.arange(0, BT)
    c = tl.program_id(1) * BC + tl.arange(0, BC)
    y = _conv(X, Wt, BIAS, b, t, c, T, C, K, HAS_BIAS)
    if SILU:
        y = y * tl.sigmoid(y)
    mask = (t[:, None] < T) & (c[None, :] < C)
    tl.store(Y + (b * T + t[:, None]) * C + c[None, :], y.to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _dpre_kernel(X, Wt, BIAS, DY, DPRE, T, C, K: tl.constexpr, HAS_BIAS: tl.constexpr,
                 BT: tl.constexpr, BC: tl.constexpr):
    """dpre = dy * silu'(pre), recomputing pre."""
    b = tl.program_id(2).to(tl.int64)
    t = tl.program_id(0) * BT + tl.arange(0, BT)
    c = tl.program_id(1) * BC + tl.arange(0, BC)
    pre = _conv(X, Wt, BIAS, b, t, c, T, C, K, HAS_BIAS)
    mask = (t[:, None] < T) & (c[None, :] < C)
    offs = (b * T + t[:, None]) * C + c[None, :]
    dy = tl.load(DY + offs, mask=mask, other=0.0).to(tl.float32)
    sig = tl.sigmoid(pre)
    tl.store(DPRE + offs, dy * sig * (1 + pre * (1 - sig)), mask=mask)


@triton.jit
def _bwd_kernel(X, Wt, DPRE, DX, DW_PART, DB_PART, T, C, NT, K: tl.constexpr,
                BT: tl.constexpr, BC: tl.constexpr):
    """dx[t] = sum_j w[j] dpre[t + K - 1 - j]; partial dw[j] = sum_t dpre[t] x[t - K + 1 + j]."""
    i_t, i_c, b = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    t = i_t * BT + tl.arange(0, BT)
    c = i_c * BC + tl.arange(0, BC)
    c_ok = c < C
    mask = (t[:, None] < T) & c_ok[None, :]
    offs = (b * T + t[:, None]) * C + c[None, :]
    dpre = tl.load(DPRE + offs, mask=mask, other=0.0).to(tl.float32)
    part = b * NT + i_t
    dx = tl.zeros([BT, BC], dtype=tl.float32)
    for j in tl.static_range(K):
        w = tl.load(Wt + c * K + j, mask=c_ok, other=0.0).to(tl.float32)
        dst = t + K - 1 - j
        ok = (dst[:, None] < T) & c_ok[None, :]
        dx += tl.load(DPRE + (b * T + dst[:, None]) * C + c[None, :], mask=ok,
                      other=0.0).to(tl.float32) * w[None, :]
        src = t - K + 1 + j
        ok = (src[:, None] >= 0) & (src[:, None] < T) & c_ok[None, :]
        x = tl.load(X + (b * T + src[:, None]) * C + c[None, :], mask=ok, other=0.0)
        tl.store(DW_PART + (part * C + c) * K + j, tl.sum(dpre * x.to(tl.float32), 0), mask=c_ok)
    tl.store(DB_PART + part * C + c, tl.sum(dpre, 0), mask=c_ok)
    tl.store(DX + offs, dx.to(DX.dtype.element_ty), mask=mask)


def _grid(B, T, C):
    BT, BC = _blocks(C)
    return (triton.cdiv(T, BT), triton.cdiv(C, BC), B), BT, BC


@torch.library.custom_op("mixnas::causal_conv1d_fwd", mutates_args=())
def causal_conv1d_fwd(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                      silu: bool) -> torch.Tensor:
    B, T, C = x.shape
    x, weight = x.contiguous(), weight.contiguous()
    y = torch.empty_like(x)
    grid, BT, BC = _grid(B, T, C)
    _fwd_kernel[grid](x, weight, bias, y, T, C, K=weight.shape[1], HAS_BIAS=bias is not None,
                      SILU=silu, BT=BT, BC=BC)
    return y


@causal_conv1d_fwd.register_fake
def _(x, weight, bias, silu):
    return torch.empty_like(x)


@torch.library.custom_op("mixnas::causal_conv1d_bwd", mutates_args=())
def causal_conv1d_bwd(dy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                      bias: torch.Tensor | None, silu: bool
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """dx, dweight, dbias (empty without bias)."""
    B, T, C = x.shape
    K = weight.shape[1]
    x, weight, dy = x.contiguous(), weight.contiguous(), dy.contiguous()
    grid, BT, BC = _grid(B, T, C)
    if silu:
        dpre = torch.empty(x.shape, device=x.device, dtype=torch.float32)
        _dpre_kernel[grid](x, weight, bias, dy, dpre, T, C, K=K, HAS_BIAS=bias is not None,
                           BT=BT, BC=BC)
    else:
        dpre = dy
    NT = grid[0]
    dx = torch.empty_like(x)
    dw_part = torch.empty(B * NT, C, K, device=x.device, dtype=torch.float32)
    db_part = torch.empty(B * NT, C, device=x.device, dtype=torch.float32)
    _bwd_kernel[grid](x, weight, dpre, dx, dw_part, db_part, T, C, NT, K=K, BT=BT, BC=BC)
    db = x.new_empty(0) if bias is None else db_part.sum(0).to(bias.dtype)
    return dx, dw_part.sum(0).to(weight.dtype), db


@causal_conv1d_bwd.register_fake
def _(dy, x, weight, bias, silu):
    return (torch.empty_like(x), torch.empty_like(weight),
            x.new_empty(0) if bias is None else torch.empty_like(bias))


def _setup(ctx, inputs, output):
    x, weight, bias, silu = inputs
    ctx.save_for_backward(x, weight, bias)
    ctx.silu = silu


def _backward(ctx, dy):
    x, weight, bias = ctx.saved_tensors
    dx, dw, db = causal_conv1d_bwd(dy, x, weight, bias, ctx.silu)
    return dx, dw, None if bias is None else db, None


causal_conv1d_fwd.register_autograd(_backward, setup_context=_setup)


@register_flop_formula(torch.ops.mixnas.causal_conv1d_fwd)
def _fwd_flops(x_shape, w_shape, *args, out_shape=None, **kw):
    B, T, C = x_shape
    return 2 * B * T * C * w_shape[1]


@register_flop_formula(torch.ops.mixnas.causal_conv1d_bwd)
def _bwd_flops(dy_shape, x_shape, w_shape, *args, out_shape=None, **kw):
    B, T, C = x_shape
    return 4 * B * T * C * w_shape[1]


def causal_conv1d(x, weight, bias=None, activation=None):
    """Triton path of `mixnas.kernels.causal_conv1d`: x `[B, T, C]`, weight `[C, K]`, bias None or
    `[C]` -> y `[B, T, C]`. Reference: `reference.causal_conv1d`."""
    check_inputs("causal_conv1d", x, weight, bias)
    if activation not in (None, "silu", "swish"):
        raise ValueError(
            f"causal_conv1d: unknown activation {activation!r} (expected None or 'silu')"
        )
    if x.shape[2] != weight.shape[0]:
        raise ValueError(f"causal_conv1d: x has {x.shape[2]} channels, weight {weight.shape[0]}")
    return causal_conv1d_fwd(x, weight, bias, activation is not None)

"""RMSNorm in Triton, fused forward and backward over tiles of whole rows.

The forward keeps 1/rms per row; the backward writes the weight gradient as one partial sum per
program (no atomics) and torch adds them up.
"""

import math

import torch
import triton
import triton.language as tl
from torch.utils.flop_counter import register_flop_formula

from mixnas.kernels.triton_ops._config import INTERPRET, check_inputs, pow2


def _rows_per_program(D):
    return 64 if INTERPRET else max(1, min(16, 4096 // pow2(D)))


@triton.jit
def _fwd_kernel(X, W, Y, RSTD, M, D, eps, HAS_W: tl.constexpr, BLOCK_M: tl.constexpr,
                BLOCK_D: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_D)
    mask = (rows[:, None] < M) & (cols[None, :] < D)
    offs = rows[:, None].to(tl.int64) * D + cols[None, :]
    x = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, 1) / D + eps)
    y = x * rstd[:, None]
    if HAS_W:
        y = y * tl.load(W + cols, mask=cols < D, other=0.0).to(tl.float32)[None, :]
    tl.store(Y + offs, y.to(Y.dtype.element_ty), mask=mask)
    tl.store(RSTD + rows, rstd, mask=rows < M)


@triton.jit
def _bwd_kernel(X, W, DY, RSTD, DX, DW_PART, M, D, HAS_W: tl.constexpr, BLOCK_M: tl.constexpr,
                BLOCK_D: tl.constexpr):
    """dx = rstd (dy w - xhat mean(dy w xhat)), xhat = x rstd; DW_PART[pid] = sum dy xhat."""
    pid = tl.program_id(0)
    rows = pid * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_D)
    mask = (rows[:, None] < M) & (cols[None, :] < D)
    offs = rows[:, None].to(tl.int64) * D + cols[None, :]
    x = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)
    dy = tl.load(DY + offs, mask=mask, other=0.0).to(tl.float32)
    rstd = tl.load(RSTD + rows, mask=rows < M, other=0.0)
    xhat = x * rstd[:, None]
    dyw = dy
    if HAS_W:
        dyw = dy * tl.load(W + cols, mask=cols < D, other=0.0).to(tl.float32)[None, :]
        tl.store(DW_PART + pid.to(tl.int64) * D + cols, tl.sum(dy * xhat, 0), mask=cols < D)
    dx = rstd[:, None] * (dyw - xhat * (tl.sum(dyw * xhat, 1) / D)[:, None])
    tl.store(DX + offs, dx.to(DX.dtype.element_ty), mask=mask)


@torch.library.custom_op("mixnas::rms_norm_fwd", mutates_args=())
def rms_norm_fwd(x: torch.Tensor, weight: torch.Tensor | None, eps: float
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """y and 1/rms per row (float32) for x (..., D)."""
    D = x.shape[-1]
    x2 = x.reshape(-1, D).contiguous()
    M = x2.shape[0]
    y = torch.empty_like(x2)
    rstd = torch.empty(M, device=x.device, dtype=torch.float32)
    BM = _rows_per_program(D)
    _fwd_kernel[(triton.cdiv(M, BM),)](x2, weight, y, rstd, M, D, eps, HAS_W=weight is not None,
                                        BLOCK_M=BM, BLOCK_D=pow2(D))
    return y.view(x.shape), rstd


@rms_norm_fwd.register_fake
def _(x, weight, eps):
    return torch.empty_like(x), x.new_empty(x.numel() // x.shape[-1], dtype=torch.float32)


@torch.library.custom_op("mixnas::rms_norm_bwd", mutates_args=())
def rms_norm_bwd(dy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor | None,
                 rstd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """dx and dweight (empty without weight)."""
    D = x.shape[-1]
    x2 = x.reshape(-1, D).contiguous()
    dy2 = dy.reshape(-1, D).contiguous()
    M = x2.shape[0]
    BM = _rows_per_program(D)
    grid = triton.cdiv(M, BM)
    dx = torch.empty_like(x2)
    dw_part = torch.empty(grid, D, device=x.device, dtype=torch.float32) if weight is not None \
        else None
    _bwd_kernel[(grid,)](x2, weight, dy2, rstd, dx, dw_part, M, D, HAS_W=weight is not None,
                         BLOCK_M=BM, BLOCK_D=pow2(D))
    dw = x.new_empty(0) if weight is None else dw_part.sum(0).to(weight.dtype)
    return dx.view(x.shape), dw


@rms_norm_bwd.register_fake
def _(dy, x, weight, rstd):
    return torch.empty_like(x), x.new_empty(0) if weight is None else torch.empty_like(weight)


def _setup(ctx, inputs, output):
    x, weight, _ = inputs
    ctx.save_for_backward(x, weight, output[1])


def _backward(ctx, dy, drstd):
    x, weight, rstd = ctx.saved_tensors
    dx, dw = rms_norm_bwd(dy, x, weight, rstd)
    return dx, None if weight is None else dw, None


rms_norm_fwd.register_autograd(_backward, setup_context=_setup)


@register_flop_formula(torch.ops.mixnas.rms_norm_fwd)
def _fwd_flops(x_shape, *args, out_shape=None, **kw):
    """Square, sum, scale by 1/rms and by the weight: 4 per element."""
    return 4 * math.prod(x_shape)


@register_flop_formula(torch.ops.mixnas.rms_norm_bwd)
def _bwd_flops(dy_shape, *args, out_shape=None, **kw):
    return 8 * math.prod(dy_shape)


def rms_norm(x, weight=None, eps=1e-6):
    """Triton path of `mixnas.kernels.rms_norm`: x `[..., C]`, weight None or `[C]` -> `[..., C]`.
    Reference: `reference.rms_norm`."""
    check_inputs("rms_norm", x, weight)
    return rms_norm_fwd(x, weight, float(eps))[0]

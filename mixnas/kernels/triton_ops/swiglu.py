"""SwiGLU, silu(gate) * up, as one fused elementwise Triton kernel each way."""

import torch
import triton
import triton.language as tl
from torch.utils.flop_counter import register_flop_formula

from mixnas.kernels.triton_ops._config import INTERPRET, check_inputs

BLOCK = 1 << 16 if INTERPRET else 1024


@triton.jit
def _fwd_kernel(G, U, Y, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    g = tl.load(G + offs, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(U + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + offs, (g * tl.sigmoid(g) * u).to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _bwd_kernel(G, U, DY, DG, DU, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    g = tl.load(G + offs, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(U + offs, mask=mask, other=0.0).to(tl.float32)
    dy = tl.load(DY + offs, mask=mask, other=0.0).to(tl.float32)
    sig = tl.sigmoid(g)
    tl.store(DG + offs, (dy * u * sig * (1 + g * (1 - sig))).to(DG.dtype.element_ty), mask=mask)
    tl.store(DU + offs, (dy * g * sig).to(DU.dtype.element_ty), mask=mask)


@torch.library.custom_op("mixnas::swiglu_fwd", mutates_args=())
def swiglu_fwd(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    gate, up = gate.contiguous(), up.contiguous()
    y = torch.empty_like(gate)
    _fwd_kernel[(triton.cdiv(gate.numel(), BLOCK),)](gate, up, y, gate.numel(), BLOCK=BLOCK)
    return y


@swiglu_fwd.register_fake
def _(gate, up):
    return torch.empty_like(gate)


@torch.library.custom_op("mixnas::swiglu_bwd", mutates_args=())
def swiglu_bwd(dy: torch.Tensor, gate: torch.Tensor, up: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
    gate, up, dy = gate.contiguous(), up.contiguous(), dy.contiguous()
    dg, du = torch.empty_like(gate), torch.empty_like(up)
    _bwd_kernel[(triton.cdiv(gate.numel(), BLOCK),)](gate, up, dy, dg, du, gate.numel(),
                                                     BLOCK=BLOCK)
    return dg, du


@swiglu_bwd.register_fake
def _(dy, gate, up):
    return torch.empty_like(gate), torch.empty_like(up)


def _setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, dy):
    return swiglu_bwd(dy, *ctx.saved_tensors)


swiglu_fwd.register_autograd(_backward, setup_context=_setup)


def _numel(shape):
    n = 1
    for s in shape:
        n *= s
    return n


@register_flop_formula(torch.ops.mixnas.swiglu_fwd)
def _fwd_flops(gate_shape, up_shape, *args, out_shape=None, **kw):
    """sigmoid (counted as 4), times gate, times up: 6 per element."""
    return 6 * _numel(gate_shape)


@register_flop_formula(torch.ops.mixnas.swiglu_bwd)
def _bwd_flops(dy_shape, *args, out_shape=None, **kw):
    return 12 * _numel(dy_shape)


def swiglu(gate, up):
    """Triton path of `mixnas.kernels.swiglu`: gate, up `[..., C]` -> silu(gate) * up `[..., C]`.
    Reference: `reference.swiglu`."""
    check_inputs("swiglu", gate, up)
    if gate.shape != up.shape:
        raise ValueError(f"swiglu: gate {tuple(gate.shape)} and up {tuple(up.shape)} differ")
    return swiglu_fwd(gate, up)

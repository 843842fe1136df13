"""Analytic FLOP counts of the kernel ops, and the formulas torch's FlopCounterMode lacks.

Conventions (2 FLOPs per multiply-add, matmuls only): attention counts QK^T and PV over the
(query, key) pairs that attend, so causal attention is half of dense; its backward is 2.5x the
forward (recomputed QK^T, dP, dS->dQ, dK, dV). Linear attention counts the chunked algorithm.

Importing this module registers a formula for torch's CPU flash-attention op, which
FlopCounterMode would otherwise count as zero, so that the reference path (what searches run on
CPU) is counted too: exactly for causal and non-causal attention; for sliding windows the banded
reference does at most 2x the attended pairs (the band is dense per block), and that is what is
counted. Count with `from mixnas.kernels.flops import FlopCounterMode`. (`mixnas.kernels` does not
import this module itself: torch.utils.flop_counter imports triton, and triton must not be
imported before a test session sets TRITON_INTERPRET.) Elementwise ops (norms, activations) are
not counted by torch on either path; the Triton custom ops count them (see their modules).
"""

import torch
from torch.utils.flop_counter import FlopCounterMode, flop_registry, register_flop_formula

__all__ = ["FlopCounterMode", "attended_pairs", "attention_flops", "delta_rule_flops",
           "linear_attention_flops"]

aten = torch.ops.aten


def attended_pairs(Tq, Tk, causal, window=None):
    """Number of (query, key) pairs that attend; query i sits at position i + Tk - Tq."""
    if not causal:
        return Tq * Tk

    def prefix(n):  # sum over x = 1..n of min(x, window)
        if not window or n <= window:
            return n * (n + 1) // 2
        return window * (window + 1) // 2 + (n - window) * window

    return prefix(Tk) - prefix(Tk - Tq)


def attention_flops(B, Tq, Tk, H, D, causal=True, window=None, backward=False):
    """Forward (or backward) FLOPs of `attention` with H query heads of dim D."""
    forward = 4 * B * H * D * attended_pairs(Tq, Tk, causal, window)
    return forward * 5 // 2 if backward else forward


def linear_attention_flops(B, T, H, Dk, Dv, chunk_size=64):
    """Forward FLOPs of chunked linear attention: in-chunk QK^T and scores V, e^b Q S_n, K^T V."""
    C = chunk_size
    N = -(-T // C)
    return 2 * B * H * N * (C * C * Dk + C * C * Dv + 2 * C * Dk * Dv)


def delta_rule_flops(B, T, H, Dk, Dv, chunk_size=64):
    """Forward FLOPs of the chunked delta rule: in-chunk K K^T and Q K^T, the unit-triangular
    solve for [U | W] (C^2 per right-hand side), and the scan's q S, w S, A U and K^T U."""
    C = chunk_size
    N = -(-T // C)
    per_chunk = 4 * C * C * Dk + C * C * (Dk + Dv) + 2 * C * C * Dv + 6 * C * Dk * Dv
    return B * H * N * per_chunk


def _sdpa_cpu_pairs(q_shape, k_shape, is_causal, attn_mask):
    Tq, Tk = q_shape[-2], k_shape[-2]
    if is_causal and attn_mask is None:  # torch's is_causal is aligned to the top left
        return sum(min(i + 1, Tk) for i in range(Tq)) if Tq != Tk else Tq * (Tq + 1) // 2
    return Tq * Tk


def _batch(shape):
    n = 1
    for s in shape[:-2]:
        n *= s
    return n


def _sdpa_cpu_flops(q_shape, k_shape, v_shape, dropout_p=0.0, is_causal=False, *args,
                    attn_mask=None, out_shape=None, **kwargs):
    pairs = _sdpa_cpu_pairs(q_shape, k_shape, is_causal, attn_mask)
    return 2 * _batch(q_shape) * pairs * (q_shape[-1] + v_shape[-1])


def _sdpa_cpu_backward_flops(grad_shape, q_shape, k_shape, v_shape, out_shape_, lse_shape,
                             dropout_p=0.0, is_causal=False, *args, attn_mask=None,
                             out_shape=None, **kwargs):
    return _sdpa_cpu_flops(q_shape, k_shape, v_shape, 0.0, is_causal, attn_mask=attn_mask) * 5 // 2


for _op, _formula in [
    (aten._scaled_dot_product_flash_attention_for_cpu, _sdpa_cpu_flops),
    (aten._scaled_dot_product_flash_attention_for_cpu_backward, _sdpa_cpu_backward_flops),
]:
    if _op not in flop_registry:
        register_flop_formula(_op)(_formula)

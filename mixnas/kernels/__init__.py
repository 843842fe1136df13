"""Sequence-mixer kernel ops: plain-torch references (CPU) and Triton kernels (CUDA).

Every op dispatches on its inputs: Triton for CUDA tensors, the reference in `reference.py`
otherwise. `MIXNAS_KERNELS=triton|reference` forces either (forcing Triton on CPU tensors only
works under `TRITON_INTERPRET=1`). The Triton code is imported on the first Triton call, because
Triton decides at kernel definition time whether to interpret: importing `mixnas.kernels` must
not freeze that choice. Decode steps (`*_step`) always use the reference ops, which are a handful
of small tensor ops per step on any device.
"""

import importlib
import os

from mixnas.kernels import reference
from mixnas.kernels.reference import causal_conv1d_step, delta_rule_step, linear_attention_step

__all__ = [
    "attention",
    "backend",
    "causal_conv1d",
    "causal_conv1d_step",
    "delta_rule",
    "delta_rule_step",
    "linear_attention",
    "linear_attention_step",
    "rms_norm",
    "swiglu",
]


def backend(x):
    """'triton' or 'reference': the implementation an op given tensor `x` runs."""
    forced = os.environ.get("MIXNAS_KERNELS", "").strip().lower()
    if forced in ("", "auto"):
        return "triton" if x.is_cuda else "reference"
    if forced in ("triton", "reference"):
        return forced
    raise ValueError(f"MIXNAS_KERNELS={forced!r}: expected 'triton', 'reference' or 'auto'")


def _impl(name, x):
    if backend(x) == "triton":
        return getattr(importlib.import_module("mixnas.kernels.triton_ops"), name)
    return getattr(reference, name)


def attention(q, k, v, causal=True, window=None, scale=None):
    """Softmax attention, q (B, Tq, H, D), k/v (B, Tk, Hkv, D); see `reference.attention`."""
    return _impl("attention", q)(q, k, v, causal=causal, window=window, scale=scale)


def linear_attention(q, k, v, log_decay=None, scale=None, initial_state=None,
                     output_final_state=False, chunk_size=64):
    """Decayed linear attention; see `reference.linear_attention`."""
    return _impl("linear_attention", q)(
        q, k, v, log_decay=log_decay, scale=scale, initial_state=initial_state,
        output_final_state=output_final_state, chunk_size=chunk_size,
    )


def delta_rule(q, k, v, beta, log_decay=None, scale=None, initial_state=None,
               output_final_state=False, chunk_size=64):
    """(Gated) delta rule; see `reference.delta_rule`."""
    return _impl("delta_rule", q)(
        q, k, v, beta, log_decay=log_decay, scale=scale, initial_state=initial_state,
        output_final_state=output_final_state, chunk_size=chunk_size,
    )


def rms_norm(x, weight=None, eps=1e-6):
    """RMSNorm over the last dim; see `reference.rms_norm`."""
    return _impl("rms_norm", x)(x, weight, eps=eps)


def swiglu(gate, up):
    """silu(gate) * up."""
    return _impl("swiglu", gate)(gate, up)


def causal_conv1d(x, weight, bias=None, activation=None):
    """Depthwise causal conv1d, x (B, T, C), weight (C, K); see `reference.causal_conv1d`."""
    return _impl("causal_conv1d", x)(x, weight, bias=bias, activation=activation)

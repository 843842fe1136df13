"""Triton implementations of the mixnas kernel ops (imported lazily by `mixnas.kernels`)."""

from mixnas.kernels.triton_ops.attention import attention
from mixnas.kernels.triton_ops.causal_conv1d import causal_conv1d
from mixnas.kernels.triton_ops.delta_rule import delta_rule
from mixnas.kernels.triton_ops.linear_attention import linear_attention
from mixnas.kernels.triton_ops.rms_norm import rms_norm
from mixnas.kernels.triton_ops.swiglu import swiglu

__all__ = ["attention", "causal_conv1d", "delta_rule", "linear_attention", "rms_norm", "swiglu"]

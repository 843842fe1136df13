"""DeltaNet and Gated DeltaNet (Yang et al. 2024/2025): the state is a fast-weight memory written
with the delta rule, S_t = a_t S_{t-1} + beta_t k_t (v_t - a_t S_{t-1}^T k_t)^T, so a key's old
value is replaced rather than accumulated. q, k, v pass through short causal convolutions (silu),
q and k are L2-normalised, beta = sigmoid(W_beta x). The gated variant adds a Mamba-2 style
data-dependent decay a_t = exp(-exp(A_log) softplus(W_a x + dt_bias)) and a swish output gate.
Decode state: conv cache (B, 3 d_model, conv_size - 1) plus S (B, heads, hd, hd)."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from mixnas.kernels import delta_rule, delta_rule_step
from mixnas.search_space.primitives.common import RMSNorm, ShortConv, chunked_flops
from mixnas.search_space.registry import ParamSpec, PrimitiveSpec, register


class DeltaNet(nn.Module):
    def __init__(self, d_model, heads=4, conv_size=4, gated=False):
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model {d_model} is not divisible by heads {heads}")
        self.d_model, self.heads, self.gated = d_model, heads, gated
        self.head_dim = d_model // heads
        self.qkv_proj = nn.Linear(d_model, 3 * d_model, bias=False)
        self.conv = ShortConv(3 * d_model, conv_size)
        self.beta_proj = nn.Linear(d_model, heads, bias=False)
        if gated:
            self.a_proj = nn.Linear(d_model, heads, bias=False)
            self.g_proj = nn.Linear(d_model, d_model, bias=False)
            dt = torch.exp(torch.rand(heads) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
            self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1(dt)
            self.A_log = nn.Parameter(torch.log(torch.empty(heads).uniform_(1.0, 16.0)))
        self.norm = RMSNorm(self.head_dim)
        self.o_proj = nn.Linear(d_model, d_model, bias=False)

    def _inputs(self, x, qkv):
        """q, k (L2-normalised), v: (..., H, hd); beta and log_decay (or None): (..., H)."""
        q, k, v = qkv.unflatten(-1, (3, self.heads, self.head_dim)).unbind(-3)
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        beta = torch.sigmoid(self.beta_proj(x))
        log_decay = None
        if self.gated:
            log_decay = -torch.exp(self.A_log) * F.softplus(self.a_proj(x) + self.dt_bias)
        return q, k, v, beta, log_decay

    def _out(self, x, o):
        o = self.norm(o)
        if self.gated:
            o = o * F.silu(self.g_proj(x)).unflatten(-1, (self.heads, self.head_dim))
        return self.o_proj(o.flatten(-2))

    def forward(self, x):
        q, k, v, beta, log_decay = self._inputs(x, self.conv(self.qkv_proj(x)))
        return self._out(x, delta_rule(q, k, v, beta, log_decay=log_decay))

    def init_state(self, batch_size, device=None, dtype=None):
        shape = (batch_size, self.heads, self.head_dim, self.head_dim)
        S = torch.zeros(shape, device=device, dtype=dtype)
        return {"conv": self.conv.init_state(batch_size, device, dtype), "S": S}

    def step(self, x_t, state):
        qkv, conv = self.conv.step(self.qkv_proj(x_t), state["conv"])
        q, k, v, beta, log_decay = self._inputs(x_t, qkv)
        o, S = delta_rule_step(q, k, v, beta, state["S"], log_decay=log_decay)
        return self._out(x_t, o), {"conv": conv, "S": S.to(state["S"].dtype)}

    def state_bytes(self, seq_len, bytes_per_element=2):
        return (self.conv.state_numel() + self.heads * self.head_dim**2) * bytes_per_element

    def flops_per_token(self, seq_len):
        d = self.d_model
        proj = 2 * d * (4 * d + self.heads) + (2 * d * (d + self.heads) if self.gated else 0)
        hd = self.head_dim
        rule = chunked_flops(seq_len, self.heads, hd, hd, delta=True)
        return proj + 2 * self.conv.weight.numel() + rule


class GatedDeltaNet(DeltaNet):
    def __init__(self, d_model, heads=4, conv_size=4):
        super().__init__(d_model, heads, conv_size, gated=True)


PARAMS = {
    "heads": ParamSpec("int", 4, low=1, high=256),
    "conv_size": ParamSpec("int", 4, low=2, high=16, doc="short convolution on q, k, v"),
}
register(PrimitiveSpec("deltanet", "token", "delta", DeltaNet, dict(PARAMS), doc=__doc__))
register(
    PrimitiveSpec("gated_deltanet", "token", "delta", GatedDeltaNet, dict(PARAMS), doc=__doc__)
)

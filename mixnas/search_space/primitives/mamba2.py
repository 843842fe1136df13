"""Mamba-2 style selective SSM block: one input projection to (z, x, B, C, dt), a short causal
convolution over (x, B, C), a scalar data-dependent decay per head, a_t = exp(-exp(A_log) dt_t),
the state-space recurrence h_t = a_t h_{t-1} + B_t^T (dt_t x_t), y_t = C_t h_t + D x_t, and a
gated RMS norm y * silu(z). The recurrence is linear attention with q=C, k=B, v=dt*x and
per-token per-head log_decay. Decode state: conv cache plus (B, heads, d_state, head_dim)."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from mixnas.kernels import linear_attention, linear_attention_step
from mixnas.search_space.primitives.common import RMSNorm, ShortConv, chunked_flops
from mixnas.search_space.registry import ParamSpec, PrimitiveSpec, register


class Mamba2(nn.Module):
    def __init__(self, d_model, heads=4, expand=2, d_state=16, conv_size=4):
        super().__init__()
        d_inner = expand * d_model
        if d_inner % heads:
            raise ValueError(f"expand * d_model = {d_inner} is not divisible by heads {heads}")
        self.d_model, self.d_inner, self.heads, self.d_state = d_model, d_inner, heads, d_state
        self.head_dim = d_inner // heads
        self.in_proj = nn.Linear(d_model, 2 * d_inner + 2 * d_state + heads, bias=False)
        self.conv = ShortConv(d_inner + 2 * d_state, conv_size)
        dt = torch.exp(torch.rand(heads) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1(dt)
        self.A_log = nn.Parameter(torch.log(torch.empty(heads).uniform_(1.0, 16.0)))
        self.D = nn.Parameter(torch.ones(heads))
        self.norm = RMSNorm(d_inner)
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)

    def _split(self, zxbcdt):
        return zxbcdt.split([self.d_inner, self.d_inner + 2 * self.d_state, self.heads], dim=-1)

    def _ssm_inputs(self, xbc, dt):
        """From conv output (..., d_inner + 2N) and raw dt (..., H): q, k, v, log_decay, x."""
        x, b, c = xbc.split([self.d_inner, self.d_state, self.d_state], dim=-1)
        x = x.unflatten(-1, (self.heads, self.head_dim))
        dt = F.softplus(dt + self.dt_bias)
        log_decay = -torch.exp(self.A_log) * dt
        q = c.unsqueeze(-2).expand(*c.shape[:-1], self.heads, self.d_state)
        k = b.unsqueeze(-2).expand(*b.shape[:-1], self.heads, self.d_state)
        return q, k, x * dt[..., None], log_decay, x

    def _out(self, y, x, z):
        y = (y + self.D[:, None] * x).flatten(-2)
        return self.out_proj(self.norm(y * F.silu(z)))

    def forward(self, x):
        z, xbc, dt = self._split(self.in_proj(x))
        q, k, v, log_decay, xh = self._ssm_inputs(self.conv(xbc), dt)
        y = linear_attention(q, k, v, log_decay=log_decay, scale=1.0)
        return self._out(y, xh, z)

    def init_state(self, batch_size, device=None, dtype=None):
        ssm = (batch_size, self.heads, self.d_state, self.head_dim)
        return {
            "conv": self.conv.init_state(batch_size, device, dtype),
            "ssm": torch.zeros(ssm, device=device, dtype=dtype),
        }

    def step(self, x_t, state):
        z, xbc, dt = self._split(self.in_proj(x_t))
        xbc, conv = self.conv.step(xbc, state["conv"])
        q, k, v, log_decay, xh = self._ssm_inputs(xbc, dt)
        y, ssm = linear_attention_step(q, k, v, state["ssm"], log_decay=log_decay, scale=1.0)
        return self._out(y, xh, z), {"conv": conv, "ssm": ssm.to(state["ssm"].dtype)}

    def state_bytes(self, seq_len, bytes_per_element=2):
        numel = self.conv.state_numel() + self.heads * self.d_state * self.head_dim
        return numel * bytes_per_element

    def flops_per_token(self, seq_len):
        proj = 2 * self.d_model * (3 * self.d_inner + 2 * self.d_state + self.heads)
        conv = 2 * self.conv.weight.numel()
        return proj + conv + chunked_flops(seq_len, self.heads, self.d_state, self.head_dim)


register(
    PrimitiveSpec(
        name="mamba2",
        role="token",
        family="ssm",
        build=Mamba2,
        params={
            "heads": ParamSpec("int", 4, low=1, high=256),
            "expand": ParamSpec("int", 2, low=1, high=8, doc="inner width / d_model"),
            "d_state": ParamSpec("int", 16, low=1, high=512),
            "conv_size": ParamSpec("int", 4, low=2, high=16),
        },
        doc=__doc__,
    )
)

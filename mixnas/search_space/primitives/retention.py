"""Retention (RetNet): linear attention with a fixed, per-head exponential decay
gamma_h = 1 - 2^(-5 - h), rotary q/k, a per-head RMS norm of the output and a swish output gate.
The heads' different decays give multi-scale memory; the decode state is (B, heads, hd, hd)."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from mixnas.kernels import linear_attention, linear_attention_step
from mixnas.search_space.primitives.common import RMSNorm, apply_rope, chunked_flops
from mixnas.search_space.registry import ParamSpec, PrimitiveSpec, register


class Retention(nn.Module):
    def __init__(self, d_model, heads=4, rope=True):
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model {d_model} is not divisible by heads {heads}")
        self.d_model, self.heads, self.head_dim = d_model, heads, d_model // heads
        if rope and self.head_dim % 2:
            raise ValueError(f"RoPE needs an even head_dim, got {self.head_dim}")
        self.use_rope = rope
        log_decay = [math.log(1 - 2.0 ** (-5 - h)) for h in range(heads)]
        self.register_buffer("log_decay", torch.tensor(log_decay), persistent=False)
        self.qkvg_proj = nn.Linear(d_model, 4 * d_model, bias=False)
        self.norm = RMSNorm(self.head_dim)
        self.o_proj = nn.Linear(d_model, d_model, bias=False)

    def _qkvg(self, x, positions):
        B, T, _ = x.shape
        q, k, v, g = self.qkvg_proj(x).view(B, T, 4, self.heads, self.head_dim).unbind(2)
        if self.use_rope:
            q, k = apply_rope(q, positions), apply_rope(k, positions)
        return q, k, v, g

    def _out(self, o, g):
        return self.o_proj((F.silu(g) * self.norm(o)).flatten(-2))

    def forward(self, x):
        q, k, v, g = self._qkvg(x, torch.arange(x.shape[1], device=x.device))
        return self._out(linear_attention(q, k, v, log_decay=self.log_decay), g)

    def init_state(self, batch_size, device=None, dtype=None):
        shape = (batch_size, self.heads, self.head_dim, self.head_dim)
        return {"S": torch.zeros(shape, device=device, dtype=dtype), "pos": 0}

    def step(self, x_t, state):
        pos = torch.tensor([state["pos"]], device=x_t.device)
        q, k, v, g = (t[:, 0] for t in self._qkvg(x_t[:, None], pos))
        o, S = linear_attention_step(q, k, v, state["S"], log_decay=self.log_decay)
        return self._out(o, g), {"S": S.to(state["S"].dtype), "pos": state["pos"] + 1}

    def state_bytes(self, seq_len, bytes_per_element=2):
        return self.heads * self.head_dim**2 * bytes_per_element

    def flops_per_token(self, seq_len):
        proj = 2 * self.d_model * 5 * self.d_model
        return proj + chunked_flops(seq_len, self.heads, self.head_dim, self.head_dim)


register(
    PrimitiveSpec(
        name="retention",
        role="token",
        family="linear",
        build=Retention,
        params={
            "heads": ParamSpec("int", 4, low=1, high=256),
            "rope": ParamSpec("bool", True, doc="rotary q/k (RetNet's xPos without its scaling)"),
        },
        doc=__doc__,
    )
)

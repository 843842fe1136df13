"""Gated linear attention (Yang et al. 2024): linear attention whose state decays per channel
with a data-dependent gate, log a_t = logsigmoid(W2 W1 x_t + b) / 16 through a rank-`gate_rank`
bottleneck, followed by a per-head RMS norm and a swish output gate. Decode state (B, H, hd, hd)."""

import torch
import torch.nn as nn
import torch.nn.functional as F

from mixnas.kernels import linear_attention, linear_attention_step
from mixnas.search_space.primitives.common import RMSNorm, chunked_flops
from mixnas.search_space.registry import ParamSpec, PrimitiveSpec, register


class GLA(nn.Module):
    def __init__(self, d_model, heads=4, gate_rank=16):
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model {d_model} is not divisible by heads {heads}")
        self.d_model, self.heads, self.gate_rank = d_model, heads, gate_rank
        self.head_dim = d_model // heads
        self.qkvg_proj = nn.Linear(d_model, 4 * d_model, bias=False)
        self.gate_down = nn.Linear(d_model, gate_rank, bias=False)
        self.gate_up = nn.Linear(gate_rank, d_model, bias=True)
        self.norm = RMSNorm(self.head_dim)
        self.o_proj = nn.Linear(d_model, d_model, bias=False)

    def _project(self, x):
        shape = x.shape[:-1] + (self.heads, self.head_dim)
        q, k, v, g = self.qkvg_proj(x).view(*shape[:-2], 4, *shape[-2:]).unbind(-3)
        log_decay = F.logsigmoid(self.gate_up(self.gate_down(x))).view(shape) / 16.0
        return q, k, v, g, log_decay

    def _out(self, o, g):
        return self.o_proj((F.silu(g) * self.norm(o)).flatten(-2))

    def forward(self, x):
        q, k, v, g, log_decay = self._project(x)
        return self._out(linear_attention(q, k, v, log_decay=log_decay), g)

    def init_state(self, batch_size, device=None, dtype=None):
        shape = (batch_size, self.heads, self.head_dim, self.head_dim)
        return torch.zeros(shape, device=device, dtype=dtype)

    def step(self, x_t, state):
        q, k, v, g, log_decay = self._project(x_t)
        o, new_state = linear_attention_step(q, k, v, state, log_decay=log_decay)
        return self._out(o, g), new_state.to(state.dtype)

    def state_bytes(self, seq_len, bytes_per_element=2):
        return self.heads * self.head_dim**2 * bytes_per_element

    def flops_per_token(self, seq_len):
        proj = 2 * self.d_model * 5 * self.d_model + 4 * self.d_model * self.gate_rank
        hd = self.head_dim
        return proj + chunked_flops(seq_len, self.heads, hd, hd)


register(
    PrimitiveSpec(
        name="gla",
        role="token",
        family="linear",
        build=GLA,
        params={
            "heads": ParamSpec("int", 4, low=1, high=256),
            "gate_rank": ParamSpec("int", 16, low=1, high=1024, doc="rank of the decay gate"),
        },
        doc=__doc__,
    )
)

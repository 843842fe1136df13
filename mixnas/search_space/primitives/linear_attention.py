"""Normalised linear attention with a positive feature map: o_t = phi(q_t) S_t / phi(q_t) z_t, with
S_t = sum_s phi(k_s)^T v_s and z_t = sum_s phi(k_s). `elu1` is phi(x) = elu(x) + 1 (Katharopoulos
et al.); `taylor` is the 2nd-order Taylor map [1, x, x (x) x / sqrt(2)] of exp(q.k) (Based), whose
feature count is 1 + F + F^2 for feature_dim F. The normaliser z rides along as an extra all-ones
value column, so one linear_attention call yields numerator and denominator, and the decode state
(B, heads, features, head_dim + 1) holds both."""

import torch
import torch.nn as nn
import torch.nn.functional as F

from mixnas.kernels import linear_attention, linear_attention_step
from mixnas.search_space.primitives.common import chunked_flops
from mixnas.search_space.registry import ParamSpec, PrimitiveSpec, register


class LinearAttention(nn.Module):
    def __init__(self, d_model, heads=4, feature_map="elu1", feature_dim=16):
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model {d_model} is not divisible by heads {heads}")
        if feature_map not in ("elu1", "taylor"):
            raise ValueError(f"feature_map must be 'elu1' or 'taylor', got {feature_map!r}")
        self.d_model, self.heads, self.head_dim = d_model, heads, d_model // heads
        self.feature_map, self.feature_dim = feature_map, feature_dim
        self.features = feature_dim if feature_map == "elu1" else 1 + feature_dim + feature_dim**2
        self.qk_proj = nn.Linear(d_model, 2 * heads * feature_dim, bias=False)
        self.v_proj = nn.Linear(d_model, d_model, bias=False)
        self.o_proj = nn.Linear(d_model, d_model, bias=False)

    def _phi(self, x):
        if self.feature_map == "elu1":
            return F.elu(x) + 1.0
        x = x * self.feature_dim**-0.25  # so that phi(q).phi(k) = 1 + q.k/sqrt(F) + (q.k)^2/(2F)
        outer = (x[..., :, None] * x[..., None, :]).flatten(-2) * 0.5**0.5
        return torch.cat([torch.ones_like(x[..., :1]), x, outer], dim=-1)

    def _qkv(self, x):
        """phi(q), phi(k): (..., heads, features); v and a ones column: (..., heads, head_dim+1)."""
        shape = x.shape[:-1]
        q, k = self.qk_proj(x).view(*shape, 2, self.heads, self.feature_dim).unbind(-3)
        v = self.v_proj(x).view(*shape, self.heads, self.head_dim)
        v = torch.cat([v, torch.ones_like(v[..., :1])], dim=-1)
        return self._phi(q), self._phi(k), v

    def _out(self, o):
        o = o[..., :-1] / (o[..., -1:] + 1e-6)
        return self.o_proj(o.flatten(-2))

    def forward(self, x):
        q, k, v = self._qkv(x)
        return self._out(linear_attention(q, k, v, scale=1.0))

    def init_state(self, batch_size, device=None, dtype=None):
        shape = (batch_size, self.heads, self.features, self.head_dim + 1)
        return torch.zeros(shape, device=device, dtype=dtype)

    def step(self, x_t, state):
        q, k, v = self._qkv(x_t)
        o, new_state = linear_attention_step(q, k, v, state, scale=1.0)
        return self._out(o), new_state.to(state.dtype)

    def state_bytes(self, seq_len, bytes_per_element=2):
        return self.heads * self.features * (self.head_dim + 1) * bytes_per_element

    def flops_per_token(self, seq_len):
        proj = 2 * self.d_model * (2 * self.heads * self.feature_dim + 2 * self.d_model)
        return proj + chunked_flops(seq_len, self.heads, self.features, self.head_dim + 1)


register(
    PrimitiveSpec(
        name="linear_attention",
        role="token",
        family="linear",
        build=LinearAttention,
        params={
            "heads": ParamSpec("int", 4, low=1, high=256),
            "feature_map": ParamSpec("choice", "elu1", choices=("elu1", "taylor")),
            "feature_dim": ParamSpec(
                "int", 16, low=1, high=256, doc="q/k projection width per head before phi"
            ),
        },
        doc=__doc__,
    )
)

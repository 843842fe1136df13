"""Softmax attention: multi-head, grouped-query (kv_heads < heads) or multi-query (kv_heads=1),
optional RoPE, full causal or sliding-window (`window`). The decode state is the KV cache:
every past key and value for full attention, only the last `window` for sliding windows."""

import torch
import torch.nn as nn
import torch.nn.functional as F

from mixnas.kernels import attention
from mixnas.search_space.primitives.common import (
    apply_rope,
    attention_flops,
    rope_tables,
    rotate,
)
from mixnas.search_space.registry import ParamSpec, PrimitiveSpec, register


class Attention(nn.Module):
    def __init__(self, d_model, heads=4, kv_heads=None, rope=True, rope_base=10000.0, window=None):
        super().__init__()
        kv_heads = heads if kv_heads is None else kv_heads
        if d_model % heads:
            raise ValueError(f"d_model {d_model} is not divisible by heads {heads}")
        if heads % kv_heads:
            raise ValueError(f"heads {heads} is not a multiple of kv_heads {kv_heads}")
        self.d_model, self.heads, self.kv_heads = d_model, heads, kv_heads
        self.head_dim = d_model // heads
        if rope and self.head_dim % 2:
            raise ValueError(f"RoPE needs an even head_dim, got {self.head_dim}")
        self.use_rope, self.rope_base, self.window = rope, rope_base, window
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.kv_proj = nn.Linear(d_model, 2 * kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(d_model, d_model, bias=False)

    def _qkv(self, x, positions=None):
        """q (B, T, H, hd), k and v (B, T, Hkv, hd); RoPE at `positions` (T,), or at 0..T-1 from
        the cached tables when None."""
        B, T, _ = x.shape
        H, Hkv = self.heads, self.kv_heads
        if positions is None:  # one matmul for q, k and v, and one rotation for q and k
            weight = torch.cat([self.q_proj.weight, self.kv_proj.weight])
            qkv = F.linear(x, weight).view(B, T, H + 2 * Hkv, self.head_dim)
            qk, v = qkv[:, :, : H + Hkv], qkv[:, :, H + Hkv :]
            if self.use_rope:
                cos, sin = rope_tables(T, self.head_dim, self.rope_base, x.device)
                qk = rotate(qk, cos, sin)
            q, k = qk.split([H, Hkv], dim=2)
            return q, k, v
        q = self.q_proj(x).view(B, T, self.heads, self.head_dim)
        k, v = self.kv_proj(x).view(B, T, 2, self.kv_heads, self.head_dim).unbind(2)
        if self.use_rope:
            q = apply_rope(q, positions, self.rope_base)
            k = apply_rope(k, positions, self.rope_base)
        return q, k, v

    def forward(self, x):
        B, T, _ = x.shape
        q, k, v = self._qkv(x)
        o = attention(q, k, v, causal=True, window=self.window)
        return self.o_proj(o.reshape(B, T, self.d_model))

    def init_state(self, batch_size, device=None, dtype=None):
        empty = torch.zeros(batch_size, 0, self.kv_heads, self.head_dim, device=device, dtype=dtype)
        return {"k": empty, "v": empty.clone(), "pos": 0}

    def step(self, x_t, state):
        pos = torch.tensor([state["pos"]], device=x_t.device)
        q, k, v = self._qkv(x_t[:, None], pos)
        k = torch.cat([state["k"], k.to(state["k"].dtype)], dim=1)
        v = torch.cat([state["v"], v.to(state["v"].dtype)], dim=1)
        o = attention(q, k.to(q.dtype), v.to(q.dtype), causal=True, window=self.window)
        if self.window is not None:
            k, v = k[:, -self.window:], v[:, -self.window:]
        y = self.o_proj(o.reshape(x_t.shape[0], self.d_model))
        return y, {"k": k, "v": v, "pos": state["pos"] + 1}

    def state_bytes(self, seq_len, bytes_per_element=2):
        cached = seq_len if self.window is None else min(self.window, seq_len)
        return 2 * self.kv_heads * self.head_dim * cached * bytes_per_element

    def flops_per_token(self, seq_len):
        kv_dim = self.kv_heads * self.head_dim
        proj = 2 * self.d_model * (2 * self.d_model + 2 * kv_dim)
        scores = attention_flops(seq_len, self.heads, self.head_dim, self.head_dim, self.window)
        return proj + scores


def _normalize(params):
    params = dict(params)
    if params["kv_heads"] is None:
        params["kv_heads"] = params["heads"]
    if not params["rope"]:
        params["rope_base"] = 10000.0
    return params


register(
    PrimitiveSpec(
        name="attention",
        role="token",
        family="attention",
        build=Attention,
        params={
            "heads": ParamSpec("int", 4, low=1, high=256, doc="query heads"),
            "kv_heads": ParamSpec(
                "int", None, low=1, high=256, doc="key/value heads (GQA/MQA); None = heads"
            ),
            "rope": ParamSpec("bool", True, doc="rotary position embedding on q and k"),
            "rope_base": ParamSpec("float", 10000.0, low=1.0, high=1e7),
            "window": ParamSpec("int", None, low=1, doc="sliding window; None = full attention"),
        },
        normalize=_normalize,
        doc=__doc__,
    )
)

"""Multi-head latent attention (DeepSeek-V2 style): keys and values are up-projected from a shared
compressed latent of `kv_rank` channels, so the decode cache holds only that latent (plus one
shared `rope_dim`-wide rotary key when decoupled RoPE is on) instead of per-head keys and values.

Each head's query/key has head_dim = d_model / heads channels: head_dim - rope_dim position-free
ones from the latent and rope_dim rotary ones; values have head_dim channels."""

import torch
import torch.nn as nn

from mixnas.kernels import attention
from mixnas.search_space.primitives.common import RMSNorm, apply_rope, attention_flops
from mixnas.search_space.registry import ParamSpec, PrimitiveSpec, register


class MLA(nn.Module):
    def __init__(self, d_model, heads=4, kv_rank=32, rope_dim=8, rope_base=10000.0):
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model {d_model} is not divisible by heads {heads}")
        self.d_model, self.heads, self.head_dim = d_model, heads, d_model // heads
        if rope_dim % 2 or rope_dim >= self.head_dim:
            raise ValueError(
                f"rope_dim {rope_dim} must be even and below head_dim {self.head_dim}"
            )
        self.kv_rank, self.rope_dim, self.rope_base = kv_rank, rope_dim, rope_base
        self.nope_dim = self.head_dim - rope_dim
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.kv_down = nn.Linear(d_model, kv_rank + rope_dim, bias=False)
        self.kv_norm = RMSNorm(kv_rank)
        self.kv_up = nn.Linear(kv_rank, heads * (self.nope_dim + self.head_dim), bias=False)
        self.o_proj = nn.Linear(d_model, d_model, bias=False)

    def _latent(self, x, positions):
        """The cached quantities: normalised latent (B, T, kv_rank), rotary key (B, T, rope_dim)."""
        c, k_rope = self.kv_down(x).split([self.kv_rank, self.rope_dim], dim=-1)
        if self.rope_dim:
            k_rope = apply_rope(k_rope[:, :, None], positions, self.rope_base)[:, :, 0]
        return self.kv_norm(c), k_rope

    def _attend(self, x, positions, c, k_rope):
        B, Tq, _ = x.shape
        Tk = c.shape[1]
        q = self.q_proj(x).view(B, Tq, self.heads, self.head_dim)
        if self.rope_dim:
            q_nope, q_rope = q.split([self.nope_dim, self.rope_dim], dim=-1)
            q = torch.cat([q_nope, apply_rope(q_rope, positions, self.rope_base)], dim=-1)
        k_nope, v = self.kv_up(c).view(B, Tk, self.heads, -1).split(
            [self.nope_dim, self.head_dim], dim=-1
        )
        k_rope = k_rope[:, :, None].expand(B, Tk, self.heads, self.rope_dim)
        k = torch.cat([k_nope, k_rope], dim=-1)
        o = attention(q, k, v, causal=True)
        return self.o_proj(o.reshape(B, Tq, self.d_model))

    def forward(self, x):
        positions = torch.arange(x.shape[1], device=x.device)
        c, k_rope = self._latent(x, positions)
        return self._attend(x, positions, c, k_rope)

    def init_state(self, batch_size, device=None, dtype=None):
        return {
            "latent": torch.zeros(batch_size, 0, self.kv_rank, device=device, dtype=dtype),
            "k_rope": torch.zeros(batch_size, 0, self.rope_dim, device=device, dtype=dtype),
            "pos": 0,
        }

    def step(self, x_t, state):
        x = x_t[:, None]
        pos = torch.tensor([state["pos"]], device=x_t.device)
        c, k_rope = self._latent(x, pos)
        c = torch.cat([state["latent"], c.to(state["latent"].dtype)], dim=1)
        k_rope = torch.cat([state["k_rope"], k_rope.to(state["k_rope"].dtype)], dim=1)
        y = self._attend(x, pos, c.to(x.dtype), k_rope.to(x.dtype))[:, 0]
        return y, {"latent": c, "k_rope": k_rope, "pos": state["pos"] + 1}

    def state_bytes(self, seq_len, bytes_per_element=2):
        return (self.kv_rank + self.rope_dim) * seq_len * bytes_per_element

    def flops_per_token(self, seq_len):
        proj = 2 * self.d_model * (2 * self.d_model + self.kv_rank + self.rope_dim)
        up = 2 * self.kv_rank * self.heads * (self.nope_dim + self.head_dim)
        return proj + up + attention_flops(seq_len, self.heads, self.head_dim, self.head_dim)


register(
    PrimitiveSpec(
        name="mla",
        role="token",
        family="attention",
        build=MLA,
        params={
            "heads": ParamSpec("int", 4, low=1, high=256),
            "kv_rank": ParamSpec("int", 32, low=1, high=4096, doc="latent (cache) width"),
            "rope_dim": ParamSpec(
                "int", 8, low=0, high=256, doc="decoupled rotary key/query width; 0 = no RoPE"
            ),
            "rope_base": ParamSpec("float", 10000.0, low=1.0, high=1e7),
        },
        normalize=lambda p: {**p, "rope_base": 10000.0} if p["rope_dim"] == 0 else p,
        doc=__doc__,
    )
)

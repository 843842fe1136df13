"""Mixture of experts channel mixer: a linear router picks the top_k of `experts` feed-forward
experts per token (SwiGLU or gelu MLP, hidden round(expand * d_model)); the chosen experts' outputs
are summed with the router probabilities renormalised over the top_k. Routing has no capacity
limit, so no token is dropped and every token is routed on its own (the layer stays causal).

After each forward, `self.aux_loss` holds the Switch-Transformer load-balancing loss
experts * sum_e f_e P_e (f_e: share of routed slots sent to e, P_e: mean router probability of
e), 1 when perfectly balanced; the trainer adds it with its own weight."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from mixnas.kernels import swiglu
from mixnas.search_space.primitives.common import StatelessMixer
from mixnas.search_space.registry import ParamSpec, PrimitiveSpec, register


class MoE(StatelessMixer):
    def __init__(self, d_model, experts=4, top_k=2, expand=2.0, expert="swiglu"):
        super().__init__()
        if not 1 <= top_k <= experts:
            raise ValueError(f"top_k {top_k} must be between 1 and experts {experts}")
        if expert not in ("swiglu", "mlp"):
            raise ValueError(f"expert must be 'swiglu' or 'mlp', got {expert!r}")
        self.d_model, self.experts, self.top_k, self.expert = d_model, experts, top_k, expert
        self.hidden = max(1, round(expand * d_model))
        up = 2 * self.hidden if expert == "swiglu" else self.hidden
        self.router = nn.Linear(d_model, experts, bias=False)
        bound_in, bound_out = 1 / math.sqrt(d_model), 1 / math.sqrt(self.hidden)
        self.w_up = nn.Parameter(torch.empty(experts, d_model, up).uniform_(-bound_in, bound_in))
        self.w_down = nn.Parameter(
            torch.empty(experts, self.hidden, d_model).uniform_(-bound_out, bound_out)
        )
        self.aux_loss = None

    def _expert(self, e, x):
        h = x @ self.w_up[e]
        if self.expert == "swiglu":
            gate, up = h.chunk(2, dim=-1)
            h = swiglu(gate, up)
        else:
            h = F.gelu(h)
        return h @ self.w_down[e]

    def forward(self, x):
        flat = x.reshape(-1, self.d_model)
        probs = torch.softmax(self.router(flat).float(), dim=-1)
        weights, chosen = probs.topk(self.top_k, dim=-1)
        weights = (weights / weights.sum(-1, keepdim=True)).to(x.dtype)
        out = torch.zeros_like(flat)
        for e in range(self.experts):
            token, slot = torch.nonzero(chosen == e, as_tuple=True)
            if token.numel():
                y = self._expert(e, flat[token]) * weights[token, slot, None]
                out = out.index_add(0, token, y)
        routed = torch.bincount(chosen.flatten(), minlength=self.experts).float()
        self.aux_loss = self.experts * (routed / chosen.numel() * probs.mean(0)).sum()
        return out.view_as(x)

    def flops_per_token(self, seq_len):
        up = self.w_up.shape[-1]
        expert = 2 * self.d_model * up + 2 * self.hidden * self.d_model
        return 2 * self.d_model * self.experts + self.top_k * expert


register(
    PrimitiveSpec(
        name="moe",
        role="channel",
        family="moe",
        build=MoE,
        params={
            "experts": ParamSpec("int", 4, low=1, high=256),
            "top_k": ParamSpec("int", 2, low=1, high=256, doc="experts per token"),
            "expand": ParamSpec("float", 2.0, low=0.25, high=16.0, doc="expert hidden / d_model"),
            "expert": ParamSpec("choice", "swiglu", choices=("swiglu", "mlp")),
        },
        doc=__doc__,
    )
)

"""Parallel hybrid token mixer: two or more token mixers side by side in one layer (Hymba-style
heads split between mechanisms, e.g. attention next to an SSM).

combine="concat" splits the width: a shared input projection gives each of the n branches its own
d_model // n channels, each branch is built at that width (so its heads and state shrink with
it), and the concatenated outputs pass through an output projection. Cost and state are about
those of one full-width mixer. combine="mix": every branch is built at full width on the same
input, and the outputs are summed with learned per-branch, per-channel weights (initialised
1/n). Cost and state are the branches' sum. Branches may not themselves be parallel."""

import torch
import torch.nn as nn

from mixnas.search_space.architecture import Mixer
from mixnas.search_space.registry import ParamSpec, PrimitiveSpec, build_mixer, register


class Parallel(nn.Module):
    def __init__(self, d_model, branches, combine="concat"):
        super().__init__()
        n = len(branches)
        self.d_model, self.combine = d_model, combine
        self.width = self.branch_width(d_model, n, combine)
        self.branches = nn.ModuleList(branches)
        if combine == "concat":
            self.in_proj = nn.Linear(d_model, n * self.width, bias=False)
            self.out_proj = nn.Linear(n * self.width, d_model, bias=False)
        else:
            self.mix = nn.Parameter(torch.full((n, d_model), 1.0 / n))

    @staticmethod
    def branch_width(d_model, n, combine):
        if combine not in ("concat", "mix"):
            raise ValueError(f"combine must be 'concat' or 'mix', got {combine!r}")
        return d_model // n if combine == "concat" else d_model

    def _inputs(self, x):
        if self.combine == "concat":
            return self.in_proj(x).split(self.width, dim=-1)
        return [x] * len(self.branches)

    def _combine(self, outs):
        if self.combine == "concat":
            return self.out_proj(torch.cat(outs, dim=-1))
        return sum(w * y for w, y in zip(self.mix, outs))

    def forward(self, x):
        return self._combine([b(u) for b, u in zip(self.branches, self._inputs(x))])

    def init_state(self, batch_size, device=None, dtype=None):
        return [b.init_state(batch_size, device, dtype) for b in self.branches]

    def step(self, x_t, state):
        outs, new_state = [], []
        for branch, u, s in zip(self.branches, self._inputs(x_t), state):
            y, s = branch.step(u, s)
            outs.append(y)
            new_state.append(s)
        return self._combine(outs), new_state

    def state_bytes(self, seq_len, bytes_per_element=2):
        return sum(b.state_bytes(seq_len, bytes_per_element) for b in self.branches)

    def flops_per_token(self, seq_len):
        inner = sum(b.flops_per_token(seq_len) for b in self.branches)
        if self.combine == "concat":
            return inner + 4 * self.d_model * len(self.branches) * self.width
        return inner


def build_parallel(d_model, branches, combine="concat"):
    """Build each branch (a token-mixer dict) at its share of the width, then the combiner."""
    width = Parallel.branch_width(d_model, len(branches), combine)
    if width < 1:
        raise ValueError(f"d_model {d_model} is too narrow for {len(branches)} branches")
    modules = []
    for i, branch in enumerate(branches):
        mixer = Mixer.from_dict(branch)
        if mixer.type == "parallel":
            raise ValueError(f"branch {i}: a parallel branch cannot itself be parallel")
        modules.append(build_mixer(mixer, "token", width, where=f"branch {i}: "))
    return Parallel(d_model, modules, combine)


register(
    PrimitiveSpec(
        name="parallel",
        role="token",
        family="parallel",
        build=build_parallel,
        params={
            "branches": ParamSpec("mixers", (), doc="token-mixer dicts, at least 2"),
            "combine": ParamSpec("choice", "concat", choices=("concat", "mix")),
        },
        doc=__doc__,
    )
)

"""Gated short convolution (BaseConv, Arora et al. 2023): y = W_o ((W_g x) * conv(W_u x)) with a
depthwise causal convolution of `conv_size` taps. Cheap local mixing; decode state is the conv
cache (B, d_model, conv_size - 1)."""

import torch.nn as nn

from mixnas.search_space.primitives.common import ShortConv
from mixnas.search_space.registry import ParamSpec, PrimitiveSpec, register


class ShortConvMixer(nn.Module):
    def __init__(self, d_model, conv_size=4):
        super().__init__()
        self.d_model = d_model
        self.in_proj = nn.Linear(d_model, 2 * d_model, bias=False)
        self.conv = ShortConv(d_model, conv_size, activation=None)
        self.o_proj = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x):
        u, g = self.in_proj(x).chunk(2, dim=-1)
        return self.o_proj(g * self.conv(u))

    def init_state(self, batch_size, device=None, dtype=None):
        return self.conv.init_state(batch_size, device, dtype)

    def step(self, x_t, state):
        u, g = self.in_proj(x_t).chunk(2, dim=-1)
        u, state = self.conv.step(u, state)
        return self.o_proj(g * u), state

    def state_bytes(self, seq_len, bytes_per_element=2):
        return self.conv.state_numel() * bytes_per_element

    def flops_per_token(self, seq_len):
        return 2 * self.d_model * 3 * self.d_model + 2 * self.conv.weight.numel()


register(
    PrimitiveSpec(
        name="short_conv",
        role="token",
        family="conv",
        build=ShortConvMixer,
        params={"conv_size": ParamSpec("int", 4, low=2, high=64)},
        doc=__doc__,
    )
)

"""Hyena operator (Poli et al. 2023), order N: project to N gates x_0..x_{N-1} and a value v, pass
all through a short causal convolution, then z = v; for i = N-1..1: z = h_i * (x_i z) + bias_i
(x_i z); y = x_0 z. Each long filter h_i is implicit: a sine-activated MLP of positional features
(sin/cos of t at geometric frequencies, so a filter tap depends only on its lag t, never on the
sequence length) times an exponential decay window. Training convolves by FFT in O(T log T).

Decoding has no fixed-size state: the true state of a long convolution is every input it has
seen, so the decode state holds the short-conv cache plus a growing (B, t, d_model) cache per
long filter."""

import math

import torch
import torch.nn as nn

from mixnas.search_space.primitives.common import ShortConv
from mixnas.search_space.registry import ParamSpec, PrimitiveSpec, register


class Sin(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.freq = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return torch.sin(self.freq * x)


class HyenaFilter(nn.Module):
    """Implicit long filters: (taps 0..T-1) -> (T, channels); decays from 1 to 1e-2 over lengths
    spread geometrically between 8 and 512 taps across channels."""

    def __init__(self, channels, bands=4, hidden=32):
        super().__init__()
        self.register_buffer(
            "freqs", 1.0 / (10000.0 ** (torch.arange(bands) / bands)), persistent=False
        )
        rates = math.log(100.0) / torch.logspace(math.log10(8), math.log10(512), channels)
        self.register_buffer("decay", rates, persistent=False)
        self.mlp = nn.Sequential(
            nn.Linear(1 + 2 * bands, hidden), Sin(hidden),
            nn.Linear(hidden, hidden), Sin(hidden),
            nn.Linear(hidden, channels, bias=False),
        )

    def forward(self, length):
        t = torch.arange(length, device=self.freqs.device, dtype=self.freqs.dtype)[:, None]
        angles = t * self.freqs
        features = torch.cat([torch.ones_like(t), angles.sin(), angles.cos()], dim=-1)
        return self.mlp(features) * torch.exp(-t * self.decay)


def fft_causal_conv(u, h):
    """y[:, t] = sum_{s <= t} h[t - s] u[:, s] per channel; u: (B, T, C), h: (T, C)."""
    T = u.shape[1]
    n = 2 * T
    spectrum = torch.fft.rfft(u.float(), n=n, dim=1) * torch.fft.rfft(h.float(), n=n, dim=0)
    y = torch.fft.irfft(spectrum, n=n, dim=1)
    return y[:, :T].to(u.dtype)


class Hyena(nn.Module):
    def __init__(self, d_model, order=2, filter_bands=4, filter_hidden=32, conv_size=3):
        super().__init__()
        self.d_model, self.order = d_model, order
        self.filter_bands, self.filter_hidden = filter_bands, filter_hidden
        self.in_proj = nn.Linear(d_model, (order + 1) * d_model, bias=False)
        self.conv = ShortConv((order + 1) * d_model, conv_size, activation=None)
        self.filter = HyenaFilter((order - 1) * d_model, filter_bands, filter_hidden)
        self.bias = nn.Parameter(torch.randn((order - 1) * d_model))
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x):
        *gates, z = self.conv(self.in_proj(x)).chunk(self.order + 1, dim=-1)
        h = self.filter(x.shape[1]).chunk(self.order - 1, dim=-1)
        bias = self.bias.chunk(self.order - 1)
        for i in range(self.order - 1, 0, -1):
            u = gates[i] * z
            z = fft_causal_conv(u, h[i - 1]) + bias[i - 1] * u
        return self.out_proj(gates[0] * z)

    def init_state(self, batch_size, device=None, dtype=None):
        empty = torch.zeros(batch_size, 0, self.d_model, device=device, dtype=dtype)
        return {
            "conv": self.conv.init_state(batch_size, device, dtype),
            "inputs": [empty.clone() for _ in range(self.order - 1)],
        }

    def step(self, x_t, state):
        proj, conv = self.conv.step(self.in_proj(x_t), state["conv"])
        *gates, z = proj.chunk(self.order + 1, dim=-1)
        t = state["inputs"][0].shape[1] + 1
        h = self.filter(t).flip(0).chunk(self.order - 1, dim=-1)  # taps t-1..0 for inputs 0..t-1
        bias = self.bias.chunk(self.order - 1)
        inputs = list(state["inputs"])
        for i in range(self.order - 1, 0, -1):
            u = gates[i] * z
            inputs[i - 1] = torch.cat([inputs[i - 1], u[:, None].to(inputs[i - 1].dtype)], dim=1)
            z = (inputs[i - 1].to(u.dtype) * h[i - 1]).sum(1) + bias[i - 1] * u
        return self.out_proj(gates[0] * z), {"conv": conv, "inputs": inputs}

    def state_bytes(self, seq_len, bytes_per_element=2):
        numel = self.conv.state_numel() + (self.order - 1) * self.d_model * seq_len
        return numel * bytes_per_element

    def flops_per_token(self, seq_len):
        """Projections, short conv, the filter MLP (evaluated at seq_len taps once per sequence:
        one tap per token) and the FFT convolutions, per channel 3 real FFTs of length n = 2T
        (~2.5 n log2 n FLOPs each) plus the complex product, spread over the T tokens."""
        d, hidden = self.d_model, self.filter_hidden
        proj = 2 * d * (self.order + 1) * d + 2 * d * d + 2 * self.conv.weight.numel()
        channels = (self.order - 1) * d
        mlp = 2 * ((1 + 2 * self.filter_bands) * hidden + hidden * hidden + hidden * channels)
        n = 2 * seq_len
        fft = channels * (3 * 2.5 * n * math.log2(n) + 6 * (n // 2 + 1)) / seq_len
        return proj + mlp + fft


register(
    PrimitiveSpec(
        name="hyena",
        role="token",
        family="conv",
        build=Hyena,
        params={
            "order": ParamSpec("int", 2, low=2, high=4, doc="gates; order - 1 long convolutions"),
            "filter_bands": ParamSpec("int", 4, low=1, high=64, doc="sin/cos positional bands"),
            "filter_hidden": ParamSpec("int", 32, low=4, high=512),
            "conv_size": ParamSpec("int", 3, low=2, high=16, doc="short conv on the projections"),
        },
        doc=__doc__,
    )
)

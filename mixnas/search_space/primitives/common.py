"""Small building blocks shared by several primitives: norms, rotary embeddings, short convolutions.

Like every primitive module this file is self-contained (torch, math and `mixnas.kernels` ops by
name only), because export copies these classes' source into standalone model files.
"""

import functools
import math

import torch
import torch.nn as nn

from mixnas.kernels import causal_conv1d, causal_conv1d_step, rms_norm


class RMSNorm(nn.Module):
    """Root-mean-square norm over the last dim with a learned gain."""

    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return rms_norm(x, self.weight, self.eps)


def make_norm(kind, dim):
    """'rms' -> RMSNorm, 'layer' -> LayerNorm."""
    if kind == "rms":
        return RMSNorm(dim)
    if kind == "layer":
        return nn.LayerNorm(dim)
    raise ValueError(f"norm must be 'rms' or 'layer', got {kind!r}")


def apply_rope(x, positions, base=10000.0):
    """Rotary position embedding (rotate-half form) of x (B, T, H, D) at integer positions (T,)."""
    half = x.shape[-1] // 2
    inv_freq = base ** (-torch.arange(half, device=x.device, dtype=torch.float32) / half)
    angles = positions.to(torch.float32)[:, None] * inv_freq[None, :]  # (T, half)
    return rotate(x, angles.cos()[None, :, None, :], angles.sin()[None, :, None, :])


@functools.lru_cache(maxsize=64)
def rope_tables(seq_len, dim, base, device):
    """cos and sin (1, seq_len, 1, dim // 2) of `apply_rope` at positions 0..seq_len-1, cached:
    a training step would otherwise recompute the same tables for q and k of every layer. Built
    outside inference mode, so that tables first made while decoding still serve training."""
    with torch.inference_mode(False), torch.no_grad():
        half = dim // 2
        inv_freq = base ** (-torch.arange(half, device=device, dtype=torch.float32) / half)
        angles = torch.arange(seq_len, device=device, dtype=torch.float32)[:, None] * inv_freq
        return angles.cos()[None, :, None, :], angles.sin()[None, :, None, :]


def rotate(x, cos, sin):
    """x (B, T, H, D) rotated by angle tables cos, sin (1, T, 1, D // 2), in float32."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half].float(), x[..., half:].float()
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).to(x.dtype)


class ShortConv(nn.Module):
    """Depthwise causal convolution over `channels` with kernel `kernel_size`; its decode state is
    the last kernel_size - 1 inputs, shape (B, channels, kernel_size - 1)."""

    def __init__(self, channels, kernel_size, activation="silu"):
        super().__init__()
        self.kernel_size = kernel_size
        self.activation = activation
        bound = 1.0 / math.sqrt(kernel_size)
        self.weight = nn.Parameter(torch.empty(channels, kernel_size).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        return causal_conv1d(x, self.weight, self.bias, self.activation)

    def init_state(self, batch_size, device=None, dtype=None):
        return torch.zeros(
            batch_size, self.weight.shape[0], self.kernel_size - 1, device=device, dtype=dtype
        )

    def step(self, x_t, state):
        return causal_conv1d_step(x_t, state, self.weight, self.bias, self.activation)

    def state_numel(self):
        return self.weight.shape[0] * (self.kernel_size - 1)


class StatelessMixer(nn.Module):
    """Base of channel mixers: each token is mixed on its own, so decoding needs no state."""

    def init_state(self, batch_size, device=None, dtype=None):
        return None

    def step(self, x_t, state):
        return self(x_t[:, None])[:, 0], state

    def state_bytes(self, seq_len, bytes_per_element=2):
        return 0


def attention_flops(seq_len, heads, qk_dim, v_dim, window=None):
    """Forward FLOPs per token of causal attention scores and weighted sum: each query attends
    min(t, window) keys, averaged over positions t = 1..seq_len."""
    w = seq_len if window is None else min(window, seq_len)
    mean_keys = (w * (w + 1) / 2 + (seq_len - w) * w) / seq_len
    return 2 * heads * (qk_dim + v_dim) * mean_keys


def chunked_flops(seq_len, heads, dk, dv, chunk=64, delta=False):
    """Forward FLOPs per token of chunked linear attention (the training form): causal scores and
    weighted sum within a chunk (attention over min(chunk, seq_len) tokens, causal average) plus
    reading and updating the (dk, dv) state once per token. The delta rule doubles the intra-chunk
    work (K K^T and the triangular solve of the WY form) and reads the state once more."""
    c = min(chunk, seq_len)
    intra = (dk + dv) * (c + 1)
    state = 4 * dk * dv
    if delta:
        intra, state = 2 * intra, state + 2 * dk * dv
    return heads * (intra + state)

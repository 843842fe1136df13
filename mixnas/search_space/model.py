"""The language model around the mixers: token embedding, pre-norm residual blocks, final norm and
LM head (tied to the embedding or not).

`MixnasModel` is built from plain constructor arguments and already-built mixer modules, so that
export can write an equivalent standalone class whose state_dict keys match exactly:
embed.weight, blocks.{i}.norm1.*, blocks.{i}.token_mixer.*, blocks.{i}.norm2.* and
blocks.{i}.channel_mixer.* (absent for channel mixer `none`), norm.*, lm_head.weight (untied only).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from mixnas.search_space.architecture import Architecture
from mixnas.search_space.primitives.common import make_norm
from mixnas.search_space.registry import build_mixer


class Block(nn.Module):
    """x + token_mixer(norm1(x)), then x + channel_mixer(norm2(x)) unless channel_mixer is None."""

    def __init__(self, d_model, token_mixer, channel_mixer=None, norm="rms"):
        super().__init__()
        self.norm1 = make_norm(norm, d_model)
        self.token_mixer = token_mixer
        self.norm2 = make_norm(norm, d_model) if channel_mixer is not None else None
        self.channel_mixer = channel_mixer

    def forward(self, x):
        x = x + self.token_mixer(self.norm1(x))
        if self.channel_mixer is not None:
            x = x + self.channel_mixer(self.norm2(x))
        return x

    def step(self, x_t, state):
        y, state = self.token_mixer.step(self.norm1(x_t), state)
        x_t = x_t + y
        if self.channel_mixer is not None:
            x_t = x_t + self.channel_mixer.step(self.norm2(x_t), None)[0]
        return x_t, state


class MixnasModel(nn.Module):
    def __init__(self, d_model, vocab_size, layers, norm="rms", tie_embeddings=True):
        """layers: a list of (token_mixer module, channel_mixer module or None) pairs."""
        super().__init__()
        self.d_model, self.vocab_size, self.tie_embeddings = d_model, vocab_size, tie_embeddings
        self.embed = nn.Embedding(vocab_size, d_model)
        # An untied input embedding keeps unit scale so that the token's identity is not swamped
        # by the residual branches (at std 0.02 a 2-layer attention model cannot learn MQAR); a
        # tied one doubles as the output projection and stays small so initial logits are flat.
        nn.init.normal_(self.embed.weight, std=0.02 if tie_embeddings else 1.0)
        self.blocks = nn.ModuleList(Block(d_model, t, c, norm) for t, c in layers)
        self.norm = make_norm(norm, d_model)
        self.lm_head = None if tie_embeddings else nn.Linear(d_model, vocab_size, bias=False)

    def _logits(self, h):
        h = self.norm(h)
        return F.linear(h, self.embed.weight) if self.lm_head is None else self.lm_head(h)

    def forward(self, tokens):
        h = self.embed(tokens)
        for block in self.blocks:
            h = block(h)
        return self._logits(h)

    def aux_loss(self):
        """Sum of the auxiliary (MoE load-balancing) losses of the last forward; 0 if none."""
        losses = [
            m.aux_loss for m in self.modules()
            if m is not self and isinstance(getattr(m, "aux_loss", None), torch.Tensor)
        ]
        return torch.stack(losses).sum() if losses else self.embed.weight.new_zeros(())

    def init_state(self, batch_size, device=None, dtype=None):
        device = self.embed.weight.device if device is None else device
        dtype = self.embed.weight.dtype if dtype is None else dtype
        return [b.token_mixer.init_state(batch_size, device, dtype) for b in self.blocks]

    def step(self, tokens, state):
        """One decode step: tokens (B,) -> logits (B, V) and the new per-layer state list."""
        h = self.embed(tokens)
        new_state = []
        for block, s in zip(self.blocks, state):
            h, s = block.step(h, s)
            new_state.append(s)
        return self._logits(h), new_state

    def state_bytes(self, seq_len, bytes_per_element=2):
        """Decode state (KV caches, recurrent and conv states) for one sequence of seq_len."""
        return sum(b.token_mixer.state_bytes(seq_len, bytes_per_element) for b in self.blocks)

    def num_params(self, non_embedding=True):
        """Parameter count; non_embedding leaves out the token embedding and an untied LM head."""
        total = sum(p.numel() for p in self.parameters())
        if non_embedding:
            total -= self.embed.weight.numel()
            if self.lm_head is not None:
                total -= self.lm_head.weight.numel()
        return total

    def flops_per_token(self, seq_len):
        """Analytic forward FLOPs per token at context seq_len (norms, elementwise ops left out)."""
        total = 2 * self.d_model * self.vocab_size
        for block in self.blocks:
            total += block.token_mixer.flops_per_token(seq_len)
            if block.channel_mixer is not None:
                total += block.channel_mixer.flops_per_token(seq_len)
        return total


def build_model(arch: Architecture, vocab_size: int) -> MixnasModel:
    """Build the network an architecture describes; bad parameters raise a one-line ValueError
    naming the layer and field."""
    if arch.norm not in ("rms", "layer"):
        raise ValueError(f"architecture norm must be 'rms' or 'layer', got {arch.norm!r}")
    if arch.d_model < 1 or vocab_size < 1:
        raise ValueError(f"d_model {arch.d_model} and vocab_size {vocab_size} must be positive")
    if not arch.layers:
        raise ValueError("architecture has no layers")
    layers = []
    for i, layer in enumerate(arch.layers):
        token = build_mixer(layer.token_mixer, "token", arch.d_model, f"layer {i} token_mixer: ")
        channel = build_mixer(
            layer.channel_mixer, "channel", arch.d_model, f"layer {i} channel_mixer: "
        )
        layers.append((token, channel))
    return MixnasModel(arch.d_model, vocab_size, layers, arch.norm, arch.tie_embeddings)


def state_dict_bytes(state_dict) -> bytes:
    """Weights as safetensors bytes. Each tensor gets its own CPU copy, because safetensors
    refuses tensors that share memory (tied embeddings)."""
    from safetensors.torch import save

    items = sorted(state_dict.items())
    return save({k: v.detach().to("cpu").clone().contiguous() for k, v in items})

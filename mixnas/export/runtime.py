"""The architecture-independent part of an exported model.py: config, builder, decoding, loading.

This is real code (linted, and `generate` works on mixnas's own models too) that export copies
into every generated file next to the primitives the architecture uses. The generated file
defines `PRIMITIVES` for its own primitives and `CONFIG` for its own architecture.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import torch

from mixnas.search_space.model import MixnasModel

# Each generated file defines its own: primitive name -> module class (None: no sublayer), and
# the Config of the architecture it was exported for.
PRIMITIVES: dict[str, Any] = {}
CONFIG: Config | None = None


@dataclass
class Config:
    """The architecture as data (mixnas's canonical form) plus the task's vocabulary size; this is
    what config.json holds."""

    vocab_size: int
    d_model: int
    layers: list  # [{"token_mixer": {"type": str, "params": {...}}, "channel_mixer": {...}}]
    norm: str = "rms"
    tie_embeddings: bool = True
    name: str | None = None


def build_mixer(mixer, d_model):
    """Build one token or channel mixer from its {"type", "params"} dict at width d_model."""
    cls = PRIMITIVES[mixer["type"]]
    if cls is None:
        return None
    params = dict(mixer["params"])
    if "branches" in params:  # a parallel mixer: each branch is built at its share of the width
        width = cls.branch_width(d_model, len(params["branches"]), params["combine"])
        params["branches"] = [build_mixer(branch, width) for branch in params["branches"]]
    return cls(d_model, **params)


def build(config):
    """The model a Config describes, randomly initialised."""
    layers = [
        (build_mixer(layer["token_mixer"], config.d_model),
         build_mixer(layer["channel_mixer"], config.d_model))
        for layer in config.layers
    ]
    return MixnasModel(
        config.d_model, config.vocab_size, layers, config.norm, config.tie_embeddings
    )


def load(directory=None, device="cpu"):
    """Build the model from `directory`/config.json (default: this file's directory; without a
    config.json, this file's own CONFIG) and load `directory`/model.safetensors when it is there.
    Returns the model in eval mode."""
    if directory is None:
        directory = os.path.dirname(os.path.abspath(__file__))
    config = CONFIG
    path = os.path.join(directory, "config.json")
    if os.path.exists(path):
        with open(path) as f:
            config = Config(**json.load(f))
    model = build(config)
    weights = os.path.join(directory, "model.safetensors")
    if os.path.exists(weights):
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ImportError(
                f"reading {weights} needs the safetensors package: pip install safetensors"
            ) from None
        model.load_state_dict(load_file(weights))
    return model.to(device).eval()


@torch.no_grad()
def generate(model, prompt_tokens, max_new_tokens, temperature=0.0, top_k=None, generator=None):
    """Continue `prompt_tokens` ((T,) or (B, T) token ids) by `max_new_tokens` tokens, one token at
    a time through the layers' recurrent / KV-cache state. temperature 0 picks the most likely
    token; otherwise tokens are sampled (from the `top_k` most likely when given)."""
    device = next(model.parameters()).device
    tokens = torch.as_tensor(prompt_tokens, dtype=torch.long, device=device)
    single = tokens.dim() == 1
    tokens = tokens[None] if single else tokens
    if tokens.shape[1] == 0:
        raise ValueError("generate needs at least one prompt token")
    state = model.init_state(tokens.shape[0])
    for t in range(tokens.shape[1]):
        logits, state = model.step(tokens[:, t], state)
    out = [tokens]
    for i in range(max_new_tokens):
        next_token = _pick(logits, temperature, top_k, generator)
        out.append(next_token[:, None])
        if i + 1 < max_new_tokens:
            logits, state = model.step(next_token, state)
    tokens = torch.cat(out, dim=1)
    return tokens[0] if single else tokens


def _pick(logits, temperature, top_k, generator):
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k is not None:
        kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]

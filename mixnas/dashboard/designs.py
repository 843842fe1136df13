"""What a design is, read from its architecture JSON without torch: width, depth, layer order and
the composition facts ("share of attention layers", "recurrent family", "placement of the
attention layers") that the insight views and the report plot objectives against.

`mixnas.search_space.features` computes richer features from the primitive registry, but
importing the search space loads torch, which the dashboard never does; the family rules here
match the dashboard's colours (static/common.js, FAMILY_RULES) by primitive name instead.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from functools import lru_cache
from typing import NamedTuple

# Primitive name -> family, first match wins (as FAMILY_RULES in static/common.js).
FAMILY_RULES = [
    (r"parallel", "parallel"), (r"^none$|identity", "none"), (r"delta", "delta"),
    (r"mamba|ssm|^s4|^s5|lru|griffin", "ssm"), (r"hyena|conv", "conv"),
    (r"linear|retention|retnet|gla|rwkv|based", "linear"),
    (r"attention|attn|mha|gqa|mqa|mla", "attention"),
    (r"moe|expert", "moe"), (r"glu", "glu"), (r"mlp|ffn", "mlp"),
]
PLACEMENTS = ("no attention", "first", "middle", "last", "interleaved", "all attention")


@lru_cache(maxsize=1024)
def family(mixer_type: str) -> str:
    """The family of a primitive by its name ('gated_deltanet' -> 'delta'); 'other' if none."""
    for pattern, name in FAMILY_RULES:
        if re.search(pattern, mixer_type):
            return name
    return "other"


class Design(NamedTuple):
    """One architecture, summarised for hover texts, tables and composition plots."""

    d_model: int
    depth: int
    order: tuple[str, ...]  # token mixer per layer ('parallel(attention+mamba2)')
    attention_share: float  # share of token mixers that are attention (parallel branches split)
    recurrent_family: str  # the most common non-attention token family, or 'none'
    placement: str  # one of PLACEMENTS: where the (global) attention layers sit

    @property
    def shape(self) -> str:
        """'d_model 128 · 4 layers: attention › mamba2 › attention › mamba2'."""
        return f"d_model {self.d_model} · {self.depth} layers: " + " › ".join(self.order)


def _token_types(mixer: dict) -> list[str]:
    if mixer["type"] == "parallel":
        return [b["type"] for b in mixer["params"]["branches"]]
    return [mixer["type"]]


@lru_cache(maxsize=65536)
def token_layers(arch_json: str | None) -> tuple[int, list[list[str]]] | None:
    """(d_model, token mixer types per layer) of an architecture's canonical JSON, parsed once
    for every view; None without one or if unreadable (one bad row must not break a page)."""
    if not arch_json:
        return None
    try:
        arch = json.loads(arch_json)
        layers = [_token_types(layer["token_mixer"]) for layer in arch["layers"]]
        return int(arch["d_model"]), layers
    except (ValueError, KeyError, TypeError):
        return None


@lru_cache(maxsize=65536)
def mix_label(arch_json: str | None) -> str:
    """'attention×1 gated_deltanet×3': the token mixers of an architecture, counted like
    `Architecture.mixer_counts` (parallel branches separately)."""
    if not arch_json:
        return ""
    parsed = token_layers(arch_json)
    if parsed is None:
        return "(unreadable architecture)"
    counts = Counter(t for types in parsed[1] for t in types)
    return " ".join(f"{name}×{n}" for name, n in sorted(counts.items()))


@lru_cache(maxsize=65536)
def describe(arch_json: str | None) -> Design | None:
    """The `Design` of an architecture's canonical JSON; None without one or if unreadable."""
    parsed = token_layers(arch_json)
    if parsed is None:
        return None
    d_model, layers = parsed
    order = tuple(t[0] if len(t) == 1 else f"parallel({'+'.join(t)})" for t in layers)
    weights: Counter[str] = Counter()
    for types in layers:
        for t in types:
            weights[family(t)] += 1 / len(types)
    depth = len(layers)
    attention = weights.get("attention", 0.0)
    others = [(w, f) for f, w in weights.items() if f not in ("attention", "none")]
    recurrent = max(others)[1] if others else "none"
    positions = [i for i, types in enumerate(layers) if "attention" in map(family, types)]
    return Design(d_model, depth, order, round(attention / depth, 6) if depth else 0.0,
                  recurrent, _placement(positions, depth))


def _placement(positions: list[int], depth: int) -> str:
    """Where the attention layers sit: a contiguous block at the start, middle or end, spread
    out ('interleaved'), or none/all."""
    if not positions:
        return "no attention"
    if len(positions) == depth:
        return "all attention"
    if positions[-1] - positions[0] + 1 != len(positions):
        return "interleaved"
    if positions[0] == 0:
        return "first"
    return "last" if positions[-1] == depth - 1 else "middle"

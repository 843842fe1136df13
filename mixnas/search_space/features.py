"""Architecture features: a fixed-length description of a design that a regression model can learn.

A surrogate that predicts how a design will score needs numbers, not nested mixers. The features
here depend on the architecture alone, never on the grammar that derived it, so designs from
studies over different grammars land in one feature space (what warm starts learn across):

- size: width, depth, log non-embedding parameters and log decode-state bytes (from the model
  built on the meta device, as the constraint check does: milliseconds, no memory);
- composition: count and share of layers per mixer family of the registry (attention, linear,
  ssm, delta, conv, mlp, glu, moe, none, parallel), windowed attention apart from global;
- placement: where the global-attention layers sit (first, last, mean position as a fraction of
  depth, share in each half) and how often a recurrent/convolutional layer feeds an attention
  layer (the hybrid pattern behind recall on MQAR-like tasks).

`decision_features` adds the grammar decisions themselves (one-hot choices, numeric values) for
designs that have them; `FeatureTable` turns rows of named features into one matrix with a fixed
column order, missing features reading 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from mixnas.search_space.architecture import Architecture, Mixer
from mixnas.search_space.constraints import Footprint, footprint
from mixnas.search_space.registry import REGISTRY, load_builtin_primitives

DEFAULT_CONTEXT = 2048  # the profiler's default context length for decode state


def families() -> dict[str, list[str]]:
    """role ('token' | 'channel') -> the registry's families for that role, sorted."""
    load_builtin_primitives()
    out: dict[str, set[str]] = {"token": set(), "channel": set()}
    for spec in REGISTRY.values():
        out[spec.role].add(spec.family)
    out["token"].add("attention_window")
    return {role: sorted(names) for role, names in out.items()}


def _family(mixer: Mixer, role: str) -> str:
    family = REGISTRY[mixer.type].family
    if family == "attention" and mixer.params.get("window"):
        return "attention_window"
    return family


def _token_families(arch: Architecture) -> list[list[str]]:
    """Per layer, the token-mixer families in it (a parallel layer lists its branches', each
    counting as a fraction of the layer)."""
    out = []
    for layer in arch.layers:
        mixer = layer.token_mixer
        if mixer.type == "parallel":
            branches = [Mixer.from_dict(b) for b in mixer.params.get("branches", [])]
            out.append([_family(b, "token") for b in branches])
        else:
            out.append([_family(mixer, "token")])
    return out


def architecture_features(arch: Architecture,
                          context_length: int = DEFAULT_CONTEXT) -> dict[str, float]:
    """The grammar-independent features of `arch` (see the module docstring).

    Args:
        arch: the design.
        context_length: the context at which decode-state bytes are counted.

    Returns:
        Feature name -> value; every architecture has the same names.

    Raises:
        ValueError: the architecture does not build.
    """
    return dict(_cached_features(arch.canonical_json(), context_length))


def footprint_cached(arch: Architecture, context_length: int) -> Footprint:
    """`constraints.footprint` of `arch`, remembered (screening meets the same designs often)."""
    return _footprint(arch.canonical_json(), context_length)


@lru_cache(maxsize=4096)
def _footprint(canonical: str, context_length: int) -> Footprint:
    return footprint(Architecture.from_json(canonical), context_length)


@lru_cache(maxsize=4096)
def _cached_features(canonical: str, context_length: int) -> tuple[tuple[str, float], ...]:
    arch = Architecture.from_json(canonical)
    size = _footprint(canonical, context_length)
    depth = len(arch.layers)
    names = families()
    feats: dict[str, float] = {
        "d_model": float(arch.d_model),
        "depth": float(depth),
        "log_params": math.log10(max(size.non_embedding_params, 1)),
        "log_state_bytes": math.log10(max(size.state_bytes or 0, 1)),
    }
    token = _token_families(arch)
    channel = [_family(layer.channel_mixer, "channel") for layer in arch.layers]
    parallel = sum(layer.token_mixer.type == "parallel" for layer in arch.layers)
    for family in names["token"]:
        count = sum(fams.count(family) / len(fams) for fams in token)
        count = float(parallel) if family == "parallel" else count
        feats[f"token.{family}.count"] = count
        feats[f"token.{family}.share"] = count / depth
    for family in names["channel"]:
        count = channel.count(family)
        feats[f"channel.{family}.count"] = float(count)
        feats[f"channel.{family}.share"] = count / depth
    feats.update(_placement(token))
    return tuple(sorted(feats.items()))


def _placement(token: Sequence[Sequence[str]]) -> dict[str, float]:
    depth = len(token)
    span = max(depth - 1, 1)
    attention = [i for i, fams in enumerate(token) if "attention" in fams]
    mixing = {"ssm", "conv", "delta", "linear"}
    feeds = sum(
        1 for i in range(1, depth)
        if "attention" in token[i] and mixing & set(token[i - 1])
    )
    half = depth / 2
    return {
        "attention.first": attention[0] / span if attention else -1.0,
        "attention.last": attention[-1] / span if attention else -1.0,
        "attention.mean": sum(attention) / len(attention) / span if attention else -1.0,
        "attention.early_share": sum(i < half for i in attention) / depth,
        "attention.late_share": sum(i >= half for i in attention) / depth,
        "attention.fed_by_mixing": float(feeds),
    }


def decision_features(decisions: Mapping[str, Any]) -> dict[str, float]:
    """The grammar decisions as features: `name=value` -> 1 for choices, `name` -> the number."""
    out = {}
    for name, value in decisions.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[f"decision.{name}"] = float(value)
        else:
            out[f"decision.{name}={value}"] = 1.0
    return out


class FeatureTable:
    """A fixed column order over named features, learned from the rows a model is fitted on."""

    def __init__(self, rows: Sequence[Mapping[str, float]]):
        names: dict[str, None] = {}
        for row in rows:
            names.update(dict.fromkeys(row))
        self.columns = sorted(names)
        self._index = {name: i for i, name in enumerate(self.columns)}

    def matrix(self, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
        """rows -> float array (n_rows, n_columns); features the table has no column for are
        dropped, missing ones read 0."""
        out = np.zeros((len(rows), len(self.columns)))
        for r, row in enumerate(rows):
            for name, value in row.items():
                c = self._index.get(name)
                if c is not None:
                    out[r, c] = value
        return out

"""The typed `Architecture` value that flows from the grammar to the model, the database and export.

An architecture is the network body only: the vocabulary size belongs to the task and is given
when a model is built. Canonical JSON (sorted keys, primitive defaults filled in, parameters the
primitive does not use dropped) makes two configurations that build the same network hash the same.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1


@dataclass
class Mixer:
    """One primitive: a registry name (`attention`, `gated_deltanet`, `swiglu`, `moe`, `none`, ...)
    and its parameters. The token mixer `parallel` holds `{"branches": [Mixer dicts], ...}`."""

    type: str
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "params": _plain(self.params)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Mixer:
        if not isinstance(data, dict) or "type" not in data:
            raise ValueError(f"a mixer must be a mapping with a 'type', got {data!r}")
        unknown = set(data) - {"type", "params"}
        if unknown:
            raise ValueError(f"unknown mixer key(s) {sorted(unknown)} in {data!r}")
        return cls(type=str(data["type"]), params=dict(data.get("params") or {}))


@dataclass
class Layer:
    """A pre-norm residual block: x + token_mixer(norm(x)), then x + channel_mixer(norm(x))."""

    token_mixer: Mixer
    channel_mixer: Mixer

    def to_dict(self) -> dict[str, Any]:
        return {
            "token_mixer": self.token_mixer.to_dict(),
            "channel_mixer": self.channel_mixer.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Layer:
        if not isinstance(data, dict):
            raise ValueError(f"a layer must be a mapping, got {data!r}")
        unknown = set(data) - {"token_mixer", "channel_mixer"}
        if unknown:
            raise ValueError(f"unknown layer key(s) {sorted(unknown)}")
        channel = data.get("channel_mixer") or {"type": "none"}
        return cls(Mixer.from_dict(data["token_mixer"]), Mixer.from_dict(channel))


@dataclass
class Architecture:
    d_model: int
    layers: list[Layer]
    norm: str = "rms"  # "rms" | "layer"
    tie_embeddings: bool = True
    name: str | None = None  # a label (baseline name); not part of the identity

    def to_dict(self) -> dict[str, Any]:
        data = {
            "d_model": self.d_model,
            "layers": [layer.to_dict() for layer in self.layers],
            "norm": self.norm,
            "tie_embeddings": self.tie_embeddings,
        }
        if self.name is not None:
            data["name"] = self.name
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Architecture:
        if not isinstance(data, dict):
            raise ValueError(f"an architecture must be a mapping, got {type(data).__name__}")
        unknown = set(data) - {"d_model", "layers", "norm", "tie_embeddings", "name", "schema"}
        if unknown:
            raise ValueError(f"unknown architecture key(s) {sorted(unknown)}")
        for key in ("d_model", "layers"):
            if key not in data:
                raise ValueError(f"architecture is missing '{key}'")
        return cls(
            d_model=int(data["d_model"]),
            layers=[Layer.from_dict(item) for item in data["layers"]],
            norm=str(data.get("norm", "rms")),
            tie_embeddings=bool(data.get("tie_embeddings", True)),
            name=data.get("name"),
        )

    def canonical_dict(self) -> dict[str, Any]:
        """The identity of the network: defaults filled, unused parameters dropped, no name."""
        from mixnas.search_space.registry import canonical_mixer  # registry knows the defaults

        return {
            "d_model": self.d_model,
            "layers": [
                {
                    "token_mixer": canonical_mixer(layer.token_mixer, "token", self.d_model),
                    "channel_mixer": canonical_mixer(layer.channel_mixer, "channel", self.d_model),
                }
                for layer in self.layers
            ],
            "norm": self.norm,
            "tie_embeddings": self.tie_embeddings,
            "schema": SCHEMA_VERSION,
        }

    def canonical_json(self) -> str:
        return json.dumps(self.canonical_dict(), sort_keys=True, separators=(",", ":"))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Architecture:
        return cls.from_dict(json.loads(text))

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16]

    def mixer_counts(self) -> dict[str, int]:
        """How many layers use each token mixer type (parallel branches counted separately)."""
        counts: dict[str, int] = {}
        for layer in self.layers:
            mixers = (
                [Mixer.from_dict(b) for b in layer.token_mixer.params.get("branches", [])]
                if layer.token_mixer.type == "parallel"
                else [layer.token_mixer]
            )
            for mixer in mixers:
                counts[mixer.type] = counts.get(mixer.type, 0) + 1
        return counts


def _plain(value: Any) -> Any:
    """Deep-copy into JSON-plain values (tuples become lists, Mixers become dicts)."""
    if isinstance(value, Mixer):
        return value.to_dict()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value

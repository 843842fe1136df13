"""Shared test helpers: architectures to export and a loader for generated model files."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

from mixnas.search_space.architecture import Architecture, Layer, Mixer
from mixnas.search_space.registry import REGISTRY, get_primitive

HYBRID_SPACE = Path(__file__).resolve().parents[2] / "studies" / "spaces" / "hybrid.yaml"


def registry_architecture(seed: int, d_model: int = 64) -> Architecture:
    """Every registered token mixer once (in random order, choice and bool parameters drawn at
    random), channel mixers cycled, plus a parallel layer of each combine mode."""
    get_primitive("none")  # loads the built-in primitives
    rng = random.Random(seed)

    def draw(name: str) -> Mixer:
        params = {}
        for key, spec in sorted(REGISTRY[name].params.items()):
            if spec.kind == "choice" and key != "combine":
                params[key] = rng.choice(spec.choices)
            elif spec.kind == "bool":
                params[key] = rng.random() < 0.5
        return Mixer(name, params)

    tokens = sorted(n for n, s in REGISTRY.items() if s.role == "token" and n != "parallel")
    channels = sorted(n for n, s in REGISTRY.items() if s.role == "channel")
    rng.shuffle(tokens)
    rng.shuffle(channels)
    mixers = [draw(name) for name in tokens]
    for combine in ("concat", "mix"):
        branches = [draw(name).to_dict() for name in rng.sample(tokens, 2)]
        mixers.append(Mixer("parallel", {"branches": branches, "combine": combine}))
    layers = [Layer(m, draw(channels[i % len(channels)])) for i, m in enumerate(mixers)]
    return Architecture(d_model, layers, norm=rng.choice(["rms", "layer"]),
                        tie_embeddings=bool(seed % 2), name=f"registry-{seed}")


def grammar_architectures(n: int, seed: int) -> list[Architecture]:
    """Samples of the hybrid search space, when the grammar and the space file are there."""
    if not HYBRID_SPACE.exists():
        return []
    from mixnas.search_space.grammar import sample_architectures

    return sample_architectures(HYBRID_SPACE, n, seed)


def import_generated(path: Path, name: str):
    """Import a generated model.py as module `name` (registered so that dataclasses work)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module

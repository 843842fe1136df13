"""Shared test helpers: architectures to export and a loader for generated model files."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

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


def export_cases(grammar_seed: int) -> dict[str, Architecture]:
    """What the equivalence tests export: every baseline (jamba has MoE), every registered
    primitive with parallel layers of both combine modes (registry_0/1) and 3 grammar samples."""
    from mixnas.search_space.baselines import BASELINES

    cases = dict(BASELINES)
    cases.update({f"registry_{seed}": registry_architecture(seed) for seed in (0, 1)})
    samples = grammar_architectures(3, seed=grammar_seed)
    cases.update({f"grammar_{i}": arch for i, arch in enumerate(samples)})
    return cases


def import_generated(path: Path, name: str):
    """Import a generated model.py as module `name` (registered so that dataclasses work)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def isolated_path(*modules) -> list[str]:
    """The directories `modules` (e.g. torch, safetensors) are imported from, for a `python -I -S`
    subprocess; fails the test if mixnas lives in one of them (it could not be hidden then)."""
    dirs = {str(Path(m.__file__).resolve().parents[1]) for m in modules}
    if any((Path(d) / "mixnas").exists() for d in dirs):
        pytest.fail(f"mixnas is installed next to {dirs}; cannot hide it from the check")
    return sorted(dirs)


NO_MIXNAS = """
try:
    import mixnas
except ImportError:
    pass
else:
    raise SystemExit(f"mixnas is importable from {mixnas.__path__}")
"""


def run_isolated(code: str, args: list[str], modules: tuple, cwd: Path, env: dict | None = None):
    """Run `code` with `python -I -S` (no site-packages, no PYTHON* variables, so no mixnas) that
    sees only the directories of `modules`, after checking that mixnas cannot be imported there;
    returns the JSON its last stdout line prints."""
    paths = "import sys; sys.path[:0] = " + repr(isolated_path(*modules)) + "\n" + NO_MIXNAS
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", paths + code, *args],
        capture_output=True, text=True, cwd=cwd, env={**clean, **(env or {})}, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-1000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def prepared_corpus(root: Path, name: str, tokenizer: str) -> tuple[Path, int]:
    """A small corpus written by `mixnas data prepare` into root/name (meta.json, the bins and,
    for a BPE, tokenizer.json) from Python-like documents; returns (directory, vocab_size)."""
    from mixnas.data import PrepareOptions, prepare

    docs = root / "docs"
    if not docs.exists():
        docs.mkdir()
        for i in range(12):
            (docs / f"doc{i}.txt").write_text(f"def f{i}(x):\n    return x * {i}  # doc {i}\n" * 4)
    meta = prepare(PrepareOptions([str(docs)], root / name, tokenizer=tokenizer))
    return root / name, meta["vocab_size"]

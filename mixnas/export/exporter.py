"""Write an exported model directory: model.py, config.json, model.safetensors and a README.

The directory is self-sufficient: `model.py` needs only torch (and safetensors for the weights),
`config.json` holds the architecture as data, and the weights keep mixnas's own parameter names.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from mixnas.errors import MixnasError
from mixnas.export.codegen import config_dict, generate_code
from mixnas.search_space.architecture import Architecture

FILES = ("model.py", "config.json", "model.safetensors", "README.md")


class ExportError(MixnasError, ValueError):
    """An export request that cannot be carried out (unknown study or trial, misfit weights)."""


class ExportExistsError(MixnasError, FileExistsError):
    """An export would overwrite a file and `force` was not given."""


def export_architecture(
    arch: Architecture,
    vocab_size: int,
    out_dir: str | os.PathLike,
    state_dict: Mapping[str, torch.Tensor] | bytes | None = None,
    force: bool = False,
    metadata: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Export `arch` into `out_dir` and return the files written.

    `state_dict` is mixnas's own model state (tensors, or the safetensors bytes a study stored);
    without it the directory holds code and config only and `load` gives a random initialisation.
    `metadata` (study, trial, objective values, metrics) goes into the README.
    """
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
        raise ExportError(f"vocab_size must be a positive integer, got {vocab_size!r}")
    out = check_target(out_dir, force)
    weights = None if state_dict is None else weights_bytes(arch, vocab_size, state_dict)
    contents: dict[str, str | bytes] = {
        "model.py": generate_code(arch, vocab_size),
        "config.json": json.dumps(config_dict(arch, vocab_size), indent=2, sort_keys=True) + "\n",
        "README.md": readme(arch, vocab_size, weights is not None, metadata),
    }
    if weights is not None:
        contents["model.safetensors"] = weights
    out.mkdir(parents=True, exist_ok=True)
    stale = out / "model.safetensors"
    if weights is None and stale.exists():  # only reachable with force: never keep old weights
        stale.unlink()
    written = []
    for name in FILES:
        if name in contents:
            written.append(write_file(out / name, contents[name]))
    return written


def check_target(out_dir: str | os.PathLike, force: bool, files: tuple[str, ...] = FILES) -> Path:
    """Refuse a target that is not a directory, or (without `force`) holds any of `files` (the
    files an export of that format writes)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ExportExistsError(f"{out} exists and is not a directory")
    for parent in out.parents:  # the nearest existing ancestor must be a writable directory
        if parent.exists():
            if not parent.is_dir():
                raise ExportExistsError(f"-o {out}: {parent} is a file, not a directory")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ExportExistsError(f"-o {out}: directory {parent} is not writable")
            break
    if not force:
        for name in files:
            if (out / name).exists():
                raise ExportExistsError(f"{out / name} already exists; pass --force to overwrite")
    return out


def write_file(path: Path, content: str | bytes) -> Path:
    """Write through a temporary file so that a failed export never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(content.encode() if isinstance(content, str) else content)
    tmp.replace(path)
    return path


def weights_bytes(
    arch: Architecture, vocab_size: int, state_dict: Mapping[str, torch.Tensor] | bytes
) -> bytes:
    """The weights as safetensors bytes, after checking that they fit the architecture."""
    from safetensors.torch import load

    from mixnas.search_space.model import state_dict_bytes

    tensors = load(state_dict) if isinstance(state_dict, bytes) else dict(state_dict)
    expected = _expected_shapes(arch, vocab_size)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise ExportError(f"the weights do not fit the architecture: {detail}")
    for key, shape in expected.items():
        if tuple(tensors[key].shape) != shape:
            raise ExportError(
                f"the weights do not fit the architecture: {key} has shape "
                f"{tuple(tensors[key].shape)}, expected {shape}"
            )
    if isinstance(state_dict, bytes):
        return state_dict
    return state_dict_bytes(tensors)


def _expected_shapes(arch: Architecture, vocab_size: int) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes of mixnas's model for `arch`, built without allocating memory."""
    from mixnas.search_space.model import build_model

    with torch.device("meta"):
        model = build_model(arch, vocab_size)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def readme(
    arch: Architecture, vocab_size: int, has_weights: bool, metadata: Mapping[str, Any] | None
) -> str:
    """A short README: what the directory is, how to load and generate, and the trial's numbers."""
    title = " ".join(str(arch.name).split()) if arch.name else f"mixnas architecture {arch.hash}"
    counts = ", ".join(f"{name} x{n}" for name, n in sorted(arch.mixer_counts().items()))
    weights = (
        "`model.safetensors` holds the trained weights (mixnas's own parameter names)."
        if has_weights
        else "No weights were exported: `load` returns a randomly initialised model."
    )
    lines = [
        f"# {title}",
        "",
        "A standalone PyTorch model exported by mixnas. `model.py` needs only `torch` "
        "(and `safetensors` to read the weights); `config.json` holds the architecture as data.",
        "",
        f"- width {arch.d_model}, {len(arch.layers)} layers, {arch.norm} norm, "
        f"{'tied' if arch.tie_embeddings else 'untied'} embeddings, vocabulary {vocab_size}",
        f"- token mixers: {counts}",
        f"- architecture hash: `{arch.hash}`",
        f"- {weights}",
        "",
        "## Use",
        "",
        "```python",
        "import torch",
        "from model import generate, load",
        "",
        'model = load(".")  # the directory holding config.json (and model.safetensors)',
        "prompt = torch.tensor([[1, 2, 3]])",
        "tokens = generate(model, prompt, max_new_tokens=20)  # greedy; temperature=0.8 samples",
        "logits = model(tokens)  # (batch, time, vocabulary)",
        "```",
        "",
        "`generate` decodes one token at a time with each layer's recurrent or KV-cache state "
        "(`model.init_state`, `model.step`).",
    ]
    return "\n".join(lines + search_record(metadata)) + "\n"


def search_record(metadata: Mapping[str, Any] | None) -> list[str]:
    """README lines: the trial's record (study, trial, values, metrics) as a key/value table."""
    rows = sorted(_flatten(dict(metadata or {})).items())
    if not rows:
        return []
    return ["", "## Search record", "", "| key | value |", "|---|---|"] + [
        f"| {table_cell(key)} | {table_cell(value)} |" for key, value in rows
    ]


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        elif value is not None:
            flat[f"{prefix}{key}"] = value
    return flat


def table_cell(value: Any) -> str:
    """`value` as one Markdown table cell: floats to 6 digits, whitespace folded, pipes escaped."""
    text = f"{value:.6g}" if isinstance(value, float) else str(value)
    return " ".join(text.split()).replace("|", "\\|")

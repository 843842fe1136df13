"""Generate a standalone model.py for an architecture: only torch, only what the model uses.

The file is assembled from copied source, never from re-implementations: the kernel reference ops,
the classes of exactly the primitives the architecture uses (found by building the model and
asking each mixer its class), their helpers, mixnas's model class and `runtime.py`. The
architecture itself enters as data (a `Config` literal); user strings such as the architecture
name are only ever written as repr()'d literals. The result is deterministic and, when ruff is
installed, ruff-formatted.
"""

from __future__ import annotations

import ast
import importlib.util
import math
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import torch

from mixnas.export.sources import ExportSourceError, SourceCollector
from mixnas.search_space.architecture import Architecture
from mixnas.search_space.model import build_model

RUNTIME = "mixnas.export.runtime"
RUNTIME_ROOTS = ("Config", "build", "load", "generate")
GENERATED = ("PRIMITIVES", "CONFIG")  # names the generated file defines itself
SECTIONS = (  # the order of the copied modules in the file (dependencies permitting)
    "mixnas.kernels",
    "mixnas.search_space.primitives.common",
    "mixnas.search_space.model",
    "mixnas.search_space.primitives",
    RUNTIME,
)
CONFIG_FIELDS = ("vocab_size", "d_model", "layers", "norm", "tie_embeddings", "name")
HEADER = '''"""A standalone PyTorch language model exported by mixnas (see README.md beside it).

    model = load(directory)  # config.json (+ model.safetensors): the architecture and weights
    logits = model(tokens)  # tokens (batch, time) -> logits (batch, time, vocab_size)
    tokens = generate(model, prompt_tokens, max_new_tokens)  # step-by-step decoding

The code below is copied from mixnas: the plain-torch kernel ops, the primitives this architecture
uses, the model, and the loading and decoding helpers. It needs only torch (and safetensors to
read the weights).
"""'''


def config_dict(arch: Architecture, vocab_size: int) -> dict[str, Any]:
    """The architecture as plain data (canonical: defaults filled in) with the vocabulary size."""
    data = {**arch.canonical_dict(), "vocab_size": vocab_size, "name": arch.name}
    return {k: _plain(data[k]) for k in CONFIG_FIELDS}


@dataclass(frozen=True)
class CodeFile:
    """What one generated file holds around the architecture's own code.

    `roots`: (module, name) definitions copied with all they need; `siblings`: names the file
    imports from a sibling file of the export directory (`from .configuration_mixnas import
    MixnasConfig`) instead of copying; `with_config`: whether the file ends with the `CONFIG`
    literal (the default architecture `load` falls back on)."""

    header: str
    roots: tuple[tuple[str, str], ...]
    siblings: tuple[tuple[str, str], ...] = ()
    with_config: bool = True


MODEL_PY = CodeFile(HEADER, tuple((RUNTIME, name) for name in RUNTIME_ROOTS))


def generate_code(arch: Architecture, vocab_size: int, target: CodeFile = MODEL_PY) -> str:
    """The source of a standalone model.py for `arch` at `vocab_size` (byte-identical each time);
    `target` says which file (`model.py` by default) and so which code beyond the model it holds.
    """
    config = config_dict(arch, vocab_size)
    classes = primitive_classes(arch, vocab_size)
    collector = SourceCollector(generated=GENERATED + tuple(name for _, name in target.siblings))
    for module, name in target.roots:
        collector.add(module, name)
    primitives = {}
    for name, cls in sorted(classes.items()):
        primitives[name] = None if cls is None else collector.add_object(cls)
    tail = (
        "# ---- this architecture ----\n\nPRIMITIVES = {\n"
        + "".join(f"    {name!r}: {cls or 'None'},\n" for name, cls in primitives.items())
        + "}"
    )
    if target.with_config:
        tail += (
            "\nCONFIG = Config(\n"
            + "".join(f"    {key}={_literal(config[key], 1)},\n" for key in CONFIG_FIELDS)
            + ")"
        )
    return assemble(collector, target, tail)


def assemble(collector: SourceCollector, target: CodeFile, tail: str = "") -> str:
    """One generated file: header, imports, the collected definitions (in SECTIONS order, each
    module under a comment naming it), then `tail`; checked standalone and formatted."""
    sections = []
    module = None
    for definition in collector.definitions(SECTIONS):
        if definition.module != module:
            module = definition.module
            sections.append(f"# ---- copied from {collector.module_path(module)} ----")
        sections.append(definition.source)
    if tail:
        sections.append(tail)
    lines = collector.import_lines()
    lines += [f"from .{sibling} import {name}" for sibling, name in target.siblings]
    code = (
        f"{target.header}\n\nfrom __future__ import annotations\n\n{_import_block(lines)}\n\n"
        + "\n\n\n".join(section.strip("\n") for section in sections)
        + "\n"
    )
    _check_standalone(code)
    return ruff_format(code)


def primitive_classes(arch: Architecture, vocab_size: int) -> dict[str, type | None]:
    """The module class behind each primitive name the architecture uses (None: no sublayer).

    The model is built on the meta device (no memory, no initialisation cost), which also checks
    every parameter with mixnas's own error messages."""
    with torch.device("meta"):
        model = build_model(arch, vocab_size)
    classes: dict[str, type | None] = {}
    for layer, block in zip(arch.canonical_dict()["layers"], model.blocks):
        token, channel = layer["token_mixer"], layer["channel_mixer"]
        pairs = [(token["type"], block.token_mixer), (channel["type"], block.channel_mixer)]
        if token["type"] == "parallel":
            branches = [branch["type"] for branch in token["params"]["branches"]]
            pairs += list(zip(branches, block.token_mixer.branches))
        for name, module in pairs:
            cls = None if module is None else type(module)
            if classes.setdefault(name, cls) is not cls:
                raise ExportSourceError(f"primitive {name!r} builds both {classes[name]} and {cls}")
    return classes


def ruff_format(code: str) -> str:
    """Format with ruff (isolated from any project settings, line length 100) when installed."""
    if importlib.util.find_spec("ruff") is not None:
        command = [sys.executable, "-m", "ruff"]
    elif shutil.which("ruff"):
        command = [shutil.which("ruff")]
    else:
        return code
    result = subprocess.run(
        command + ["format", "--isolated", "--line-length", "100", "--stdin-filename",
                   "model.py", "-"],
        input=code, capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"ruff format failed on the generated code: {result.stderr.strip()}")
    return result.stdout


def _check_standalone(code: str) -> None:
    """The generated file must parse and must not import mixnas anywhere (even lazily)."""
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
        else:
            continue
        if any(m.partition(".")[0] == "mixnas" for m in modules):
            raise ExportSourceError(
                f"copied code imports {', '.join(modules)} at line {node.lineno} of the generated "
                "file; move that import out of the copied classes"
            )


def _import_block(lines: list[str]) -> str:
    """Import lines in groups (standard library, others, the export directory's own files),
    `import` before `from`."""

    def group(line: str) -> int:
        module = line.split()[1]
        if module.startswith("."):
            return 2
        return 0 if module.partition(".")[0] in sys.stdlib_module_names else 1

    ordered = sorted(lines, key=lambda line: (group(line), line.startswith("from"), line))
    blocks = [[line for line in ordered if group(line) == g] for g in (0, 1, 2)]
    return "\n\n".join("\n".join(block) for block in blocks if block)


def _plain(value: Any) -> Any:
    """JSON-plain data: tuples become lists; non-finite floats are refused (JSON has none)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"architecture parameter {value!r} is not a finite number")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(f"architecture parameter {value!r} is not plain data")


def _literal(value: Any, depth: int = 0) -> str:
    """A Python literal for JSON-plain data: on one line when short, else one item per line."""
    if isinstance(value, dict):
        items = [f"{k!r}: {_literal(v, depth + 1)}" for k, v in value.items()]
        opening, closing = "{", "}"
    elif isinstance(value, list):
        items = [_literal(v, depth + 1) for v in value]
        opening, closing = "[", "]"
    else:
        return repr(value)
    flat = opening + ", ".join(items) + closing
    if len(flat) + 4 * depth <= 80 and "\n" not in flat:
        return flat
    pad = "    " * (depth + 1)
    return opening + "\n" + "".join(f"{pad}{item},\n" for item in items) + "    " * depth + closing

"""Generated code: deterministic, lint-clean, minimal, standalone and safe with any name."""

from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from mixnas.export import codegen
from mixnas.export.codegen import generate_code
from mixnas.export.exporter import ExportError, ExportExistsError, export_architecture
from mixnas.search_space.architecture import Architecture, Layer, Mixer
from mixnas.search_space.baselines import get_baseline
from mixnas.search_space.model import build_model

from .helpers import import_generated, registry_architecture

REPO = Path(__file__).resolve().parents[2]
ALLOWED_IMPORTS = {"__future__", "dataclasses", "functools", "json", "math", "os", "typing", "torch",
                   "safetensors"}


def _tiny(name=None, token="attention", channel="swiglu") -> Architecture:
    return Architecture(16, [Layer(Mixer(token, {"heads": 2}), Mixer(channel))], name=name)


def _imported_modules(code: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            found |= {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            found.add((node.module or "").partition(".")[0])
    return found


def test_generated_code_is_deterministic(tmp_path):
    arch = registry_architecture(3)
    assert generate_code(arch, 50) == generate_code(Architecture.from_json(arch.to_json()), 50)
    weights = build_model(arch, 50).state_dict()
    for directory in ("a", "b"):
        export_architecture(arch, 50, tmp_path / directory, state_dict=weights, metadata={"x": 1})
    for name in ("model.py", "config.json", "model.safetensors", "README.md"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_only_used_primitives_are_copied():
    code = generate_code(get_baseline("transformer"), 32)
    assert "class Attention(" in code and "def attention(" in code
    for absent in ("delta_rule", "linear_attention", "Mamba2", "Hyena", "class MoE", "Parallel"):
        assert absent not in code
    module = ast.parse(code)
    primitives = next(
        n.value for n in module.body
        if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "PRIMITIVES"
    )
    assert sorted(ast.literal_eval(k) for k in primitives.keys) == ["attention", "swiglu"]
    gdn = generate_code(get_baseline("gated_deltanet"), 32)
    assert "def delta_rule(" in gdn and "def attention(" not in gdn


@pytest.mark.parametrize("name", ["transformer", "jamba", "registry"])
def test_generated_code_imports_only_torch_and_the_standard_library(name):
    arch = registry_architecture(0) if name == "registry" else get_baseline(name)
    assert _imported_modules(generate_code(arch, 32)) <= ALLOWED_IMPORTS


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed")
def test_generated_code_passes_ruff(tmp_path, monkeypatch):
    archs = [get_baseline("jamba"), registry_architecture(0), _tiny("x")]
    formatted = [tmp_path / f"model_{i}.py" for i in range(len(archs))]
    for path, arch in zip(formatted, archs):
        path.write_text(generate_code(arch, 32))
    monkeypatch.setattr(codegen, "ruff_format", lambda code: code)  # as when ruff is missing
    unformatted = tmp_path / "model_raw.py"
    unformatted.write_text(generate_code(registry_architecture(1), 32))
    config = ["--no-cache", "--config", str(REPO / "pyproject.toml")]
    check = subprocess.run(
        ["ruff", "check", *config, *map(str, formatted), str(unformatted)],
        capture_output=True, text=True,
    )
    assert check.returncode == 0, check.stdout
    fmt = subprocess.run(
        ["ruff", "format", "--check", *config, *map(str, formatted)], capture_output=True, text=True
    )
    assert fmt.returncode == 0, fmt.stdout


@pytest.mark.parametrize(
    "name", ["'; import subprocess #", '"""\nimport subprocess\n"""', "a\\nb\x00\u2028", "été 6L"]
)
def test_any_name_is_only_a_string_literal(tmp_path, name):
    arch = _tiny(name)
    code = generate_code(arch, 20)
    assert "subprocess" not in _imported_modules(code)
    export_architecture(arch, 20, tmp_path, state_dict=build_model(arch, 20).state_dict())
    module = import_generated(tmp_path / "model.py", f"exported_name_{abs(hash(name))}")
    assert module.CONFIG.name == name
    assert module.load(tmp_path).vocab_size == 20
    title = (tmp_path / "README.md").read_text().splitlines()[0]
    assert title.startswith("# ") and "\n" not in title


def test_no_overwrite_without_force(tmp_path):
    arch = _tiny("t")
    weights = build_model(arch, 10).state_dict()
    written = export_architecture(arch, 10, tmp_path, state_dict=weights)
    assert sorted(p.name for p in written) == [
        "README.md", "config.json", "model.py", "model.safetensors"
    ]
    before = (tmp_path / "model.py").read_bytes()
    with pytest.raises(ExportExistsError, match="model.py already exists; pass --force"):
        export_architecture(_tiny("t", token="gla"), 10, tmp_path)
    assert (tmp_path / "model.py").read_bytes() == before
    written = export_architecture(_tiny("t", token="gla"), 10, tmp_path, force=True)
    assert not (tmp_path / "model.safetensors").exists()  # the old weights would not fit
    assert "class GLA(" in (tmp_path / "model.py").read_text()
    assert len(written) == 3


def test_target_that_is_a_file_is_refused(tmp_path):
    target = tmp_path / "file"
    target.write_text("")
    with pytest.raises(ExportExistsError, match="not a directory"):
        export_architecture(_tiny(), 10, target, force=True)


def test_weights_that_do_not_fit_are_refused(tmp_path):
    weights = build_model(_tiny(), 10).state_dict()
    with pytest.raises(ExportError, match="shape"):
        export_architecture(_tiny(), 11, tmp_path, state_dict=weights)
    weights.pop("norm.weight")
    with pytest.raises(ExportError, match="missing .*norm.weight"):
        export_architecture(_tiny(), 10, tmp_path, state_dict=weights)
    assert not list(tmp_path.iterdir())


def test_invalid_architecture_is_a_one_line_error():
    with pytest.raises(ValueError, match="layer 0 token_mixer: attention.heads"):
        generate_code(Architecture(16, [Layer(Mixer("attention", {"heads": 0}), Mixer("none"))]), 8)
    with pytest.raises(ExportError, match="vocab_size"):
        export_architecture(_tiny(), 0, "unused")


def test_readme_records_metadata_and_load_works_without_weights(tmp_path):
    export_architecture(_tiny("tiny"), 12, tmp_path, metadata={"trial": 3, "values": {"loss": 0.5}})
    readme = (tmp_path / "README.md").read_text()
    assert readme.startswith("# tiny\n")
    assert "| values.loss | 0.5 |" in readme and "| trial | 3 |" in readme
    assert "randomly initialised" in readme
    module = import_generated(tmp_path / "model.py", "exported_readme")
    model = module.load(str(tmp_path))
    assert not model.training
    out = module.generate(model, [1, 2], 3, temperature=0.7, top_k=5,
                          generator=torch.Generator().manual_seed(0))
    assert out.shape == (5,) and out[:2].tolist() == [1, 2]
    (tmp_path / "config.json").unlink()  # model.py alone still knows its architecture
    assert module.load(tmp_path).vocab_size == 12


def test_generate_works_on_mixnas_models_too():
    from mixnas.export.runtime import generate

    torch.manual_seed(0)
    model = build_model(_tiny(), 16).eval()
    prompt = torch.tensor([[3, 1, 4]])
    out = generate(model, prompt, 4)
    with torch.no_grad():
        greedy = prompt
        for _ in range(4):
            greedy = torch.cat([greedy, model(greedy)[:, -1:].argmax(-1)], dim=1)
    assert torch.equal(out, greedy)
    with pytest.raises(ValueError, match="at least one prompt token"):
        generate(model, torch.zeros(1, 0, dtype=torch.long), 2)

"""Exported models, run where mixnas cannot be imported, compute what mixnas's own models compute.

All architectures are exported first, then checked in ONE subprocess (torch starts once): Python
runs with -I -S and sees only the standard library and the directories torch and safetensors
live in, minus any directory holding a `mixnas` package.
"""

from __future__ import annotations

import json

import pytest
import safetensors
import torch

from mixnas.export.exporter import export_architecture
from mixnas.search_space.model import build_model

from .helpers import export_cases, run_isolated

VOCAB = 40
BATCH, SEQ = 2, 16
PROMPT, NEW = 5, 4

CASES = export_cases(grammar_seed=7)

CHECK = r"""
import importlib.util, json, sys, torch
torch.set_num_threads(1)
results = {}
for name, directory, check in json.loads(sys.argv[1]):
    spec = importlib.util.spec_from_file_location(f"exported_{name}", f"{directory}/model.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    data = torch.load(check)
    model = module.load(directory)
    tokens = data["tokens"]
    with torch.no_grad():
        logits = model(tokens)
        state = model.init_state(tokens.shape[0])
        steps = []
        for t in range(tokens.shape[1]):
            step_logits, state = model.step(tokens[:, t], state)
            steps.append(step_logits)
        greedy = tokens[:, :data["prompt"]]
        for _ in range(data["new"]):
            greedy = torch.cat([greedy, model(greedy)[:, -1].argmax(-1, keepdim=True)], dim=1)
    generated = module.generate(model, tokens[:, :data["prompt"]], data["new"])
    results[name] = {
        "logits_diff": (logits - data["logits"]).abs().max().item(),
        "step_diff": (torch.stack(steps, 1) - logits).abs().max().item(),
        "generate_matches": torch.equal(generated, greedy),
        "keys": sorted(model.state_dict()),
        "mixnas_modules": sorted(m for m in sys.modules if m.partition(".")[0] == "mixnas"),
    }
sys.modules["safetensors"] = sys.modules["safetensors.torch"] = None  # as if not installed
try:
    module.load(directory)
    results["without_safetensors"] = "loaded"
except ImportError as err:
    results["without_safetensors"] = str(err)
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("exports")
    jobs = []
    for i, (name, arch) in enumerate(CASES.items()):
        torch.manual_seed(i)
        model = build_model(arch, VOCAB).eval()
        tokens = torch.randint(0, VOCAB, (BATCH, SEQ), generator=torch.Generator().manual_seed(i))
        with torch.no_grad():
            logits = model(tokens)
        directory = root / name
        export_architecture(arch, VOCAB, directory, state_dict=model.state_dict())
        check = root / f"{name}.pt"
        torch.save({"tokens": tokens, "logits": logits, "prompt": PROMPT, "new": NEW}, check)
        jobs.append((name, str(directory), str(check)))
    return run_isolated(CHECK, [json.dumps(jobs)], (torch, safetensors), root)


@pytest.mark.parametrize("name", sorted(CASES))
def test_exported_model_matches_mixnas(results, name):
    result = results[name]
    assert result["mixnas_modules"] == []
    assert result["logits_diff"] <= 1e-5
    with torch.device("meta"):
        expected_keys = sorted(build_model(CASES[name], VOCAB).state_dict())
    assert result["keys"] == expected_keys


def test_missing_safetensors_is_a_clear_error(results):
    assert "needs the safetensors package: pip install safetensors" in results["without_safetensors"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_exported_decoding_matches_parallel_forward(results, name):
    result = results[name]
    assert result["step_diff"] <= 1e-4
    assert result["generate_matches"]

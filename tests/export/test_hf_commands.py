"""`mixnas export --format hf`: what the directory holds, where its tokenizer comes from, and the
one-line errors (exit 2, nothing written) for a missing transformers or a bad tokenizer."""

from __future__ import annotations

import ast
import importlib.util
import json
import sys

import pytest
import torch
from safetensors.torch import load_file, save

from mixnas.cli import main
from mixnas.export.commands import export_from_file, export_from_study
from mixnas.export.exporter import ExportError, ExportExistsError, export_architecture
from mixnas.search_space.architecture import Architecture, Layer, Mixer
from mixnas.search_space.model import build_model
from mixnas.storage import RDBStorage, StudyRecord, TrialRecord, TrialWeights

from .helpers import prepared_corpus

OBJECTIVES = [{"name": "val_loss", "direction": "minimize"},
              {"name": "non_embedding_params", "direction": "minimize"}]
ARCH = Architecture(16, [Layer(Mixer("attention", {"heads": 2}), Mixer("moe", {"experts": 2})),
                         Layer(Mixer("gla", {"heads": 2}), Mixer("swiglu"))], name="tiny hybrid")


def _study(tmp_path, task, vocab=256, keep=(0,)):
    """A study with trials 0 and 1 of ARCH (weights kept for `keep`); returns (url, models)."""
    url = f"sqlite:///{tmp_path}/study.db"
    models = {}
    with RDBStorage(url).sessions() as session:
        study = StudyRecord(name="s", config={"task": task, "train": {"aux_loss_coef": 0.05}},
                            objectives=OBJECTIVES, target_trials=2)
        session.add(study)
        session.flush()
        for number, values in enumerate([{"val_loss": 1.5, "non_embedding_params": 900},
                                         {"val_loss": 1.2, "non_embedding_params": 1900}]):
            trial = TrialRecord(study_id=study.id, number=number, state="complete",
                                values=values, arch_json=ARCH.canonical_json())
            session.add(trial)
            session.flush()
            torch.manual_seed(number)
            models[number] = build_model(ARCH, vocab).eval()
            if number in keep:
                data = save({k: v.clone() for k, v in models[number].state_dict().items()})
                session.add(TrialWeights(trial_id=trial.id, vocab_size=vocab, data=data))
        session.commit()
    return url, models


def test_without_transformers_one_line_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if not installed
    url, _ = _study(tmp_path, {"name": "lm"})
    for argv in (["--arch", "transformer"], ["s", "--storage", url, "--trial", "0"]):
        assert main(["export", *argv, "--format", "hf", "-o", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "needs transformers: pip install 'mixnas[hf]'" in err
    assert not (tmp_path / "out").exists()


# the tests below write (and load) transformers directories
needs_transformers = pytest.mark.skipif(
    importlib.util.find_spec("transformers") is None, reason="transformers is not installed"
)


@needs_transformers
def test_study_trial_as_transformers_directory(tmp_path):
    from transformers import AutoModelForCausalLM

    url, models = _study(tmp_path, {"name": "lm"})
    out = tmp_path / "hf"
    written = export_from_study(url, "s", trial=0, out_dir=out, format="hf")
    assert [p.name for p in written] == [
        "config.json", "configuration_mixnas.py", "modeling_mixnas.py", "model.safetensors",
        "generation_config.json", "README.md", "tokenizer.json", "tokenizer_config.json",
    ]
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "mixnas" and config["architectures"] == ["MixnasForCausalLM"]
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_mixnas.MixnasForCausalLM"
    assert config["vocab_size"] == 256 and config["router_aux_loss_coef"] == 0.05
    assert config["layers"][0]["channel_mixer"]["params"]["experts"] == 2
    assert json.loads((out / "generation_config.json").read_text())["do_sample"] is False
    weights = load_file(out / "model.safetensors")
    assert sorted(weights) == sorted(f"model.{k}" for k in models[0].state_dict())
    assert torch.equal(weights["model.embed.weight"], models[0].embed.weight)

    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: transformers\n")
    assert f"# mixnas architecture {ARCH.hash}" in card and "study s, trial 0" in card
    assert "| 0 | attention(heads=2" in card and "| moe(" in card
    assert "| val_loss | minimize | 1.5 |" in card and "| non_embedding_params | minimize | 900 |" in card
    assert "tokenizer: bytes" in card and "trained weights" in card

    model = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True).eval()
    tokens = torch.randint(0, 256, (2, 9))
    with torch.no_grad():
        assert (model(tokens).logits - models[0](tokens)).abs().max() <= 1e-5


@needs_transformers
def test_modeling_file_holds_model_py_code(tmp_path):
    """One code generator: every definition of model.py (but `load`, which reads model.py's own
    config.json, and its CONFIG literal) is in modeling_mixnas.py, character for character."""
    export_architecture(ARCH, 256, tmp_path / "torch")
    export_from_file("transformer", tmp_path / "unused", format="hf")  # warm caches, other arch
    (tmp_path / "spec.yaml").write_text(json.dumps(ARCH.to_dict()))
    export_from_file(tmp_path / "spec.yaml", tmp_path / "hf", format="hf")
    modeling = (tmp_path / "hf" / "modeling_mixnas.py").read_text()
    model_py = (tmp_path / "torch" / "model.py").read_text()
    tree = ast.parse(model_py)
    copied = [node for node in tree.body
              if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Assign))
              and getattr(node, "name", None) != "load"
              and not (isinstance(node, ast.Assign) and node.targets[0].id == "CONFIG")]
    assert len(copied) > 20
    for node in copied:
        assert ast.get_source_segment(model_py, node) in modeling, getattr(node, "name", node)
    for absent in ("class Mamba2", "class Hyena", "def delta_rule"):  # only what ARCH uses
        assert absent not in modeling
    assert "from .configuration_mixnas import MixnasConfig" in modeling
    imported = {alias.name for node in ast.walk(ast.parse(modeling))
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(ast.parse(modeling))
                 if isinstance(node, ast.ImportFrom)}
    assert not any(name.partition(".")[0] == "mixnas" for name in imported)


@needs_transformers
def test_export_is_deterministic(tmp_path):
    url, _ = _study(tmp_path, {"name": "lm"})
    for name in ("a", "b"):
        export_from_study(url, "s", trial=0, out_dir=tmp_path / name, format="hf")
    for path in (tmp_path / "a").iterdir():
        assert path.read_bytes() == (tmp_path / "b" / path.name).read_bytes(), path.name


@needs_transformers
def test_synthetic_task_has_no_tokenizer_and_force_drops_old_files(tmp_path):
    url, _ = _study(tmp_path, {"name": "mqar", "vocab_size": 256}, keep=(0,))
    out = tmp_path / "hf"
    export_from_file("transformer", out, format="hf")  # vocabulary 256: a byte tokenizer
    assert (out / "tokenizer.json").exists()
    with pytest.raises(ExportExistsError, match="already exists"):
        export_from_study(url, "s", trial=1, out_dir=out, format="hf")
    export_from_study(url, "s", trial=1, out_dir=out, format="hf", force=True)
    assert not (out / "tokenizer.json").exists() and not (out / "tokenizer_config.json").exists()
    card = (out / "README.md").read_text()
    assert "untrained: a seeded random initialisation" in card and "tokenizer: none" in card
    assert (out / "model.safetensors").exists()  # transformers needs weights to load


@needs_transformers
def test_pareto_front_in_hf_format(tmp_path):
    url, _ = _study(tmp_path, {"name": "lm"}, keep=(0, 1))
    written = export_from_study(url, "s", pareto=True, out_dir=tmp_path, format="hf")
    assert sorted(p.parent.name for p in written if p.name == "config.json") == [
        "trial_0", "trial_1"
    ]


@needs_transformers
def test_tokenizer_of_a_prepared_corpus(tmp_path):
    from tokenizers import Tokenizer

    data, vocab = prepared_corpus(tmp_path, "bpe", "bpe:280")
    tok = Tokenizer.from_file(str(data / "tokenizer.json"))
    url, _ = _study(tmp_path, {"name": "lm", "data": str(data)}, vocab=vocab)
    out = tmp_path / "hf"
    export_from_study(url, "s", trial=0, out_dir=out, format="hf")
    config = json.loads((out / "config.json").read_text())
    assert config["eos_token_id"] == tok.token_to_id("<|endoftext|>")
    saved = json.loads((out / "tokenizer.json").read_text())
    assert saved["model"]["vocab"] == json.loads(tok.to_str())["model"]["vocab"]
    assert f"tokenizer: `{data / 'tokenizer.json'}`" in (out / "README.md").read_text()

    (tmp_path / "small").mkdir()
    small, _ = _study(tmp_path / "small", {"name": "lm", "data": str(data)}, vocab=100)
    with pytest.raises(ExportError, match=r"has 2\d\d tokens, more than the model's vocabulary"):
        export_from_study(small, "s", trial=0, out_dir=tmp_path / "x", format="hf")
    assert not (tmp_path / "x").exists()

    byte_data, byte_vocab = prepared_corpus(tmp_path, "bytes", "byte")  # no tokenizer.json: bytes
    (tmp_path / "b").mkdir()
    url, _ = _study(tmp_path / "b", {"name": "lm", "data": str(byte_data)}, vocab=byte_vocab)
    export_from_study(url, "s", trial=0, out_dir=tmp_path / "hf_bytes", format="hf")
    assert "tokenizer: bytes" in (tmp_path / "hf_bytes" / "README.md").read_text()


@needs_transformers
@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"tokenizer": "missing.json"}, "missing.json: no such tokenizer file"),
        ({"tokenizer": "byte", "vocab_size": 100}, "byte tokenizer needs a vocabulary of 256"),
        ({"tokenizer": "byte", "format": "torch"}, "--tokenizer goes with --format hf"),
        ({"format": "onnx"}, "unknown export format 'onnx'; formats: torch, hf"),
    ],
)
def test_bad_tokenizer_or_format_is_refused_before_writing(tmp_path, kwargs, message):
    kwargs = {"format": "hf", **kwargs}
    with pytest.raises(ExportError, match=message) as info:
        export_from_file("transformer", tmp_path / "out", **kwargs)
    assert "\n" not in str(info.value) and not (tmp_path / "out").exists()


@needs_transformers
def test_bad_tokenizer_file_and_missing_data_dir(tmp_path, capsys):
    (tmp_path / "tokenizer.json").write_text("{not json")
    argv = ["export", "--arch", "transformer", "--format", "hf", "-o", str(tmp_path / "out")]
    assert main([*argv, "--tokenizer", str(tmp_path / "tokenizer.json")]) == 2
    assert "tokenizer.json: not a tokenizers tokenizer.json" in capsys.readouterr().err
    url, _ = _study(tmp_path, {"name": "lm", "data": str(tmp_path / "nowhere")})
    assert main(["export", "s", "--storage", url, "--trial", "0", "--format", "hf",
                 "-o", str(tmp_path / "out")]) == 2
    assert "nowhere/tokenizer.json: no such tokenizer file" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()

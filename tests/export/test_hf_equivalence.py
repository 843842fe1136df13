"""`--format hf` exports, loaded by transformers where mixnas cannot be imported, compute what
mixnas's models compute and generate what the standalone model.py's `generate` generates.

Every case is exported twice (hf and torch, the same weights), then all are checked in ONE
subprocess (`python -I -S`, only the directories of torch, safetensors and transformers on the
path, so transformers starts once and mixnas is out of reach). Cases: every baseline (jamba has
MoE), every registered primitive with parallel layers of both combine modes (registry_*), samples
of the hybrid grammar, a byte-level LM with its byte tokenizer and an LM on a BPE corpus prepared by
`mixnas data prepare`.
"""

from __future__ import annotations

import json

import pytest
import safetensors
import torch

transformers = pytest.importorskip("transformers")

from mixnas.export.exporter import export_architecture  # noqa: E402
from mixnas.export.hf import StudyContext, export_hf  # noqa: E402
from mixnas.search_space.baselines import get_baseline  # noqa: E402
from mixnas.search_space.model import build_model  # noqa: E402

from .helpers import export_cases, prepared_corpus, run_isolated  # noqa: E402

pytestmark = pytest.mark.slow  # ~1 min on 2 busy cores: transformers' import alone takes 5-10 s

VOCAB = 40
BATCH, SEQ = 2, 12
PROMPT, NEW = 4, 5
TEXT = "def main(x):\n    return x  # héllo\n"
CASES = export_cases(grammar_seed=11)
ROUND_TRIP = ("jamba", "registry_0")  # MoE; every primitive, parallel layers, MoE

CHECK = r"""
import json, os, sys, importlib.util, torch
torch.set_num_threads(1)
import transformers
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
transformers.logging.set_verbosity_error()


def standalone(name, directory):
    spec = importlib.util.spec_from_file_location(f"standalone_{name}", f"{directory}/model.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def sample(model, prompt, seed, **kwargs):
    torch.manual_seed(seed)
    return model.generate(prompt, do_sample=True, top_k=8, max_new_tokens=NEW, **kwargs).tolist()


def round_trip(model, config, tokens, logits, out):
    model.save_pretrained(out)
    again = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True).eval()
    fresh = AutoModelForCausalLM.from_config(config, trust_remote_code=True)
    loaded = dict(model.named_buffers())
    output = model(tokens, labels=tokens)
    output.loss.backward()
    with torch.no_grad():
        diff = (again(tokens).logits - logits).abs().max().item()
    return {
        "roundtrip_diff": diff,
        "roundtrip_files": sorted(os.listdir(out)),
        "fresh_buffers_equal": all(torch.equal(b, loaded[n]) for n, b in fresh.named_buffers()),
        "loss": output.loss.item(),
        "grads": all(p.grad is not None for p in model.parameters() if p.requires_grad),
    }


results = {}
for job in json.loads(sys.argv[1]):
    name, hf_dir, data = job["name"], job["hf"], torch.load(job["check"])
    NEW = data["new"]
    config = AutoConfig.from_pretrained(hf_dir, trust_remote_code=True)
    model = AutoModelForCausalLM.from_pretrained(hf_dir, trust_remote_code=True).eval()
    module = standalone(name, job["torch"])
    reference = module.load(job["torch"])
    tokens = data["tokens"]
    prompt = tokens[:, :data["prompt"]]
    with torch.no_grad():
        logits = model(tokens).logits
    expected = module.generate(reference, prompt, NEW).tolist()
    result = {
        "model_type": config.model_type,
        "class": type(model).__name__,
        "logits_diff": (logits - data["logits"]).abs().max().item(),
        "greedy": model.generate(prompt, max_new_tokens=NEW, do_sample=False).tolist(),
        "uncached": model.generate(prompt, max_new_tokens=NEW, use_cache=False).tolist(),
        "expected": expected,
        "sampled": [sample(model, prompt, 0), sample(model, prompt, 0),
                    sample(model, prompt, 0, use_cache=False), sample(model, prompt, 1)],
        "vocab_size": config.vocab_size,
    }
    if job.get("round_trip"):
        result.update(round_trip(model, config, tokens, logits, f"{hf_dir}_saved"))
        result["beam"] = list(model.generate(prompt, num_beams=3, max_new_tokens=NEW).shape)
        try:
            model.generate(prompt, attention_mask=torch.ones_like(prompt).index_fill(1, torch.tensor([0]), 0))
            result["left_padding"] = "accepted"
        except ValueError as err:
            result["left_padding"] = str(err)
    if job.get("text") is not None:
        tokenizer = AutoTokenizer.from_pretrained(hf_dir, trust_remote_code=True)
        ids = tokenizer(job["text"])["input_ids"]
        inputs = tokenizer(job["text"], return_tensors="pt")
        out = model.generate(**inputs, max_new_tokens=3)
        result.update(ids=ids, decoded=tokenizer.decode(ids), eos=tokenizer.eos_token,
                      generated=list(out.shape), text_decoded=tokenizer.decode(out[0]))
    results[name] = result
print(json.dumps(results))
"""


def _job(root, name, arch, vocab, seed, **options):
    torch.manual_seed(seed)
    model = build_model(arch, vocab).eval()
    tokens = torch.randint(0, vocab, (BATCH, SEQ), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        logits = model(tokens)
    hf_dir, torch_dir, check = root / name, root / f"{name}_torch", root / f"{name}.pt"
    export_hf(arch, vocab, hf_dir, state_dict=model.state_dict(), **options)
    export_architecture(arch, vocab, torch_dir, state_dict=model.state_dict())
    torch.save({"tokens": tokens, "logits": logits, "prompt": PROMPT, "new": NEW}, check)
    return {"name": name, "hf": str(hf_dir), "torch": str(torch_dir), "check": str(check),
            "round_trip": name in ROUND_TRIP}


@pytest.fixture(scope="module")
def bpe(tmp_path_factory):
    """A BPE corpus as `mixnas data prepare` writes it: (directory, vocab_size, tokenizer)."""
    from tokenizers import Tokenizer

    data, vocab = prepared_corpus(tmp_path_factory.mktemp("corpus"), "bpe", "bpe:300")
    return data, vocab, Tokenizer.from_file(str(data / "tokenizer.json"))


@pytest.fixture(scope="module")
def results(tmp_path_factory, bpe) -> dict:
    root = tmp_path_factory.mktemp("hf_exports")
    jobs = [_job(root, name, arch, VOCAB, i) for i, (name, arch) in enumerate(CASES.items())]
    byte = _job(root, "byte_lm", get_baseline("transformer"), 256, 100,
                study=StudyContext(task={"name": "lm"}))
    corpus = _job(root, "bpe_lm", get_baseline("gated_deltanet"), bpe[1], 101,
                  study=StudyContext(task={"name": "lm", "data": str(bpe[0])}))
    jobs += [{**byte, "text": TEXT}, {**corpus, "text": TEXT}]
    env = {"HF_HOME": str(root / "hf_home"), "HF_HUB_OFFLINE": "1"}
    modules = (torch, safetensors, transformers)
    return run_isolated(CHECK, [json.dumps(jobs)], modules, root, env)


@pytest.mark.parametrize("name", sorted(CASES))
def test_transformers_logits_equal_mixnas(results, name):
    result = results[name]
    assert result["model_type"] == "mixnas" and result["class"] == "MixnasForCausalLM"
    assert result["logits_diff"] <= 1e-5


@pytest.mark.parametrize("name", sorted(CASES))
def test_generate_matches_standalone_generate(results, name):
    result = results[name]
    assert len(result["expected"][0]) == PROMPT + NEW
    assert result["greedy"] == result["expected"]  # the layers' state as the cache
    assert result["uncached"] == result["expected"]  # the parallel forward every step


@pytest.mark.parametrize("name", sorted(CASES))
def test_sampling(results, name):
    first, again, uncached, other_seed = results[name]["sampled"]
    assert first == again == uncached
    assert all(0 <= t < VOCAB for row in first for t in row)
    assert len(first[0]) == PROMPT + NEW
    assert other_seed != first or first != results[name]["greedy"]  # it does sample


@pytest.mark.parametrize("name", ROUND_TRIP)
def test_save_pretrained_round_trip(results, name):
    result = results[name]
    assert result["roundtrip_diff"] == 0.0
    assert {"configuration_mixnas.py", "modeling_mixnas.py", "model.safetensors",
            "config.json"} <= set(result["roundtrip_files"])
    assert result["fresh_buffers_equal"]  # constants rebuilt after transformers' meta init
    assert result["loss"] > 0 and result["grads"]  # fine-tunable: labels give a loss
    assert result["beam"] == [BATCH, PROMPT + NEW]
    assert "no left padding" in result["left_padding"]


def test_byte_tokenizer(results):
    result = results["byte_lm"]
    assert result["ids"] == list(TEXT.encode())
    assert result["decoded"] == TEXT
    assert result["generated"] == [1, len(TEXT.encode()) + 3]
    assert result["text_decoded"].startswith(TEXT)


def test_corpus_tokenizer(results, bpe):
    result = results["bpe_lm"]
    assert result["ids"] == bpe[2].encode(TEXT).ids
    assert len(result["ids"]) < len(TEXT.encode())  # merges were applied
    assert result["decoded"] == TEXT
    assert result["eos"] == "<|endoftext|>"
    assert result["vocab_size"] == bpe[1]

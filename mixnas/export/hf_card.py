"""The model card (README.md) of a `--format hf` export: what the model is and how it was found.

The Hub shows README.md as the model's page; its YAML header tags the model for the Hub's search
(library transformers, custom code, text generation). The body says how to load it, what its
layers are, which objectives the search traded off and the trial's numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from mixnas.export.exporter import search_record, table_cell
from mixnas.search_space.architecture import Architecture

if TYPE_CHECKING:
    from mixnas.export.hf import StudyContext
    from mixnas.export.hf_tokenizer import TokenizerPlan


def model_card(
    arch: Architecture,
    vocab_size: int,
    trained: bool,
    metadata: Mapping[str, Any] | None,
    study: StudyContext,
    tokenizer: TokenizerPlan | None,
) -> str:
    """README.md for the export directory (deterministic for the same inputs)."""
    title = " ".join(str(arch.name).split()) if arch.name else f"mixnas architecture {arch.hash}"
    tags = ["mixnas", "custom_code", *sorted(arch.mixer_counts())]
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-generation",
        "tags:",
        *[f"- {tag}" for tag in tags],
        "---",
        "",
        f"# {title}",
        "",
        f"A language model {_origin(metadata)}, exported for `transformers`. "
        "`modeling_mixnas.py` is mixnas's own model code (the same as its standalone `model.py` "
        "export) with a `PreTrainedModel` around it, so loading needs `trust_remote_code=True`.",
        "",
        *_usage(tokenizer),
        *_architecture(arch, vocab_size, trained, tokenizer),
        *_objectives(study, metadata),
        *search_record(metadata),
    ]
    return "\n".join(lines) + "\n"


def _origin(metadata: Mapping[str, Any] | None) -> str:
    study = (metadata or {}).get("study")
    if study is None:
        return "of a mixnas architecture (mixnas: search over sequence-mixer designs)"
    return (
        f"found by mixnas's architecture search (study {table_cell(study)}, trial "
        f"{table_cell((metadata or {}).get('trial'))})"
    )


def _usage(tokenizer: TokenizerPlan | None) -> list[str]:
    if tokenizer is not None:
        code = [
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            "",
            'model = AutoModelForCausalLM.from_pretrained("DIR", trust_remote_code=True)',
            'tokenizer = AutoTokenizer.from_pretrained("DIR", trust_remote_code=True)',
            'inputs = tokenizer("def main(", return_tensors="pt")',
            "tokens = model.generate(**inputs, max_new_tokens=40, do_sample=True, top_k=20)",
            "print(tokenizer.decode(tokens[0]))",
        ]
    else:
        code = [
            "import torch",
            "from transformers import AutoModelForCausalLM",
            "",
            'model = AutoModelForCausalLM.from_pretrained("DIR", trust_remote_code=True)',
            "tokens = model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=20)",
        ]
    return [
        "## Use",
        "",
        "```python",
        *code,
        "```",
        "",
        "`generate` (greedy, sampling, beam search) decodes with the layers' own recurrent / "
        "KV-cache state as its cache (`MixnasCache`): the prompt goes through the layers' step "
        "form once, then each new token costs one step. `use_cache=False` re-runs the parallel "
        "forward instead. Padding must be on the right (the model has no padding mask); "
        "`labels` give the causal LM loss for fine-tuning.",
    ]


def _architecture(
    arch: Architecture, vocab_size: int, trained: bool, tokenizer: TokenizerPlan | None
) -> list[str]:
    from mixnas.search_space.model import build_model

    with torch.device("meta"):
        model = build_model(arch, vocab_size)
    weights = (
        "trained weights from the search (mixnas's parameter names under `model.`)"
        if trained
        else "untrained: a seeded random initialisation (the study did not keep this trial's "
        "weights)"
    )
    text = "none (the task has no text)" if tokenizer is None else f"`{tokenizer.source}`"
    if tokenizer is not None and tokenizer.source == "byte":
        text = "bytes (token id = UTF-8 byte)"
    lines = [
        "",
        "## Architecture",
        "",
        f"- width {arch.d_model}, {len(arch.layers)} layers, {arch.norm} norm, "
        f"{'tied' if arch.tie_embeddings else 'untied'} embeddings, vocabulary {vocab_size}",
        f"- parameters: {model.num_params(non_embedding=False):,} "
        f"({model.num_params():,} without embeddings)",
        f"- architecture hash: `{arch.hash}`",
        f"- weights: {weights}",
        f"- tokenizer: {text}",
        "",
        "| layer | token mixer | channel mixer |",
        "|---|---|---|",
    ]
    for i, layer in enumerate(arch.canonical_dict()["layers"]):
        token, channel = _mixer_text(layer["token_mixer"]), _mixer_text(layer["channel_mixer"])
        lines.append(f"| {i} | {table_cell(token)} | {table_cell(channel)} |")
    return lines


def _mixer_text(mixer: Mapping[str, Any]) -> str:
    """`attention(heads=4, rope=True)`; a parallel mixer lists its branches."""
    params = dict(mixer.get("params") or {})
    if mixer["type"] == "parallel":
        branches = " + ".join(_mixer_text(b) for b in params.pop("branches"))
        return f"parallel[{branches}]({_params_text(params)})"
    return f"{mixer['type']}({_params_text(params)})" if params else mixer["type"]


def _params_text(params: Mapping[str, Any]) -> str:
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(params.items())
    )


def _objectives(study: StudyContext, metadata: Mapping[str, Any] | None) -> list[str]:
    objectives = study.objectives or []
    if not objectives:
        return []
    values = dict((metadata or {}).get("values") or {})
    lines = ["", "## Objectives", "", "| objective | direction | this trial |", "|---|---|---|"]
    for objective in objectives:
        value = values.get(objective.get("name"))
        shown = "-" if value is None else table_cell(value)
        name = table_cell(objective.get("name"))
        lines.append(f"| {name} | {objective.get('direction')} | {shown} |")
    return lines

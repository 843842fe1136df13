"""Export into the Hugging Face ecosystem (`mixnas export ... --format hf`).

The directory is what `transformers.AutoModelForCausalLM.from_pretrained(DIR,
trust_remote_code=True)` loads: config.json (model_type, auto_map, the architecture),
configuration_mixnas.py and modeling_mixnas.py (remote code), model.safetensors,
generation_config.json, a model card (README.md) and, when the study's task has one, the
tokenizer. modeling_mixnas.py comes from the same code generator as the standalone model.py, so
both formats run one copy of every primitive; transformers is an optional extra
(`pip install mixnas[hf]`) checked before anything is written.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mixnas.export.codegen import RUNTIME, CodeFile, assemble, config_dict, generate_code
from mixnas.export.exporter import (
    ExportError,
    check_target,
    weights_bytes,
    write_file,
)
from mixnas.export.hf_card import model_card
from mixnas.export.hf_tokenizer import TOKENIZER_FILES, TokenizerPlan, plan_tokenizer
from mixnas.export.sources import SourceCollector
from mixnas.search_space.architecture import Architecture

FORMATS = ("torch", "hf")
MODEL_TYPE = "mixnas"
CONFIG_MODULE, MODELING_MODULE = "configuration_mixnas", "modeling_mixnas"
CONFIG_CLASS, MODEL_CLASS = "MixnasConfig", "MixnasForCausalLM"
HF_CONFIG, HF_RUNTIME = "mixnas.export.hf_config", "mixnas.export.hf_runtime"
HF_FILES = (
    "config.json",
    f"{CONFIG_MODULE}.py",
    f"{MODELING_MODULE}.py",
    "model.safetensors",
    "generation_config.json",
    "README.md",
    *TOKENIZER_FILES,
)
DEFAULT_AUX_LOSS_COEF = 0.01  # mixnas's trainer default (evaluator/trainer.py aux_loss_coef)
CONFIGURATION = CodeFile(
    header='''"""The transformers config of a mixnas model, copied from mixnas by
`mixnas export --format hf`: the architecture as data, read by modeling_mixnas.py beside it."""''',
    roots=((HF_CONFIG, CONFIG_CLASS),),
    with_config=False,
)
MODELING = CodeFile(
    header='''"""A mixnas language model for transformers, exported by mixnas (see README.md).

    model = AutoModelForCausalLM.from_pretrained(directory, trust_remote_code=True)
    logits = model(input_ids).logits  # (batch, time) -> (batch, time, vocab_size)
    tokens = model.generate(input_ids, max_new_tokens=20)  # the layers' own state as the cache

The code below is model.py's code, copied from mixnas (the plain-torch kernel ops, the primitives
this architecture uses, the model, `build` and the step-by-step `generate`), followed by the
transformers classes: MixnasCache (the layers' decode state) and MixnasForCausalLM.
"""''',
    roots=(
        (RUNTIME, "Config"),
        (RUNTIME, "build"),
        (RUNTIME, "generate"),
        (HF_RUNTIME, "MixnasCache"),
        (HF_RUNTIME, MODEL_CLASS),
    ),
    siblings=((CONFIG_MODULE, CONFIG_CLASS),),
    with_config=False,
)


@dataclass
class StudyContext:
    """What a study adds to an export beyond the trial: its task settings (for the tokenizer),
    objectives ([{"name", "direction"}]), train settings and the study file's directory."""

    task: Mapping[str, Any] | None = None
    objectives: list[Mapping[str, Any]] | None = None
    train: Mapping[str, Any] | None = None
    base_dir: str | None = None


def check_format(fmt: str) -> None:
    """Refuse an unknown format, or `hf` without transformers installed (one line, exit 2)."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; formats: {', '.join(FORMATS)}")
    if fmt == "hf":
        try:
            import transformers  # noqa: F401
        except ImportError:
            raise ExportError(
                "--format hf needs transformers: pip install 'mixnas[hf]' (or pip install "
                "transformers)"
            ) from None


def export_hf(
    arch: Architecture,
    vocab_size: int,
    out_dir: str | os.PathLike,
    state_dict: Mapping[str, torch.Tensor] | bytes | None = None,
    force: bool = False,
    metadata: Mapping[str, Any] | None = None,
    study: StudyContext | None = None,
    tokenizer: str | os.PathLike | TokenizerPlan | None = None,
) -> list[Path]:
    """Export `arch` as a transformers model directory and return the files written.

    Args:
        arch: The architecture.
        vocab_size: The task's vocabulary size.
        out_dir: The directory to write (created when missing).
        state_dict: mixnas's own model state (tensors, or the safetensors bytes a study stored);
            without it the weights are a seeded random initialisation, and the card says so.
        force: Overwrite the exported files of an earlier export.
        metadata: The trial's record (study, trial, values, metrics) for the model card.
        study: The study's task, objectives and train settings (tokenizer, card, MoE loss).
        tokenizer: `"byte"`, a tokenizer.json path, or a plan from `plan_tokenizer`; by default
            the one the study's task implies (see `hf_tokenizer.plan_tokenizer`).

    Returns:
        The paths written, in HF_FILES order.

    Raises:
        ExportError: transformers is missing, or the weights or tokenizer do not fit the model.
        ExportExistsError: A file would be overwritten and `force` was not given.
    """
    check_format("hf")
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
        raise ExportError(f"vocab_size must be a positive integer, got {vocab_size!r}")
    study = study or StudyContext()
    out = check_target(out_dir, force, HF_FILES)
    if not isinstance(tokenizer, TokenizerPlan):
        tokenizer = plan_tokenizer(vocab_size, tokenizer, study.task, study.base_dir)
    trained = state_dict is not None
    contents = hf_files(arch, vocab_size, state_dict, study, tokenizer)
    contents["README.md"] = model_card(arch, vocab_size, trained, metadata, study, tokenizer)
    out.mkdir(parents=True, exist_ok=True)
    for name in HF_FILES:  # only reachable with force: never keep an earlier export's files
        if name not in contents and (out / name).exists():
            (out / name).unlink()
    return [write_file(out / name, contents[name]) for name in HF_FILES if name in contents]


def hf_files(
    arch: Architecture,
    vocab_size: int,
    state_dict: Mapping[str, torch.Tensor] | bytes | None,
    study: StudyContext,
    tokenizer: TokenizerPlan | None,
) -> dict[str, str | bytes]:
    """Every file of the export but the model card, by name."""
    import transformers

    from mixnas.export.hf_tokenizer import tokenizer_files

    if state_dict is None:
        state_dict = initial_weights(arch, vocab_size)
    weights = hf_weights(weights_bytes(arch, vocab_size, state_dict))
    special = {} if tokenizer is None else tokenizer.special_ids
    train = study.train or {}
    config = {
        "architectures": [MODEL_CLASS],
        "auto_map": {
            "AutoConfig": f"{CONFIG_MODULE}.{CONFIG_CLASS}",
            "AutoModelForCausalLM": f"{MODELING_MODULE}.{MODEL_CLASS}",
        },
        "model_type": MODEL_TYPE,
        **config_dict(arch, vocab_size),
        "router_aux_loss_coef": float(train.get("aux_loss_coef", DEFAULT_AUX_LOSS_COEF)),
        "tie_word_embeddings": False,
        "dtype": "float32",
        **special,
        "transformers_version": transformers.__version__,
    }
    generation = {
        "do_sample": False,
        **special,
        "transformers_version": transformers.__version__,
    }
    files: dict[str, str | bytes] = {
        "config.json": _json(config),
        f"{CONFIG_MODULE}.py": configuration_code(),
        f"{MODELING_MODULE}.py": modeling_code(arch, vocab_size),
        "model.safetensors": weights,
        "generation_config.json": _json(generation),
    }
    if tokenizer is not None:
        files.update(tokenizer_files(tokenizer))
    unknown = sorted(set(files) - set(HF_FILES))
    if unknown:  # a transformers version that writes other tokenizer files: name them here
        raise ExportError(f"the tokenizer would write files export does not know: {unknown}")
    return files


def modeling_code(arch: Architecture, vocab_size: int) -> str:
    """modeling_mixnas.py: model.py's code for `arch` plus the transformers model class."""
    return generate_code(arch, vocab_size, MODELING)


@functools.cache
def configuration_code() -> str:
    """configuration_mixnas.py: the MixnasConfig class (the same for every architecture)."""
    collector = SourceCollector()
    for module, name in CONFIGURATION.roots:
        collector.add(module, name)
    return assemble(collector, CONFIGURATION)


def hf_weights(data: bytes) -> bytes:
    """mixnas's safetensors (as a study stores them) with the keys of MixnasForCausalLM
    (`model.` + mixnas's own key) and the format tag transformers reads."""
    from safetensors.torch import load, save

    tensors = load(data)
    return save({f"model.{key}": tensors[key] for key in sorted(tensors)}, {"format": "pt"})


def initial_weights(arch: Architecture, vocab_size: int) -> dict[str, torch.Tensor]:
    """A seeded random initialisation (mixnas's own), for trials whose weights were not kept:
    transformers' from_pretrained needs a weights file."""
    from mixnas.search_space.model import build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_model(arch, vocab_size).state_dict()


def _json(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def target_files(fmt: str) -> tuple[str, ...]:
    """The files an export of format `fmt` writes (those `--force` guards)."""
    from mixnas.export.exporter import FILES

    return HF_FILES if fmt == "hf" else FILES


def study_exporter(
    fmt: str,
    vocab_sizes: set[int],
    study: StudyContext | None = None,
    tokenizer: str | os.PathLike | None = None,
) -> Callable[..., list[Path]]:
    """The function that writes one trial in format `fmt` (`export_architecture`'s arguments).

    For `hf` the tokenizer is planned (and checked) here for every vocabulary size the export
    will write, so that a bad tokenizer stops the export before its first file."""
    from mixnas.export.exporter import export_architecture

    check_format(fmt)
    if fmt == "torch":
        if tokenizer is not None:
            raise ExportError("--tokenizer goes with --format hf")
        return export_architecture
    study = study or StudyContext()
    plans = {v: plan_tokenizer(v, tokenizer, study.task, study.base_dir) for v in vocab_sizes}

    def write(arch, vocab_size, out_dir, state_dict=None, force=False, metadata=None):
        return export_hf(arch, vocab_size, out_dir, state_dict, force, metadata, study,
                         plans[vocab_size])

    return write


def study_context(
    config: Mapping[str, Any] | None,
    objectives: list[Mapping[str, Any]] | None,
    config_path: str | None = None,
) -> StudyContext:
    """A StudyContext from a study's stored config (the resolved study file) and objectives."""
    config = config or {}
    return StudyContext(
        task=config.get("task"),
        objectives=objectives,
        train=config.get("train"),
        base_dir=str(Path(config_path).parent) if config_path else None,
    )

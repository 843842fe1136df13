"""The tokenizer of a `--format hf` export: the study task's own, as transformers files.

A language model is only usable from transformers with the tokenizer it was trained with:
- a prepared LM corpus (the `lm` task with `data: DIR`, written by `mixnas data prepare`) says in
  DIR/meta.json which tokenizer made it: a BPE brings `DIR/tokenizer.json` (the `tokenizers`
  library's file), which becomes a `PreTrainedTokenizerFast` as it is; a byte corpus is bytes;
- the byte-level `lm` task (no `data`: token id = byte value, vocabulary 256) gets a byte
  tokenizer: the `tokenizers` byte-level alphabet with no merges, so that encoding text gives
  exactly its UTF-8 bytes and decoding any ids gives text (invalid UTF-8 replaced);
- synthetic tasks (MQAR, MAD) have no text, so no tokenizer.

Everything is checked (the file parses, its vocabulary fits the model) before the export writes
anything.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mixnas.export.exporter import ExportError

BYTE = "byte"
BYTE_VOCAB = 256
# special-token spellings of common BPE tokenizers, by the role transformers gives them
SPECIAL_ROLES = {
    "eos_token": ("<|endoftext|>", "</s>", "<eos>", "<|eos|>", "[EOS]", "<|end_of_text|>"),
    "bos_token": ("<s>", "<bos>", "<|bos|>", "[BOS]", "<|begin_of_text|>", "<|startoftext|>"),
    "pad_token": ("<pad>", "<|pad|>", "[PAD]"),
    "unk_token": ("<unk>", "<|unk|>", "[UNK]"),
}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


@dataclass
class TokenizerPlan:
    """A checked tokenizer to write: `tokenizer` (a tokenizers.Tokenizer), where it came from, and
    the special tokens by role ({"eos_token": "<|endoftext|>"}) with their ids."""

    tokenizer: Any
    source: str
    special: dict[str, str] = field(default_factory=dict)
    special_ids: dict[str, int] = field(default_factory=dict)


def plan_tokenizer(
    vocab_size: int,
    tokenizer: str | os.PathLike | None = None,
    task: Mapping[str, Any] | None = None,
    base_dir: str | os.PathLike | None = None,
) -> TokenizerPlan | None:
    """The tokenizer an export writes, or None.

    Args:
        vocab_size: The model's vocabulary size; the tokenizer's ids must fit in it.
        tokenizer: `"byte"`, or a tokenizer.json file (or a directory holding one); overrides
            what the task says.
        task: The study's task settings ({"name": "lm", "data": DIR, ...}); None for an
            architecture exported on its own (then a model of vocabulary 256 is taken as
            byte-level).
        base_dir: Where a relative `data` directory of the task is looked up first (the study
            file's directory); the current directory after it.

    Raises:
        ExportError: The file is missing or unreadable, or has more tokens than the model.
    """
    if tokenizer is None:
        tokenizer = _task_tokenizer(vocab_size, task, base_dir)
        if tokenizer is None:
            return None
    if str(tokenizer) == BYTE:
        if vocab_size != BYTE_VOCAB:
            raise ExportError(
                f"a byte tokenizer needs a vocabulary of {BYTE_VOCAB}, the model has {vocab_size}"
            )
        return TokenizerPlan(byte_tokenizer(), BYTE)
    return _file_plan(Path(tokenizer), vocab_size)


def _task_tokenizer(
    vocab_size: int, task: Mapping[str, Any] | None, base_dir: str | os.PathLike | None
) -> str | Path | None:
    if task is None:
        return BYTE if vocab_size == BYTE_VOCAB else None
    if task.get("name") != "lm":
        return None
    data = task.get("data")
    if data is None:
        return BYTE
    path = Path(str(data)).expanduser()
    if not path.is_absolute() and base_dir is not None and (Path(base_dir) / path).exists():
        path = Path(base_dir) / path
    described = _corpus_tokenizer(path)
    if described.get("kind") == BYTE:
        return BYTE
    return path / str(described.get("file") or "tokenizer.json")


def _corpus_tokenizer(data_dir: Path) -> dict[str, Any]:
    """The `tokenizer` entry of a prepared corpus's meta.json ({"kind": "byte"} or {"kind":
    "bpe", "file": "tokenizer.json", ...}); {} when the directory has no meta.json."""
    meta = data_dir / "meta.json"
    if not meta.is_file():
        return {}
    try:
        described = json.loads(meta.read_text()).get("tokenizer")
    except (OSError, ValueError, AttributeError) as err:
        raise ExportError(f"{meta}: not a prepared corpus's meta.json ({err})") from None
    return described if isinstance(described, dict) else {}


def _file_plan(path: Path, vocab_size: int) -> TokenizerPlan:
    from tokenizers import Tokenizer

    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise ExportError(f"{path}: no such tokenizer file")
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as err:  # tokenizers raises its own Exception type for every parse error
        detail = " ".join(str(err).split()) or type(err).__name__
        raise ExportError(f"{path}: not a tokenizers tokenizer.json: {detail}") from None
    size = tok.get_vocab_size(with_added_tokens=True)
    if size > vocab_size:
        raise ExportError(
            f"{path}: the tokenizer has {size} tokens, more than the model's vocabulary "
            f"({vocab_size})"
        )
    specials = {t.content for t in tok.get_added_tokens_decoder().values() if t.special}
    special = {}
    for role, spellings in SPECIAL_ROLES.items():
        found = [s for s in spellings if s in specials]
        if found:
            special[role] = found[0]
    ids = {f"{role}_id": tok.token_to_id(spelling) for role, spelling in special.items()}
    return TokenizerPlan(tok, str(path), special, ids)


def byte_tokenizer():
    """A tokenizers.Tokenizer whose ids are the UTF-8 bytes of the text (vocabulary 256): the
    byte-level alphabet (GPT-2's printable stand-in for each byte) as a BPE with no merges."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {char: byte for byte, char in bytes_to_unicode().items()}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    return tok


def tokenizer_files(plan: TokenizerPlan) -> dict[str, bytes]:
    """The files transformers' `save_pretrained` writes for the tokenizer, by name. Padding is on
    the right: mixnas models take no left padding."""
    from transformers import PreTrainedTokenizerFast

    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=plan.tokenizer,
        clean_up_tokenization_spaces=False,
        padding_side="right",
        **plan.special,
    )
    with tempfile.TemporaryDirectory() as tmp:
        wrapped.save_pretrained(tmp)
        return {p.name: p.read_bytes() for p in sorted(Path(tmp).iterdir()) if p.is_file()}


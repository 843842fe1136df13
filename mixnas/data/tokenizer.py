"""Tokenizers for prepared corpora: raw bytes, or a BPE from Hugging Face `tokenizers`.

A corpus is only comparable across tokenizers through bits per byte, so every tokenizer here also
knows how many bytes of text each token id stands for (`token_bytes`): 1 for every byte token, the
length of the decoded byte string for a byte-level BPE token, 0 for special tokens such as the
document separator. The spec strings users write are `byte`, `bpe:VOCAB` (a byte-level BPE
trained on the corpus) or a path to a `tokenizer.json`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mixnas.errors import DataError, first_line

EOT = "<|endoftext|>"  # the document separator of BPE corpora
MIN_BPE_VOCAB, MAX_VOCAB = 257, 1 << 24  # above the byte alphabet; ids must fit in uint32 bins


@dataclass(frozen=True)
class TokenizerSpec:
    """What the user asked for: `kind` byte | bpe (train one) | file (load a tokenizer.json)."""

    kind: str
    vocab_size: int | None = None
    path: Path | None = None

    @classmethod
    def parse(cls, text: str) -> TokenizerSpec:
        """Parse `byte`, `bpe:VOCAB` or a tokenizer.json path.

        Raises:
            DataError: the spec is none of those, or the vocabulary size is out of range.
        """
        if text == "byte":
            return cls("byte", 256)
        if text.startswith("bpe:"):
            try:
                vocab = int(text[4:].replace("_", ""))
            except ValueError:
                raise DataError(f"--tokenizer {text!r}: expected bpe:VOCAB, e.g. bpe:4096"
                                ) from None
            if not MIN_BPE_VOCAB <= vocab <= MAX_VOCAB:
                raise DataError(f"--tokenizer {text!r}: the BPE vocabulary must be between "
                                f"{MIN_BPE_VOCAB} and {MAX_VOCAB}")
            return cls("bpe", vocab)
        path = Path(text).expanduser()
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.is_file():
            raise DataError(f"--tokenizer {text!r}: expected byte, bpe:VOCAB or a tokenizer.json "
                            f"file ({path} does not exist)")
        return cls("file", None, path)


class ByteTokenizer:
    """Token id = byte value; no special tokens, documents are concatenated as they are."""

    kind = "byte"
    vocab_size = 256
    eot_id: int | None = None

    def encode_batch(self, texts: list[bytes]) -> list[np.ndarray]:
        return [np.frombuffer(t, dtype=np.uint8) for t in texts]

    def token_bytes(self) -> np.ndarray:
        return np.ones(256, dtype=np.uint16)

    def describe(self) -> dict:
        return {"kind": "byte", "vocab_size": 256, "separator": None}


class BPETokenizer:
    """A Hugging Face `tokenizers.Tokenizer`; documents are separated by the EOT token."""

    kind = "bpe"

    def __init__(self, tok, source: str, requested_vocab_size: int | None = None):
        self.tok, self.source = tok, source
        self.requested_vocab_size = requested_vocab_size  # bpe:VOCAB (a small corpus gives fewer)
        self.vocab_size = tok.get_vocab_size(with_added_tokens=True)
        self.eot_id = tok.token_to_id(EOT)

    @classmethod
    def load(cls, path: Path) -> BPETokenizer:
        """Load a tokenizer.json.

        Raises:
            DataError: the file does not parse as a `tokenizers` tokenizer.
        """
        from tokenizers import Tokenizer

        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # the Rust side raises plain Exception subclasses
            raise DataError(
                f"{path}: not a tokenizers tokenizer.json ({first_line(exc)})") from None
        if tok.get_vocab_size(with_added_tokens=True) > MAX_VOCAB:
            raise DataError(f"{path}: vocabulary larger than {MAX_VOCAB}")
        return cls(tok, str(path))

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int) -> BPETokenizer:
        """A byte-level BPE (GPT-2 style pre-tokenisation) trained on `texts`, with EOT."""
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=[EOT], min_frequency=2, show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok, f"trained: bpe:{vocab_size}", vocab_size)

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        out = []
        for enc in self.tok.encode_batch(texts, add_special_tokens=False):
            ids = enc.ids
            if self.eot_id is not None:
                ids = [*ids, self.eot_id]
            out.append(np.asarray(ids, dtype=np.uint32))
        return out

    def token_bytes(self) -> np.ndarray:
        """Bytes of text per token id: exact for byte-level BPE (the GPT-2 byte alphabet), the
        UTF-8 length of the decoded token otherwise; 0 for special tokens."""
        to_byte = {c: b for b, c in _byte_alphabet().items()}
        byte_level = "ByteLevel" in json.dumps(json.loads(self.tok.to_str()).get("decoder"))
        special = {t.content for t in self.tok.get_added_tokens_decoder().values() if t.special}
        out = np.zeros(self.vocab_size, dtype=np.uint16)
        for token, idx in self.tok.get_vocab(with_added_tokens=True).items():
            if token in special:
                continue
            if byte_level and all(c in to_byte for c in token):
                out[idx] = len(token)
            else:
                out[idx] = len(self.tok.decode([idx]).encode("utf-8"))
        return out

    def save(self, path: Path) -> None:
        self.tok.save(str(path))

    def describe(self) -> dict:
        return {"kind": "bpe", "vocab_size": self.vocab_size, "separator": EOT,
                "eot_id": self.eot_id, "source": self.source, "file": "tokenizer.json",
                "requested_vocab_size": self.requested_vocab_size}


def _byte_alphabet() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters (used by byte-level BPE)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)]
    extra = iter(range(256, 512))
    return {b: chr(b) if b in keep else chr(next(extra)) for b in range(256)}


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


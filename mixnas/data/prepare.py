"""`mixnas data prepare`: turn local text into the token files a language-model task trains on.

The output is nanoGPT's format, which users already know: `train.bin` and `val.bin` hold token ids
back to back in the smallest unsigned dtype that fits the vocabulary, read with `numpy.memmap`;
beside them `meta.json` says what they are (tokenizer, vocabulary, dtype, token and byte counts,
every source file with its SHA-256, the split rule), `token_bytes.npy` how many bytes of text each
token id stands for (for bits per byte), and `tokenizer.json` for BPE corpora.

It streams: documents are read, tokenised in batches of a few MB and appended to the bins, so a
corpus larger than memory works. It is deterministic: sources are sorted, the train/validation
split is decided by each document's content hash (a document goes to validation when its hash
falls below `val_frac`), and the BPE is trained on a hash-chosen sample, so the same inputs give
byte-identical output. Everything the user gave is checked before the first byte is written, and
output goes to a temporary directory renamed into place at the end, so a failure leaves nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mixnas.data.corpus import FORMAT, VERSION, dtype_for
from mixnas.data.sources import DEFAULT_INCLUDE, Source, documents, resolve
from mixnas.data.tokenizer import BPETokenizer, ByteTokenizer, TokenizerSpec, file_sha256
from mixnas.errors import DataError

BATCH_BYTES = 4 << 20  # documents tokenised together
BPE_SAMPLE_BYTES = 64 << 20  # text a BPE is trained on (a hash-chosen sample of the corpus)
MAX_VAL_FRAC = 0.5


@dataclass
class PrepareOptions:
    """What `mixnas data prepare` was asked to do (validated by `check`)."""

    sources: list[str]
    out: Path
    tokenizer: str = "byte"
    val_frac: float = 0.05
    max_bytes: int | None = None
    include: tuple[str, ...] = DEFAULT_INCLUDE
    exclude: tuple[str, ...] = ()
    bpe_sample_bytes: int = BPE_SAMPLE_BYTES
    force: bool = False


@dataclass
class _Split:
    """One output bin being written, with its running counts."""

    path: Path
    dtype: Any
    tokens: int = 0
    bytes: int = 0
    documents: int = 0
    handle: Any = field(default=None, repr=False)

    def write(self, ids: np.ndarray, text_bytes: int) -> None:
        self.handle.write(ids.astype(self.dtype, copy=False).tobytes())
        self.tokens += len(ids)
        self.bytes += text_bytes
        self.documents += 1


def check(options: PrepareOptions) -> tuple[TokenizerSpec, list[Source], BPETokenizer | None]:
    """Validate every option and source before anything is written.

    Raises:
        DataError: one line naming the option, file or line at fault.
    """
    if not 0 < options.val_frac <= MAX_VAL_FRAC:
        raise DataError(f"--val-frac must be in (0, {MAX_VAL_FRAC}], got {options.val_frac}")
    if options.max_bytes is not None and options.max_bytes < 1:
        raise DataError(f"--max-bytes must be a positive number of bytes, got {options.max_bytes}")
    spec = TokenizerSpec.parse(options.tokenizer)
    loaded = BPETokenizer.load(spec.path) if spec.kind == "file" else None
    sources = resolve(options.sources, options.include, options.exclude)
    if sum(s.size for s in sources) == 0:
        raise DataError(f"the sources ({len(sources)} file(s)) are empty: no text to prepare")
    out = options.out
    if out.exists() and not options.force:
        raise DataError(f"-o {out}: already exists (add --force to replace it)")
    if out.exists() and not out.is_dir():
        raise DataError(f"-o {out}: exists and is not a directory")
    parent = out.resolve().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise DataError(f"-o {out}: cannot create it ({parent} is not a writable directory)")
    return spec, sources, loaded


def prepare(options: PrepareOptions, progress: Any = None) -> dict[str, Any]:
    """Tokenise `options.sources` into `options.out`; returns the meta.json written.

    Args:
        options: sources, output directory, tokenizer spec and split settings.
        progress: optional `rich.progress.Progress`, advanced by source bytes read.

    Raises:
        DataError: bad options or sources (before anything is written), or an input problem
            found while streaming (a jsonl line without `text`; the partial output is removed).
    """
    spec, sources, loaded = check(options)
    out = options.out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        meta = _prepare_into(tmp, options, spec, sources, loaded, progress)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def _prepare_into(tmp: Path, options: PrepareOptions, spec: TokenizerSpec, sources: list[Source],
                  loaded: BPETokenizer | None, progress: Any) -> dict[str, Any]:
    tokenizer: ByteTokenizer | BPETokenizer
    if spec.kind == "byte":
        tokenizer = ByteTokenizer()
    elif spec.kind == "bpe":
        sample = _bpe_sample(sources, options, progress)
        tokenizer = BPETokenizer.train(sample, spec.vocab_size)
    else:
        tokenizer = loaded
    token_bytes = tokenizer.token_bytes()
    dtype = dtype_for(tokenizer.vocab_size)
    splits = {name: _Split(tmp / f"{name}.bin", dtype) for name in ("train", "val")}
    hashes: dict[Path, str] = {}
    task = progress.add_task("tokenising", total=sum(s.size for s in sources)) if progress else None
    with open(splits["train"].path, "wb") as ft, open(splits["val"].path, "wb") as fv:
        splits["train"].handle, splits["val"].handle = ft, fv
        batch: list[tuple[bytes, str]] = []
        for doc in _stream(sources, options.max_bytes, hashes, progress, task):
            batch.append((doc, "val" if _hash_fraction(doc) < options.val_frac else "train"))
            if sum(len(d) for d, _ in batch) >= BATCH_BYTES:
                _encode(batch, tokenizer, token_bytes, splits)
                batch = []
        _encode(batch, tokenizer, token_bytes, splits)
    if splits["train"].tokens + splits["val"].tokens == 0:
        raise DataError("the sources hold no text (every document is empty)")
    rule = {"rule": "document-hash", "val_frac": options.val_frac,
            "doc": "a document goes to val when int(sha1(document)[:8]) / 2^64 < val_frac"}
    if splits["val"].tokens == 0 or splits["train"].tokens == 0:
        rule = _split_tail(splits, options.val_frac, token_bytes)
    if isinstance(tokenizer, BPETokenizer):
        tokenizer.save(tmp / "tokenizer.json")
    np.save(tmp / "token_bytes.npy", token_bytes)
    meta = _meta(options, tokenizer, dtype, splits, rule, sources, hashes, tmp)
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return meta


def _stream(sources: list[Source], max_bytes: int | None, hashes: dict[Path, str] | None = None,
            progress: Any = None, task: Any = None) -> Iterator[bytes]:
    """Documents in source order, stopping at `max_bytes` of text; records each finished
    source's SHA-256 in `hashes`."""
    budget = max_bytes
    for source in sources:
        digest = hashlib.sha256()
        for doc in documents(source):
            if source.kind == "text":
                digest.update(doc)
            if budget is not None:
                doc = doc[:budget]
                budget -= len(doc)
            if doc:
                yield doc
            if budget == 0:
                break
        if hashes is not None:
            hashes[source.path] = (digest.hexdigest() if source.kind == "text"
                                   else file_sha256(source.path))
        if progress is not None:
            progress.advance(task, source.size)
        if budget == 0:
            return


def _hash_fraction(doc: bytes) -> float:
    """A document's position in [0, 1) by content hash: the split and the BPE sample use it."""
    return int.from_bytes(hashlib.sha1(doc).digest()[:8], "big") / 2**64


def _encode(batch: list[tuple[bytes, str]], tokenizer, token_bytes: np.ndarray,
            splits: dict[str, _Split]) -> None:
    if not batch:
        return
    if isinstance(tokenizer, ByteTokenizer):
        texts: list = [doc for doc, _ in batch]
    else:
        texts = [doc.decode("utf-8", errors="replace") for doc, _ in batch]
    for ids, (_, split) in zip(tokenizer.encode_batch(texts), batch):
        splits[split].write(ids, int(token_bytes[ids].sum()))


def _bpe_sample(sources: list[Source], options: PrepareOptions, progress: Any) -> Iterator[str]:
    """The text a BPE is trained on: every document when the corpus is small, else a sample
    chosen by content hash (deterministic, spread over the whole corpus)."""
    total = sum(s.size for s in sources)
    if options.max_bytes is not None:
        total = min(total, options.max_bytes)
    share = options.bpe_sample_bytes / max(1, total)
    task = progress.add_task("training BPE", total=None) if progress is not None else None
    for doc in _stream(sources, options.max_bytes):
        if _hash_fraction(doc[::-1]) < share:  # reversed: independent of the split's hash
            if progress is not None:
                progress.advance(task, len(doc))
            yield doc.decode("utf-8", errors="replace")


def _split_tail(splits: dict[str, _Split], val_frac: float, token_bytes: np.ndarray) -> dict:
    """Fallback for corpora of too few documents for a hash split: the stream (train then val
    documents) is cut so that its last `val_frac` of tokens is the validation set."""
    train, val = splits["train"], splits["val"]
    ids = np.concatenate([np.fromfile(train.path, dtype=train.dtype),
                          np.fromfile(val.path, dtype=val.dtype)])
    n_val = max(1, int(len(ids) * val_frac))
    if len(ids) - n_val < 1:
        raise DataError(f"the corpus has only {len(ids)} tokens: too few to split into training "
                        "and validation text")
    for split, part in ((train, ids[:-n_val]), (val, ids[-n_val:])):
        part.tofile(split.path)
        split.tokens, split.bytes = len(part), int(token_bytes[part].sum())
    docs = train.documents + val.documents
    train.documents, val.documents = docs, 0
    return {"rule": "tail", "val_frac": val_frac,
            "doc": f"{docs} document(s) were too few for a hash split: the last val_frac of the "
                   "token stream is the validation set"}


def _meta(options: PrepareOptions, tokenizer, dtype, splits: dict[str, _Split], rule: dict,
          sources: list[Source], hashes: dict[Path, str], tmp: Path) -> dict[str, Any]:
    described = tokenizer.describe()
    if isinstance(tokenizer, BPETokenizer):
        described["sha256"] = file_sha256(tmp / "tokenizer.json")
    return {
        "format": FORMAT,
        "version": VERSION,
        "tokenizer": described,
        "vocab_size": tokenizer.vocab_size,
        "dtype": np.dtype(dtype).name,
        "train": {"tokens": splits["train"].tokens, "bytes": splits["train"].bytes,
                  "documents": splits["train"].documents},
        "val": {"tokens": splits["val"].tokens, "bytes": splits["val"].bytes,
                "documents": splits["val"].documents},
        "split": rule,
        "max_bytes": options.max_bytes,
        "sources": [{"path": str(s.path), "kind": s.kind, "bytes": s.size,
                     "sha256": hashes[s.path]} for s in sources if s.path in hashes],
    }

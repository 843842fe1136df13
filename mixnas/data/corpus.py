"""A prepared corpus read back: `train.bin` / `val.bin` as `numpy.memmap`, and what they are.

Memory-mapped so that a worker samples training windows from a corpus of any size without loading
it, and so that every worker on a machine shares one copy in the page cache. `open` checks the
directory against its own `meta.json` (format, dtype, sizes), so a truncated or foreign file fails
with one line instead of training on garbage; `check_tokenizer` compares it with the tokenizer a
study expects.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mixnas.errors import DataError

FORMAT, VERSION = "mixnas-corpus", 1


def dtype_for(vocab_size: int) -> type:
    """The smallest unsigned dtype that holds every token id."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if vocab_size <= np.iinfo(dtype).max + 1:
            return dtype
    raise DataError(f"vocabulary of {vocab_size} ids does not fit in uint32")


@dataclass
class PreparedCorpus:
    """An opened corpus directory (see `mixnas.data.prepare` for how it is written)."""

    path: Path
    meta: dict[str, Any]
    train: np.memmap  # (train tokens,) token ids
    val: np.memmap  # (val tokens,)
    token_bytes: np.ndarray  # (vocab_size,) bytes of text per token id

    @property
    def vocab_size(self) -> int:
        return int(self.meta["vocab_size"])

    @property
    def tokenizer(self) -> dict[str, Any]:
        return self.meta["tokenizer"]

    @classmethod
    def open(cls, path: str | Path) -> PreparedCorpus:
        """Open a directory written by `mixnas data prepare`.

        Raises:
            DataError: the directory, meta.json or a bin is missing, of another format, or
                does not match what meta.json says.
        """
        root = Path(path).expanduser()
        meta_path = root / "meta.json"
        if not meta_path.is_file():
            raise DataError(f"data {path}: no meta.json here; write the directory with "
                            "`mixnas data prepare SRC... -o DIR`")
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("format") != FORMAT:
                raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT!r}")
            if meta.get("version") != VERSION:
                raise ValueError(f"version {meta.get('version')!r}, this mixnas reads {VERSION}")
            dtype = np.dtype(meta["dtype"])
            if dtype != np.dtype(dtype_for(int(meta["vocab_size"]))):
                raise ValueError(f"dtype {dtype} does not match vocab_size {meta['vocab_size']}")
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{meta_path}: not a prepared corpus ({exc})") from None
        bins = {name: cls._bin(root, name, dtype, meta) for name in ("train", "val")}
        token_bytes = cls._token_bytes(root, meta)
        return cls(root, meta, bins["train"], bins["val"], token_bytes)

    @staticmethod
    def _bin(root: Path, name: str, dtype: np.dtype, meta: dict) -> np.memmap:
        path = root / f"{name}.bin"
        want = int(meta[name]["tokens"])
        if not path.is_file() or path.stat().st_size != want * dtype.itemsize:
            size = path.stat().st_size if path.is_file() else "missing"
            raise DataError(f"{path}: expected {want} {dtype.name} tokens "
                            f"({want * dtype.itemsize} bytes), found {size}")
        if want == 0:
            raise DataError(f"{path}: holds no tokens")
        return np.memmap(path, dtype=dtype, mode="r")

    @staticmethod
    def _token_bytes(root: Path, meta: dict) -> np.ndarray:
        path = root / "token_bytes.npy"
        try:
            table = np.load(path)
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot read ({exc})") from None
        if table.shape != (int(meta["vocab_size"]),):
            raise DataError(f"{path}: {table.shape} entries, expected ({meta['vocab_size']},)")
        return table

    def check_tokenizer(self, expected: str) -> None:
        """Refuse a corpus made with another tokenizer than `expected` (`byte`, `bpe:VOCAB` or a
        tokenizer.json path, as in `mixnas data prepare --tokenizer`).

        Raises:
            DataError: naming both tokenizers.
        """
        from mixnas.data.tokenizer import TokenizerSpec, file_sha256

        spec = TokenizerSpec.parse(expected)
        have = self.tokenizer
        if spec.kind == "byte":
            ok = have["kind"] == "byte"
        elif spec.kind == "bpe":
            ok = have["kind"] == "bpe" and have["vocab_size"] == spec.vocab_size
        else:
            ok = have.get("sha256") == file_sha256(spec.path)
        if not ok:
            made = "byte" if have["kind"] == "byte" else f"bpe:{have['vocab_size']}"
            raise DataError(f"data {self.path}: prepared with tokenizer {made} "
                            f"({have.get('source', 'bytes')}), but the study says {expected!r}")

    def bytes_of(self, ids: np.ndarray) -> int:
        """Bytes of text the token ids stand for (0 for special tokens)."""
        return int(self.token_bytes[np.asarray(ids, dtype=np.int64)].sum())

"""Language modelling on real text: a prepared corpus, or raw bytes of local files.

With `data: DIR` the task reads a directory written by `mixnas data prepare` through
`numpy.memmap` (any tokenizer, any corpus size): training batches are random windows of
`train.bin`, the validation set is `num_val` evenly spaced windows of `val.bin`, scored on every
position. `tokenizer` (optional, e.g. `bpe:4096`) makes a study refuse a directory prepared with
another tokenizer.

Without `data` the corpus is raw bytes (vocabulary 256), so the quickstart needs no preparation
step: `files` is a path, a glob or a list of them; by default the Python standard library's own
source (`*.py` under `sysconfig.get_paths()['stdlib']`, sorted by relative path, read until
`max_bytes`), which is real, local and the same on every machine with the same Python. The last
`val_frac` of the bytes is held out.

Reports `val_loss` (nats per token), `perplexity` (per token) and `bpb`, bits per byte of the text
the validation targets stand for (each token's byte length from the corpus's tokenizer), so that
byte-level and BPE runs compare.
"""

from __future__ import annotations

import glob
import math
import sysconfig
from pathlib import Path

import numpy as np
import torch

from mixnas.evaluator.tasks.base import Predict, Split, Task, compact, split_stats

DEFAULT_CORPUS = {"files": None, "max_bytes": 2_000_000, "val_frac": 0.1}


class LanguageModel(Task):
    name = "lm"
    defaults = {
        **DEFAULT_CORPUS,
        "data": None,
        "tokenizer": None,
        "seq_len": 256,
        "num_val": 128,
    }
    metric_names = ("val_loss", "bpb", "perplexity")

    def __init__(self, **settings):
        super().__init__(**settings)
        self.seq_len = self.setting("seq_len", int, 2)
        num_val = self.setting("num_val", int, 1)
        if self.settings["data"] is None:
            train, val, token_bytes = self._raw_bytes()
        else:
            train, val, token_bytes = self._prepared()
        for part, what in ((train, "training"), (val, "held-out")):
            if len(part) <= self.seq_len + 1:
                self.fail(f"only {len(part)} {what} tokens, fewer than seq_len + 2")
        self.train_tokens = train
        starts = np.linspace(0, len(val) - self.seq_len - 1, num_val).astype(np.int64)
        windows = np.asarray(val[starts[:, None] + np.arange(self.seq_len + 1)], dtype=np.int64)
        windows = compact(torch.from_numpy(windows), self.vocab_size)
        self.test = Split(windows[:, :-1], windows[:, 1:])
        self.val_bytes = int(token_bytes[windows[:, 1:].numpy().astype(np.int64)].sum())
        if self.val_bytes == 0:
            self.fail("the validation windows hold no text bytes (only special tokens)")

    def _prepared(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from mixnas.data import PreparedCorpus

        for key, default in DEFAULT_CORPUS.items():
            if self.settings[key] != default:
                self.fail(f"setting '{key}' is for raw files; with 'data' the prepared corpus "
                          "decides (see `mixnas data prepare`)")
        data = self.settings["data"]
        if not isinstance(data, str):
            self.fail(f"setting 'data' must be a directory path, got {data!r}")
        corpus = PreparedCorpus.open(data)
        tokenizer = self.settings["tokenizer"]
        if tokenizer is not None:
            if not isinstance(tokenizer, str):
                self.fail(f"setting 'tokenizer' must be byte, bpe:VOCAB or a path, got {tokenizer!r}")
            corpus.check_tokenizer(tokenizer)
        self.vocab_size = corpus.vocab_size
        return corpus.train, corpus.val, corpus.token_bytes

    def _raw_bytes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.settings["tokenizer"] not in (None, "byte"):
            self.fail(f"tokenizer {self.settings['tokenizer']!r} needs a prepared corpus "
                      "('data: DIR' from `mixnas data prepare --tokenizer ...`)")
        max_bytes = self.setting("max_bytes", int, 1)
        val_frac = self.setting("val_frac", float)
        if not 0 < val_frac < 1:
            self.fail(f"val_frac must be between 0 and 1, got {val_frac}")
        data = np.frombuffer(self._read(max_bytes), dtype=np.uint8)
        n_val = int(len(data) * val_frac)
        self.vocab_size = 256
        return data[: len(data) - n_val], data[len(data) - n_val :], np.ones(256, np.int64)

    def _read(self, max_bytes: int) -> bytes:
        files = self.settings["files"]
        if files is None:
            root = Path(sysconfig.get_paths()["stdlib"])
            paths = sorted(root.rglob("*.py"), key=lambda p: p.relative_to(root).as_posix())
        else:
            patterns = [files] if isinstance(files, str) else files
            if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
                self.fail(
                    f"setting 'files' must be a path, a glob or a list of them, got {files!r}"
                )
            paths = []
            for pattern in patterns:
                found = sorted(glob.glob(str(Path(pattern).expanduser()), recursive=True))
                found = [Path(p) for p in found if Path(p).is_file()]
                if not found:
                    self.fail(f"no file matches {pattern!r}")
                paths += found
        chunks, total = [], 0
        for path in paths:
            chunk = path.read_bytes()[: max_bytes - total]
            chunks.append(chunk)
            total += len(chunk)
            if total >= max_bytes:
                break
        return b"".join(chunks)

    def train_batch(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """`batch_size` random windows of the training tokens: inputs and next-token targets,
        each (batch_size, seq_len) int64."""
        starts = torch.randint(
            len(self.train_tokens) - self.seq_len, (batch_size,), generator=generator
        ).numpy()
        idx = starts[:, None] + np.arange(self.seq_len + 1)
        windows = torch.from_numpy(np.asarray(self.train_tokens[idx], dtype=np.int64))
        return windows[:, :-1], windows[:, 1:]

    @torch.no_grad()
    def evaluate(self, predict: Predict, batch_size: int) -> dict[str, float]:
        loss, _ = split_stats(predict, self.test, batch_size)
        tokens = self.test.targets.numel()
        return {
            "val_loss": loss,
            "bpb": loss * tokens / (math.log(2) * self.val_bytes),
            "perplexity": math.exp(min(loss, 700.0)),
        }

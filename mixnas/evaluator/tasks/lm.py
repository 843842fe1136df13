"""Byte-level language modelling on real text read from local files.

`files` is a path, a glob or a list of them; by default the corpus is the Python standard
library's own source (`*.py` under `sysconfig.get_paths()['stdlib']`, sorted by relative path,
read until `max_bytes`), which is real, local and the same on every machine with the same Python.
The last `val_frac` of the bytes is held out. Training batches are random windows of the training
bytes; the validation set is `num_val` evenly spaced windows of the held-out bytes, scored on
every position. Reports `val_loss` (nats per byte) and `bpb` (bits per byte).
"""

from __future__ import annotations

import glob
import math
import sysconfig
from pathlib import Path

import torch

from mixnas.evaluator.tasks.base import Predict, Split, Task, split_stats


class ByteLM(Task):
    name = "lm"
    defaults = {
        "files": None,
        "max_bytes": 2_000_000,
        "seq_len": 256,
        "val_frac": 0.1,
        "num_val": 128,
    }
    metric_names = ("val_loss", "bpb")
    vocab_size = 256

    def __init__(self, **settings):
        super().__init__(**settings)
        self.seq_len = self.setting("seq_len", int, 2)
        max_bytes = self.setting("max_bytes", int, 1)
        val_frac = self.setting("val_frac", float)
        if not 0 < val_frac < 1:
            self.fail(f"val_frac must be between 0 and 1, got {val_frac}")
        data = torch.frombuffer(bytearray(self._read(max_bytes)), dtype=torch.uint8)
        n_val = int(len(data) * val_frac)
        self.train_bytes, val = data[: len(data) - n_val], data[len(data) - n_val :]
        for part, what in ((self.train_bytes, "training"), (val, "held-out")):
            if len(part) <= self.seq_len:
                self.fail(f"only {len(part)} {what} bytes, fewer than seq_len + 1")
        num_val = self.setting("num_val", int, 1)
        starts = torch.linspace(0, len(val) - self.seq_len - 1, num_val).long()
        windows = torch.stack([val[s : s + self.seq_len + 1] for s in starts.tolist()])
        self.test = Split(windows[:, :-1], windows[:, 1:])

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
        starts = torch.randint(
            len(self.train_bytes) - self.seq_len, (batch_size,), generator=generator
        )
        windows = torch.stack([self.train_bytes[s : s + self.seq_len + 1] for s in starts.tolist()])
        windows = windows.long()
        return windows[:, :-1], windows[:, 1:]

    @torch.no_grad()
    def evaluate(self, predict: Predict, batch_size: int) -> dict[str, float]:
        loss, _ = split_stats(predict, self.test, batch_size)
        return {"val_loss": loss, "bpb": loss / math.log(2)}

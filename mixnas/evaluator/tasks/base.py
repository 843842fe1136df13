"""The `Task` base: a seeded data generator plus the metrics that score a model on it.

A task owns its data (train and test splits generated in memory from `data_seed`, so every
architecture sees the same examples), the vocabulary the model is built with, and how its
predictions are scored. Targets carry `IGNORE` (-100) everywhere except at answer positions, so
loss and accuracy are computed over answers only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, NoReturn

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

IGNORE = -100

# Upper limits of task settings (by name, whichever task has them): a task builds its data when
# a study is checked, so a huge setting must be refused before it allocates anything.
SETTING_LIMITS: dict[str, int] = {
    "vocab_size": 1 << 20, "noise_vocab_size": 1 << 20, "seq_len": 1 << 16, "num_train": 1 << 20,
    "num_test": 1 << 18, "num_val": 1 << 18, "num_kv_pairs": 1 << 14, "num_keys": 1 << 14,
    "motif_size": 1 << 10, "num_tokens_to_copy": 1 << 14, "bottleneck": 1 << 16,
    "decoder_hidden": 1 << 16, "max_bytes": 1 << 40, "data_seed": (1 << 32) - 1,
}
MAX_SPLIT_TOKENS = 1 << 27  # examples x length of one generated split (1 GiB of int64)

Predict = Callable[[torch.Tensor], torch.Tensor]  # inputs (B, T) -> logits aligned with targets


@dataclass
class Split:
    """A set of examples: `inputs` (N, T) token ids and `targets` (N, T') with IGNORE."""

    inputs: torch.Tensor
    targets: torch.Tensor

    def __len__(self) -> int:
        return self.inputs.shape[0]


class Task:
    """A learning problem: subclasses declare `name`, `defaults` (every setting with its default)
    and build their splits in `__init__` from the validated settings."""

    name: ClassVar[str]
    defaults: ClassVar[dict[str, Any]]
    metric_names: ClassVar[tuple[str, ...]] = ("accuracy", "loss")
    vocab_size: int
    seq_len: int

    def __init__(self, **settings: Any):
        for key in settings:
            if key not in self.defaults:
                known = ", ".join(sorted(self.defaults))
                raise ValueError(f"task '{self.name}': unknown setting '{key}' (known: {known})")
        self.settings = {**self.defaults, **settings}

    def setting(self, key: str, kind: type = int, low: float | None = None) -> Any:
        """A setting checked for type, lower bound and `SETTING_LIMITS`; errors name the task and
        the setting."""
        value = self.settings[key]
        kinds = (int, float) if kind is float else (kind,)
        if isinstance(value, bool) != (kind is bool) or not isinstance(value, kinds):
            self.fail(f"setting '{key}' must be {kind.__name__}, got {value!r}")
        if kind is float and not math.isfinite(value):
            self.fail(f"setting '{key}' must be a finite number, got {value!r}")
        if low is not None and value < low:
            self.fail(f"setting '{key}' must be >= {low}, got {value!r}")
        high = SETTING_LIMITS.get(key)
        if high is not None and value > high:
            self.fail(f"setting '{key}' must be at most {high:,}, got {value!r}")
        return kind(value)

    def check_split_size(self, n: int, seq_len: int) -> None:
        """Refuse a split too large to generate in memory (`MAX_SPLIT_TOKENS`)."""
        if n * seq_len > MAX_SPLIT_TOKENS:
            self.fail(f"{n:,} examples of length {seq_len:,} are more than {MAX_SPLIT_TOKENS:,} "
                      "tokens in memory; lower num_train, num_test or seq_len")

    @classmethod
    def metric_names_for(cls, settings: dict[str, Any]) -> list[str]:
        """The metric names this task reports under `settings` (before building any data)."""
        return list(cls.metric_names)

    def fail(self, message: str) -> NoReturn:
        raise ValueError(f"task '{self.name}': {message}")

    # --- data ------------------------------------------------------------------------------
    train: Split
    test: Split

    def train_batch(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """A batch sampled with replacement from the training split."""
        idx = torch.randint(len(self.train), (batch_size,), generator=generator)
        return self.train.inputs[idx].long(), self.train.targets[idx].long()

    def test_splits(self) -> dict[str, Split]:
        """Named test splits; "" is the main one, others add metrics suffixed by their name."""
        return {"": self.test}

    # --- model-facing hooks -----------------------------------------------------------------
    def parts(self) -> list[Task]:
        """Tasks trained as separate models (a suite has several; a plain task is its own)."""
        return [self]

    def combine(self, metrics: list[dict[str, float]]) -> dict[str, float]:
        """Merge the metrics of `parts()` into this task's metrics."""
        return metrics[0]

    def make_head(self) -> nn.Module | None:
        """A task-owned trainable readout trained with the model (None: the model's logits)."""
        return None

    def predict(self, model: nn.Module, head: nn.Module | None, inputs: torch.Tensor):
        """Logits aligned with the targets of `inputs`."""
        return model(inputs)

    # --- scoring ----------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, predict: Predict, batch_size: int) -> dict[str, float]:
        """Loss and accuracy over the answer positions of every test split."""
        metrics: dict[str, float] = {}
        for suffix, split in self.test_splits().items():
            loss, acc = split_stats(predict, split, batch_size)
            at = f"@{suffix}" if suffix else ""
            metrics[f"accuracy{at}"] = acc
            metrics[f"loss{at}"] = loss
        return metrics


def split_stats(predict: Predict, split: Split, batch_size: int) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) over the non-ignored targets of a split."""
    loss_sum, correct, count = 0.0, 0, 0
    for start in range(0, len(split), batch_size):
        inputs = split.inputs[start : start + batch_size].long()
        targets = split.targets[start : start + batch_size].long()
        logits = predict(inputs).float()
        targets = targets.to(logits.device)
        mask = targets != IGNORE
        loss_sum += F.cross_entropy(
            logits.flatten(0, -2), targets.flatten(), ignore_index=IGNORE, reduction="sum"
        ).item()
        correct += ((logits.argmax(-1) == targets) & mask).sum().item()
        count += mask.sum().item()
    if count == 0:
        raise ValueError("test split has no answer positions")
    return loss_sum / count, correct / count


def compact(x: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Store token ids in the smallest integer dtype that holds them (and IGNORE)."""
    return x.to(torch.int16 if vocab_size <= 32767 else torch.int32)


def distinct_integers(rng: np.random.Generator, n: int, size: int, k: int) -> np.ndarray:
    """(n, k) integers drawn uniformly from range(size) without replacement within each row."""
    if k * k <= size:  # collisions are rare: redraw the rows that have one
        out = rng.integers(size, size=(n, k))
        while True:
            s = np.sort(out, axis=1)
            bad = (s[:, 1:] == s[:, :-1]).any(axis=1)
            if not bad.any():
                return out
            out[bad] = rng.integers(size, size=(int(bad.sum()), k))
    rows = max(1, (1 << 22) // size)  # random permutations, a bounded block of rows at a time
    return np.concatenate(
        [rng.random((min(rows, n - i), size)).argsort(axis=1)[:, :k] for i in range(0, n, rows)]
    )

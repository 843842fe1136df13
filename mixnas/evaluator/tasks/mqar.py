"""Multi-query associative recall (MQAR), as in the Zoology line of work.

A sequence starts with `num_kv_pairs` (key, value) pairs (distinct keys from the lower half of
the vocabulary minus id 0, values from the upper half); the rest of the sequence holds one query
per pair (the key again) at even offsets drawn without replacement with a power-law preference
for positions close to the context (p(gap) ~ gap^(power_a - 1), alpha 0.01); every other position
holds a random token (`random_non_queries`) or 0. The target at a query is its key's value;
accuracy counts only those positions. `test_seq_lens` adds test sets at other lengths (same number
of pairs) reported as `accuracy@T` / `loss@T` for length extrapolation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mixnas.evaluator.tasks.base import IGNORE, Split, Task, compact, distinct_integers


class MQAR(Task):
    name = "mqar"
    defaults = {
        "vocab_size": 8192,
        "seq_len": 64,
        "num_kv_pairs": 4,
        "power_a": 0.01,
        "random_non_queries": True,
        "num_train": 100_000,
        "num_test": 3_000,
        "test_seq_lens": [],
        "data_seed": 0,
    }

    def __init__(self, **settings):
        super().__init__(**settings)
        self.vocab_size = self.setting("vocab_size", int, 4)
        self.seq_len = self.setting("seq_len", int, 4)
        self.num_kv_pairs = self.setting("num_kv_pairs", int, 1)
        self.power_a = self.setting("power_a", float)
        if not 0 < self.power_a <= 1:
            self.fail(f"power_a must be in (0, 1], got {self.power_a}")
        self.random_non_queries = self.setting("random_non_queries", bool)
        lens = self.settings["test_seq_lens"]
        if not isinstance(lens, list) or not all(type(t) is int for t in lens) or len(lens) > 16:
            self.fail(f"setting 'test_seq_lens' must be a list of at most 16 ints, got {lens!r}")
        self.test_seq_lens = list(lens)
        n_train, n_test = self.setting("num_train", int, 1), self.setting("num_test", int, 1)
        self.check_split_size(n_train, self.seq_len)
        for seq_len in [self.seq_len, *lens]:
            self._check_length(seq_len)
            self.check_split_size(n_test, seq_len)
        seed = self.setting("data_seed", int, 0)
        self.train = self.generate(seed, 0, n_train, self.seq_len)
        self.test = self.generate(seed, 1, n_test, self.seq_len)
        self.extra = {str(t): self.generate(seed, 2 + i, n_test, t) for i, t in enumerate(lens)}

    def _check_length(self, seq_len: int) -> None:
        n_keys = self.vocab_size // 2 - 1
        if self.num_kv_pairs > n_keys:
            self.fail(
                f"num_kv_pairs {self.num_kv_pairs} exceeds the {n_keys} keys of vocab "
                f"{self.vocab_size}"
            )
        if (seq_len - 2 * self.num_kv_pairs) // 2 < self.num_kv_pairs:
            self.fail(f"seq_len {seq_len} is too short for {self.num_kv_pairs} pairs and queries")

    def test_splits(self) -> dict[str, Split]:
        return {"": self.test, **self.extra}

    @classmethod
    def metric_names_for(cls, settings: dict[str, Any]) -> list[str]:
        lens = settings.get("test_seq_lens", [])
        return [*cls.metric_names, *(f"{m}@{t}" for t in lens for m in cls.metric_names)]

    def generate(self, seed: int, stream: int, n: int, seq_len: int) -> Split:
        rng = np.random.default_rng([seed, stream])
        V, K = self.vocab_size, self.num_kv_pairs
        half = V // 2
        keys = 1 + distinct_integers(rng, n, half - 1, K)
        values = rng.integers(half, V, size=(n, K))
        context = np.stack([keys, values], axis=2).reshape(n, 2 * K)
        # Query slots are the even offsets after the context; slot g is drawn with weight g^(a-1).
        space = (seq_len - 2 * K) // 2
        weight = np.arange(1, space + 1, dtype=np.float64) ** (self.power_a - 1)
        slots = _weighted_distinct(rng, n, space, K, weight)
        rest = np.zeros((n, seq_len - 2 * K), dtype=np.int64)
        np.put_along_axis(rest, 2 * slots, keys, 1)
        inputs = np.concatenate([context, rest], axis=1)
        if self.random_non_queries:
            filler = rng.integers(V, size=inputs.shape)
            inputs = np.where(inputs == 0, filler, inputs)
        targets = np.full((n, seq_len), IGNORE, dtype=np.int64)
        np.put_along_axis(targets, 2 * K + 2 * slots, values, 1)
        return Split(compact(torch.from_numpy(inputs), V), compact(torch.from_numpy(targets), V))


def _weighted_distinct(
    rng: np.random.Generator, n: int, size: int, k: int, weight: np.ndarray
) -> np.ndarray:
    """Per row, k distinct indices of range(size) drawn without replacement with the given
    weights (Gumbel top-k, equivalent to sequential weighted sampling without replacement)."""
    scores = np.log(weight) + rng.gumbel(size=(n, size))
    return np.argsort(-scores, axis=1)[:, :k]

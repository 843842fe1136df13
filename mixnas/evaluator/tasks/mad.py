"""The six Mechanistic Architecture Design (MAD) synthetic tasks and the `mad` suite.

Defaults are MAD's baseline settings (vocabulary, sequence length, 12,800 training and 1,280 test
examples); the "harder" settings are the same knobs turned up. Every task is next-token
prediction with targets only at answer positions. The token layouts are ours:

- in-context recall: keys are the first half of the vocabulary, values the second half. Each
  sequence draws its own random key->value map and is a run of (key, value) pairs with keys drawn
  uniformly; every key that already appeared earlier in the sequence is a query (its value is the
  target), so a sequence holds several queries.
- noisy in-context recall: as above, but the last `noise_vocab_size` ids are noise tokens and a
  `frac_noise` fraction of the positions are noise tokens inserted between pairs.
- fuzzy in-context recall: keys and values are motifs of `motif_size` tokens; each sequence has
  `num_keys` distinct key motifs with random value motifs; every value token of a repeated key is
  a target. The last id is a filler that pads the sequence where pairs do not fit exactly.
- selective copying: `num_tokens_to_copy` data tokens scattered among blanks (id 0), then a copy
  marker (id 1); the targets are the data tokens in order, teacher-forced after the marker.
- compression: a causal version of MAD's encoder-decoder bottleneck. The model reads
  `seq_len - 1` random tokens and a marker; its output logits at the marker, a vector of
  `bottleneck` numbers (the model's vocabulary is widened to `bottleneck` ids that never occur
  as inputs, so this is a learned linear read-out of the last hidden state), are the only thing a
  small task-owned MLP decoder sees when it reconstructs every token from its position. Attention
  cannot look back past the bottleneck, because the decoder never runs the model again.
- memorization: one fixed key->value map for the whole task (drawn from `data_seed`), sequences
  of (key, value) pairs with no useful context; every value is a target.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from mixnas.evaluator.tasks.base import IGNORE, Split, Task, compact, distinct_integers

MAD_TRAIN, MAD_TEST = 12_800, 1_280


class MadTask(Task):
    """Shared plumbing: seeded train/test generation through `generate(rng, n)`."""

    def __init__(self, **settings):
        super().__init__(**settings)
        self.seq_len = self.setting("seq_len", int, 2)
        self.vocab_size = self.setting("vocab_size", int, 2)
        self.check()
        seed = self.setting("data_seed", int, 0)
        self.train = self.generate(np.random.default_rng([seed, 0]), self.num_examples("num_train"))
        self.test = self.generate(np.random.default_rng([seed, 1]), self.num_examples("num_test"))

    def num_examples(self, key: str) -> int:
        n = self.setting(key, int, 1)
        self.check_split_size(n, self.seq_len)
        return n

    def check(self) -> None:
        """Validate the settings that depend on each other."""

    def generate(self, rng: np.random.Generator, n: int) -> Split:
        raise NotImplementedError

    def split(self, inputs: np.ndarray, targets: np.ndarray) -> Split:
        vocab = self.vocab_size
        return Split(
            compact(torch.from_numpy(inputs), vocab), compact(torch.from_numpy(targets), vocab)
        )


class _PairRecall(MadTask):
    """Sequences of (key motif, value motif) pairs with optional single filler tokens between
    pairs; the subclasses choose the vocabulary layout, the map and which pairs are queries."""

    fixed_map = False

    @property
    def motif(self) -> int:
        return 1

    def layout(self) -> tuple[int, int, int]:
        """(number of key tokens, number of value tokens, number of filler tokens)."""
        half = self.vocab_size // 2
        return half, self.vocab_size - half, 0

    def frac_fill(self) -> float:
        return 0.0

    def num_keys(self) -> int:
        return self.layout()[0]

    def check(self) -> None:
        n_key, n_value, n_fill = self.layout()
        if n_key < 1 or n_value < 1:
            self.fail(f"vocab_size {self.vocab_size} leaves no key or value tokens")
        if self.num_keys() > n_key**self.motif:
            self.fail(f"num_keys {self.num_keys()} exceeds the {n_key**self.motif} key motifs")
        n_noise = round(self.frac_fill() * self.seq_len)
        pairs = (self.seq_len - n_noise) // (2 * self.motif)
        if pairs < 2:
            self.fail(f"seq_len {self.seq_len} holds fewer than two pairs")
        if self.seq_len - n_noise - pairs * 2 * self.motif and not n_fill:
            self.fail(f"seq_len {self.seq_len} must be a multiple of {2 * self.motif}")

    def generate(self, rng: np.random.Generator, n: int) -> Split:
        m, T = self.motif, self.seq_len
        n_key, n_value, n_fill_tokens = self.layout()
        fill_lo = n_key + n_value
        nk = self.num_keys()
        n_noise = round(self.frac_fill() * T)
        P = (T - n_noise) // (2 * m)
        n_fill = T - 2 * m * P  # noise plus whatever pairs leave over
        # Key motifs (distinct within a map) and their value motifs.
        maps = 1 if self.fixed_map else n
        map_rng = np.random.default_rng([self.settings["data_seed"], 2]) if self.fixed_map else rng
        key_motifs = _distinct_motifs(map_rng, maps, nk, m, n_key)
        value_motifs = n_key + map_rng.integers(n_value, size=(maps, nk, m))
        key_motifs = np.broadcast_to(key_motifs, (n, nk, m))
        value_motifs = np.broadcast_to(value_motifs, (n, nk, m))
        kidx = rng.integers(nk, size=(n, P))
        keys = np.take_along_axis(key_motifs, kidx[..., None], axis=1)  # (n, P, m)
        values = np.take_along_axis(value_motifs, kidx[..., None], axis=1)
        # Random interleaving of P pair units (2m tokens) and n_fill filler units (1 token).
        U = P + n_fill
        is_fill = rng.random((n, U)).argsort(axis=1) < n_fill
        unit_len = np.where(is_fill, 1, 2 * m)
        starts = np.cumsum(unit_len, axis=1) - unit_len
        pair_starts = starts[~is_fill].reshape(n, P)
        seq = np.empty((n, T), dtype=np.int64)
        if n_fill:
            fill_starts = starts[is_fill].reshape(n, n_fill)
            np.put_along_axis(
                seq, fill_starts, fill_lo + rng.integers(n_fill_tokens, size=(n, n_fill)), 1
            )
        offs = np.arange(m)
        key_pos = (pair_starts[..., None] + offs).reshape(n, P * m)
        value_pos = key_pos + m
        np.put_along_axis(seq, key_pos, keys.reshape(n, P * m), 1)
        np.put_along_axis(seq, value_pos, values.reshape(n, P * m), 1)
        # A value token is a target (predicted one position earlier) when its pair is a query.
        query = np.ones((n, P), bool) if self.fixed_map else _repeated(kidx)
        targets = np.full((n, T), IGNORE, dtype=np.int64)
        q = np.repeat(query, m, axis=1)
        rows = np.nonzero(q)[0]
        targets[rows, (value_pos - 1)[q]] = values.reshape(n, P * m)[q]
        return self.split(seq, targets)


class InContextRecall(_PairRecall):
    name = "in_context_recall"
    defaults = {
        "vocab_size": 16,
        "seq_len": 128,
        "num_train": MAD_TRAIN,
        "num_test": MAD_TEST,
        "data_seed": 0,
    }


class NoisyInContextRecall(_PairRecall):
    name = "noisy_in_context_recall"
    defaults = {
        "vocab_size": 32,
        "noise_vocab_size": 16,
        "frac_noise": 0.2,
        "seq_len": 128,
        "num_train": MAD_TRAIN,
        "num_test": MAD_TEST,
        "data_seed": 0,
    }

    def layout(self) -> tuple[int, int, int]:
        noise = self.setting("noise_vocab_size", int, 1)
        half = (self.vocab_size - noise) // 2
        return half, self.vocab_size - noise - half, noise

    def frac_fill(self) -> float:
        frac = self.setting("frac_noise", float, 0.0)
        if frac >= 1:
            self.fail(f"frac_noise must be below 1, got {frac}")
        return frac


class FuzzyInContextRecall(_PairRecall):
    name = "fuzzy_in_context_recall"
    defaults = {
        "vocab_size": 16,
        "seq_len": 128,
        "motif_size": 3,
        "num_keys": 8,
        "num_train": MAD_TRAIN,
        "num_test": MAD_TEST,
        "data_seed": 0,
    }

    @property
    def motif(self) -> int:
        return self.setting("motif_size", int, 1)

    def layout(self) -> tuple[int, int, int]:
        half = (self.vocab_size - 1) // 2
        return half, self.vocab_size - 1 - half, 1

    def num_keys(self) -> int:
        return self.setting("num_keys", int, 1)


class Memorization(_PairRecall):
    name = "memorization"
    defaults = {
        "vocab_size": 256,
        "seq_len": 32,
        "num_train": 256,
        "num_test": MAD_TEST,
        "data_seed": 0,
    }
    fixed_map = True


class SelectiveCopying(MadTask):
    name = "selective_copying"
    defaults = {
        "vocab_size": 16,
        "seq_len": 256,
        "num_tokens_to_copy": 16,
        "num_train": MAD_TRAIN,
        "num_test": MAD_TEST,
        "data_seed": 0,
    }
    BLANK, MARK = 0, 1

    def check(self) -> None:
        n = self.setting("num_tokens_to_copy", int, 1)
        if self.vocab_size < 3:
            self.fail("vocab_size must be >= 3 (blank, marker and data tokens)")
        if 2 * n + 1 > self.seq_len:
            self.fail(f"seq_len {self.seq_len} is too short to copy {n} tokens")

    def generate(self, rng: np.random.Generator, n: int) -> Split:
        k = self.settings["num_tokens_to_copy"]
        T = self.seq_len
        C = T - k  # context length; then the marker and k - 1 teacher-forced tokens
        pos = np.sort(rng.random((n, C)).argsort(axis=1)[:, :k], axis=1)
        data = rng.integers(2, self.vocab_size, size=(n, k))
        seq = np.full((n, T + 1), self.BLANK, dtype=np.int64)
        np.put_along_axis(seq, pos, data, 1)
        seq[:, C] = self.MARK
        seq[:, C + 1 :] = data
        targets = np.full((n, T), IGNORE, dtype=np.int64)
        targets[:, C:] = data
        return self.split(seq[:, :T], targets)


class Compression(MadTask):
    name = "compression"
    defaults = {
        "vocab_size": 16,
        "seq_len": 32,
        "bottleneck": 128,
        "decoder_hidden": 128,
        "num_train": MAD_TRAIN,
        "num_test": MAD_TEST,
        "data_seed": 0,
    }

    def __init__(self, **settings):
        super().__init__(**settings)
        self.vocab_size = max(self.setting("bottleneck", int, 2), self.data_vocab + 1)

    @property
    def data_vocab(self) -> int:
        return self.settings["vocab_size"]

    def generate(self, rng: np.random.Generator, n: int) -> Split:
        data = rng.integers(self.data_vocab, size=(n, self.seq_len - 1))
        marker = np.full((n, 1), self.data_vocab)  # the id right after the data tokens
        return self.split(np.concatenate([data, marker], axis=1), data)

    def make_head(self) -> nn.Module:
        hidden = self.setting("decoder_hidden", int, 1)
        return BottleneckDecoder(self.vocab_size, self.seq_len - 1, hidden, self.data_vocab)

    def predict(self, model, head, inputs):
        return head(model(inputs)[:, -1])


class BottleneckDecoder(nn.Module):
    """Reconstructs token i from the bottleneck vector and a learned embedding of position i."""

    def __init__(self, width: int, length: int, hidden: int, vocab: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.proj = nn.Linear(width, hidden)
        self.pos = nn.Parameter(torch.randn(length, hidden) * 0.02)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.proj(self.norm(z.float()))[:, None, :] + self.pos
        return self.out(F.gelu(h))


def _distinct_motifs(rng, n: int, nk: int, m: int, n_tokens: int) -> np.ndarray:
    """(n, nk, m) motifs over `n_tokens` ids, distinct within each row."""
    codes = distinct_integers(rng, n, n_tokens**m, nk)
    return (codes[..., None] // n_tokens ** np.arange(m)) % n_tokens


def _repeated(kidx: np.ndarray) -> np.ndarray:
    """True where a row's key index already occurred earlier in that row."""
    order = np.argsort(kidx, axis=1, kind="stable")
    s = np.take_along_axis(kidx, order, axis=1)
    seen_sorted = np.concatenate([np.zeros((len(s), 1), bool), s[:, 1:] == s[:, :-1]], axis=1)
    seen = np.empty_like(seen_sorted)
    np.put_along_axis(seen, order, seen_sorted, 1)
    return seen

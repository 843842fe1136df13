"""Every task generator checked against its definition, example by example."""

import math

import pytest
import torch

from mixnas.evaluator import TASKS, get_task, task_metric_names
from mixnas.evaluator.tasks import IGNORE

SMALL = {"num_train": 64, "num_test": 32}


def rows(split):
    return zip(split.inputs.long().tolist(), split.targets.long().tolist())


def check_pair_recall(task, keys, values, noise=(), motif=1, fixed_map=None):
    """Sequences are (key motif, value motif) pairs among single noise/filler tokens; each value
    token of a repeated key (every key when `fixed_map`) is the target one position earlier."""
    n_queries = 0
    for split in (task.train, task.test):
        for x, y in rows(split):
            assert len(x) == len(y) == task.seq_len
            kept = [(t, tok) for t, tok in enumerate(x) if tok not in noise]
            assert len(kept) % (2 * motif) == 0
            bound, seen, expected = {}, set(), {}
            for i in range(0, len(kept), 2 * motif):
                unit = kept[i : i + 2 * motif]
                key = tuple(tok for _, tok in unit[:motif])
                value = tuple(tok for _, tok in unit[motif:])
                assert all(k in keys for k in key) and all(v in values for v in value)
                # tokens of a pair are adjacent: noise only falls between pairs
                assert [t for t, _ in unit] == list(range(unit[0][0], unit[0][0] + 2 * motif))
                if fixed_map is not None:
                    assert fixed_map[key] == value
                else:
                    assert bound.setdefault(key, value) == value  # one map per sequence
                if fixed_map is not None or key in seen:
                    for t, tok in unit[motif:]:
                        expected[t - 1] = tok
                seen.add(key)
            got = {t: tok for t, tok in enumerate(y) if tok != IGNORE}
            assert got == expected
            n_queries += len(got)
    assert n_queries > 0


def test_in_context_recall_matches_definition():
    task = get_task("in_context_recall", **SMALL)
    assert (task.vocab_size, task.seq_len) == (16, 128)
    check_pair_recall(task, keys=range(8), values=range(8, 16))


def test_noisy_in_context_recall_matches_definition():
    task = get_task("noisy_in_context_recall", seq_len=64, frac_noise=0.4, **SMALL)
    noise = set(range(16, 32))
    check_pair_recall(task, keys=range(8), values=range(8, 16), noise=noise)
    for x, _ in rows(task.test):
        n_noise = sum(tok in noise for tok in x)
        assert n_noise >= round(0.4 * 64) and (64 - n_noise) % 2 == 0


def test_fuzzy_in_context_recall_matches_definition():
    task = get_task("fuzzy_in_context_recall", seq_len=64, num_keys=4, **SMALL)
    check_pair_recall(task, keys=range(7), values=range(7, 15), noise={15}, motif=3)
    for x, _ in rows(task.test):
        motifs = {
            tuple(x[t : t + 3]) for t in range(len(x) - 2) if all(v < 7 for v in x[t : t + 3])
        }
        assert len(motifs) <= 4  # at most num_keys distinct key motifs per sequence


def test_memorization_uses_one_fixed_map():
    task = get_task("memorization", vocab_size=32, seq_len=16, **SMALL)
    first = {}
    for x, _ in rows(task.train):
        for k, v in zip(x[::2], x[1::2]):
            first.setdefault((k,), (v,))
    assert len(first) == 16  # 64 sequences of 8 pairs cover all 16 keys
    check_pair_recall(task, keys=range(16), values=range(16, 32), fixed_map=first)


def test_selective_copying_targets_are_the_non_blank_tokens_in_order():
    task = get_task("selective_copying", seq_len=48, num_tokens_to_copy=8, **SMALL)
    for x, y in rows(task.test):
        context, marker = x[:40], x[40]
        assert marker == 1 and 1 not in context
        data = [tok for tok in context if tok != 0]
        assert len(data) == 8 and all(2 <= tok < 16 for tok in data)
        assert [tok for tok in y if tok != IGNORE] == data
        assert all(tok == IGNORE for tok in y[:40])
        assert x[41:] == data[:-1]  # teacher forcing after the marker


def test_compression_reconstructs_from_the_marker_only():
    task = get_task("compression", seq_len=12, bottleneck=32, **SMALL)
    assert task.vocab_size == 32 and task.data_vocab == 16
    x, y = task.test.inputs.long(), task.test.targets.long()
    assert torch.equal(x[:, :-1], y) and (x[:, -1] == 16).all() and (y < 16).all()
    head = task.make_head()
    last = torch.randn(32)

    def model(tokens):  # noise everywhere but at the last position
        out = torch.randn(*tokens.shape, 32)
        out[:, -1] = last
        return out

    logits = task.predict(model, head, x[:3])
    assert logits.shape == (3, 11, 16)
    assert torch.equal(logits, task.predict(model, head, x[:3]))  # only the bottleneck counts


def test_mqar_answers_are_the_values_bound_earlier():
    task = get_task("mqar", vocab_size=64, seq_len=64, num_kv_pairs=8, test_seq_lens=[128], **SMALL)
    for split, T in ((task.train, 64), (task.test, 64), (task.extra["128"], 128)):
        assert split.inputs.shape == (len(split), T)
        for x, y in rows(split):
            context = dict(zip(x[0:16:2], x[1:16:2]))
            assert len(context) == 8  # distinct keys
            assert all(1 <= k < 32 for k in context) and all(32 <= v < 64 for v in context.values())
            answers = {t: tok for t, tok in enumerate(y) if tok != IGNORE}
            assert sorted(x[t] for t in answers) == sorted(context)  # each key queried once
            for t, tok in answers.items():
                assert t >= 16 and (t - 16) % 2 == 0 and context[x[t]] == tok


def test_mqar_power_law_prefers_queries_near_the_context():
    def mean_offset(power_a):
        task = get_task(
            "mqar",
            vocab_size=64,
            seq_len=256,
            num_kv_pairs=4,
            power_a=power_a,
            num_train=1,
            num_test=2000,
        )
        positions = (task.test.targets != IGNORE).nonzero()[:, 1].float()
        return positions.mean().item()

    assert mean_offset(0.01) < mean_offset(1.0) - 30  # 1.0 is uniform over the slots


def test_mqar_without_random_filler_is_zero_padded():
    task = get_task(
        "mqar", vocab_size=64, seq_len=32, num_kv_pairs=4, random_non_queries=False, **SMALL
    )
    x, y = task.test.inputs.long(), task.test.targets.long()
    query = y != IGNORE
    assert (x[:, 8:][~query[:, 8:]] == 0).all()


def test_lm_reads_files_splits_and_shifts(tmp_path):
    (tmp_path / "a.txt").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "b.txt").write_bytes(b"hello world " * 40)
    task = get_task("lm", files=str(tmp_path / "*.txt"), seq_len=32, val_frac=0.25, num_val=4)
    assert task.vocab_size == 256 and len(task.train_tokens) == 1024 + 480 - 376
    assert torch.equal(task.test.inputs[:, 1:], task.test.targets[:, :-1])
    x, y = task.train_batch(8, torch.Generator().manual_seed(0))
    assert x.shape == (8, 32) and torch.equal(x[:, 1:], y[:, :-1])
    metrics = task.evaluate(lambda t: torch.zeros(*t.shape, 256), 2)
    assert metrics["val_loss"] == pytest.approx(math.log(256), rel=1e-5)
    assert metrics["bpb"] == pytest.approx(8.0, rel=1e-5)


def test_lm_default_corpus_is_the_stdlib():
    task = get_task("lm", max_bytes=50_000, seq_len=64, num_val=8)
    assert len(task.train_tokens) == 45_000
    assert b"import" in task.train_tokens.tobytes()


def test_generators_are_deterministic_by_data_seed():
    for name, settings in [
        ("in_context_recall", SMALL),
        ("mqar", {"vocab_size": 64, **SMALL}),
        ("selective_copying", SMALL),
    ]:
        a, b = get_task(name, **settings), TASKS[name](**settings)
        assert torch.equal(a.train.inputs, b.train.inputs)
        c = TASKS[name](**settings, data_seed=1)
        assert not torch.equal(a.train.inputs, c.train.inputs)


def test_bad_task_names_and_settings_are_named():
    with pytest.raises(ValueError, match="unknown task 'x'; known: "):
        get_task("x")
    with pytest.raises(ValueError, match="task 'mqar': unknown setting 'foo'"):
        get_task("mqar", foo=1)
    with pytest.raises(ValueError, match="task 'mqar': setting 'seq_len' must be int"):
        get_task("mqar", seq_len="long")
    with pytest.raises(ValueError, match="num_kv_pairs 40 exceeds"):
        get_task("mqar", vocab_size=64, num_kv_pairs=40)
    with pytest.raises(ValueError, match="task 'mad': unknown task 'recall'"):
        get_task("mad", tasks=["recall"])


def test_metric_names_follow_settings():
    assert task_metric_names("mqar") == ["accuracy", "loss"]
    assert "accuracy@256" in task_metric_names("mqar", test_seq_lens=[256])
    assert task_metric_names("lm") == ["val_loss", "bpb", "perplexity"]
    assert "compression.accuracy" in task_metric_names("mad")


def test_mad_suite_builds_each_task_with_overrides():
    suite = get_task(
        "mad",
        tasks=["selective_copying", "memorization"],
        selective_copying={"seq_len": 32, "num_tokens_to_copy": 4, **SMALL},
        memorization={"num_test": 32},
    )
    parts = suite.parts()
    assert [p.name for p in parts] == ["selective_copying", "memorization"]
    assert parts[0].seq_len == 32 and suite.vocab_size == 256
    combined = suite.combine([{"accuracy": 1.0, "loss": 0.0}, {"accuracy": 0.5, "loss": 2.0}])
    assert combined["accuracy"] == 0.75 and combined["memorization.loss"] == 2.0

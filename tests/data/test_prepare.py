"""`mixnas data prepare` and prepared corpora: formats, determinism, streaming, bad input."""

from __future__ import annotations

import hashlib
import importlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

from mixnas.cli import main
from mixnas.data import PreparedCorpus, PrepareOptions, dtype_for, prepare
from mixnas.errors import DataError

prepare_module = importlib.import_module("mixnas.data.prepare")  # the package exports the function

WORDS = ("the model reads text and learns which token comes next; attention recalls, "
         "recurrences compress, convolutions smooth. ").split()


def write_docs(root: Path, n: int = 40, seed: int = 0) -> Path:
    """`n` small text documents with some repeated structure (so a BPE has merges to learn)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        words = rng.choice(WORDS, size=int(rng.integers(50, 200)))
        (root / f"doc{i:03d}.txt").write_text(f"# document {i}\n" + " ".join(words) + "\n")
    return root


def digest(path: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir())}


def test_byte_corpus_of_a_small_file(tmp_path):
    src = tmp_path / "small.txt"
    text = b"hello world\nthis is a small corpus, split by its tail\n" * 5
    src.write_bytes(text)
    meta = prepare(PrepareOptions([str(src)], tmp_path / "out", val_frac=0.1))
    corpus = PreparedCorpus.open(tmp_path / "out")
    assert meta["dtype"] == "uint8" and corpus.vocab_size == 256
    assert meta["split"]["rule"] == "tail"  # one document: too few for a hash split
    joined = np.concatenate([corpus.train, corpus.val]).tobytes()
    assert joined == text
    assert meta["train"]["bytes"] + meta["val"]["bytes"] == len(text)
    assert meta["val"]["tokens"] == int(len(text) * 0.1)
    assert meta["sources"] == [{"path": str(src.resolve()), "kind": "text", "bytes": len(text),
                                "sha256": hashlib.sha256(text).hexdigest()}]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "meta.json", "token_bytes.npy", "train.bin", "val.bin"]


def test_bpe_corpus_is_deterministic_and_counts_bytes(tmp_path):
    docs = write_docs(tmp_path / "docs")
    outs = []
    for i in range(2):
        out = tmp_path / f"out{i}"
        prepare(PrepareOptions([str(docs)], out, tokenizer="bpe:300", val_frac=0.2))
        outs.append(out)
    assert digest(outs[0]) == digest(outs[1])  # same inputs, same bytes out
    corpus = PreparedCorpus.open(outs[0])
    meta = corpus.meta
    assert meta["tokenizer"]["kind"] == "bpe" and corpus.vocab_size == 300
    assert meta["dtype"] == "uint16" and meta["split"]["rule"] == "document-hash"
    assert meta["train"]["documents"] + meta["val"]["documents"] == 40
    assert 0 < meta["val"]["documents"] < 40
    # every token's byte length is exact: the bins' bytes add up to the documents' text
    total = sum(p.stat().st_size for p in docs.iterdir())
    assert corpus.bytes_of(corpus.train) + corpus.bytes_of(corpus.val) == total
    assert meta["train"]["bytes"] + meta["val"]["bytes"] == total
    eot = meta["tokenizer"]["eot_id"]
    assert int((corpus.train == eot).sum() + (corpus.val == eot).sum()) == 40  # one per document
    assert (total / (meta["train"]["tokens"] + meta["val"]["tokens"])) > 1.5  # BPE compresses


def test_loaded_tokenizer_json_gives_the_same_ids(tmp_path):
    docs = write_docs(tmp_path / "docs", n=12)
    prepare(PrepareOptions([str(docs)], tmp_path / "a", tokenizer="bpe:280"))
    prepare(PrepareOptions([str(docs)], tmp_path / "b",
                           tokenizer=str(tmp_path / "a" / "tokenizer.json")))
    a, b = PreparedCorpus.open(tmp_path / "a"), PreparedCorpus.open(tmp_path / "b")
    assert np.array_equal(a.train, b.train) and np.array_equal(a.val, b.val)
    b.check_tokenizer(str(tmp_path / "a" / "tokenizer.json"))
    b.check_tokenizer("bpe:280")


def test_streaming_in_small_batches_gives_the_same_bins(tmp_path, monkeypatch):
    docs = write_docs(tmp_path / "docs", n=20)
    prepare(PrepareOptions([str(docs)], tmp_path / "big", tokenizer="bpe:280"))
    monkeypatch.setattr(prepare_module, "BATCH_BYTES", 64)
    prepare(PrepareOptions([str(docs)], tmp_path / "small", tokenizer="bpe:280"))
    assert digest(tmp_path / "big") == digest(tmp_path / "small")


def test_jsonl_documents_and_max_bytes(tmp_path):
    src = tmp_path / "c.jsonl"
    src.write_text("\n".join(json.dumps({"text": f"record {i} " * 20, "id": i})
                             for i in range(30)) + "\n")
    meta = prepare(PrepareOptions([str(src)], tmp_path / "out", max_bytes=1000))
    assert meta["train"]["bytes"] + meta["val"]["bytes"] == 1000
    assert meta["sources"][0]["kind"] == "jsonl"


def test_globs_and_directories_are_sorted_and_deduplicated(tmp_path):
    docs = write_docs(tmp_path / "docs", n=5)
    (docs / "skip.bin").write_bytes(b"\x00\x01")
    meta = prepare(PrepareOptions([str(docs / "*.txt"), str(docs), str(docs / "doc001.txt")],
                                  tmp_path / "out"))
    paths = [s["path"] for s in meta["sources"]]
    assert paths == sorted(paths) and len(paths) == 5


@pytest.mark.parametrize("vocab,dtype", [(256, np.uint8), (257, np.uint16), (65536, np.uint16),
                                         (65537, np.uint32)])
def test_smallest_unsigned_dtype(vocab, dtype):
    assert dtype_for(vocab) is dtype


def bad_cases(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    good = tmp_path / "good.txt"
    good.write_text("some text " * 50)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    no_text = tmp_path / "bad.jsonl"
    no_text.write_text(json.dumps({"text": "fine"}) + "\n" + json.dumps({"body": "x"}) + "\n")
    not_json = tmp_path / "broken.jsonl"
    not_json.write_text('{"text": "ok"}\n{"text": \n')
    bad_tok = tmp_path / "tokenizer.json"
    bad_tok.write_text("{not json")
    out = str(tmp_path / "out")
    return {
        "missing file": ([str(tmp_path / "nope.txt"), "-o", out], "nope.txt"),
        "empty corpus": ([str(empty), "-o", out], "empty"),
        "jsonl line without text": ([str(no_text), "-o", out], "bad.jsonl:2"),
        "jsonl line not json": ([str(not_json), "-o", out], "broken.jsonl:2"),
        "tokenizer json": ([str(good), "-o", out, "--tokenizer", str(bad_tok)], "tokenizer.json"),
        "bpe vocab": ([str(good), "-o", out, "--tokenizer", "bpe:12"], "bpe:12"),
        "tokenizer spec": ([str(good), "-o", out, "--tokenizer", "wordpiece"], "wordpiece"),
        "val frac": ([str(good), "-o", out, "--val-frac", "0.9"], "--val-frac"),
        "max bytes": ([str(good), "-o", out, "--max-bytes", "0"], "positive"),
        "output is a file": ([str(good), "-o", str(good), "--force"], "not a directory"),
    }


BAD_CASES = ["missing file", "empty corpus", "jsonl line without text", "jsonl line not json",
             "tokenizer json", "bpe vocab", "tokenizer spec", "val frac", "max bytes",
             "output is a file"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_is_one_line_exit_2_nothing_written(case, tmp_path, capsys):
    args, needle = bad_cases(tmp_path)[case]
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["data", "prepare", *args, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output, no partial dir


def test_existing_output_needs_force(tmp_path, capsys):
    src = tmp_path / "a.txt"
    src.write_text("text " * 100)
    assert main(["data", "prepare", str(src), "-o", str(tmp_path / "out"), "--quiet"]) == 0
    first = digest(tmp_path / "out")
    assert main(["data", "prepare", str(src), "-o", str(tmp_path / "out"), "--quiet"]) == 2
    assert "--force" in capsys.readouterr().err
    src.write_text("other " * 100)
    assert main(["data", "prepare", str(src), "-o", str(tmp_path / "out"), "--quiet",
                 "--force"]) == 0
    assert digest(tmp_path / "out") != first


def test_open_refuses_damaged_or_foreign_directories(tmp_path):
    src = tmp_path / "a.txt"
    src.write_text("text " * 100)
    prepare(PrepareOptions([str(src)], tmp_path / "out"))
    with pytest.raises(DataError, match="no meta.json"):
        PreparedCorpus.open(tmp_path)
    train = tmp_path / "out" / "train.bin"
    train.write_bytes(train.read_bytes()[:-3])
    with pytest.raises(DataError, match="train.bin: expected"):
        PreparedCorpus.open(tmp_path / "out")
    corpus_meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    (tmp_path / "out" / "meta.json").write_text(json.dumps({**corpus_meta, "format": "nanogpt"}))
    with pytest.raises(DataError, match="not a prepared corpus"):
        PreparedCorpus.open(tmp_path / "out")


def test_tokenizer_mismatch_names_both(tmp_path):
    src = tmp_path / "a.txt"
    src.write_text("text " * 100)
    prepare(PrepareOptions([str(src)], tmp_path / "out"))
    corpus = PreparedCorpus.open(tmp_path / "out")
    corpus.check_tokenizer("byte")
    with pytest.raises(DataError, match=r"prepared with tokenizer byte.*'bpe:4096'"):
        corpus.check_tokenizer("bpe:4096")


def test_info_command(tmp_path, capsys):
    src = tmp_path / "a.txt"
    src.write_text("text " * 100)
    prepare(PrepareOptions([str(src)], tmp_path / "out"))
    assert main(["data", "info", str(tmp_path / "out"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["vocab_size"] == 256 and "sources" not in info
    assert main(["data", "info", str(tmp_path)]) == 2


def test_bits_per_byte_is_loss_over_bytes(tmp_path):
    """bpb = total nats over the validation targets / (ln 2 * their bytes of text)."""
    from mixnas.evaluator.tasks import get_task

    docs = write_docs(tmp_path / "docs", n=30)
    prepare(PrepareOptions([str(docs)], tmp_path / "bpe", tokenizer="bpe:300", val_frac=0.3))
    task = get_task("lm", data=str(tmp_path / "bpe"), seq_len=16, num_val=8)
    corpus = PreparedCorpus.open(tmp_path / "bpe")
    assert task.vocab_size == 300
    assert task.val_bytes == corpus.bytes_of(task.test.targets.numpy())
    uniform = task.evaluate(lambda x: __import__("torch").zeros(*x.shape, 300), 4)
    assert math.isclose(uniform["val_loss"], math.log(300), rel_tol=1e-6)
    expected = math.log(300) * task.test.targets.numel() / (math.log(2) * task.val_bytes)
    assert math.isclose(uniform["bpb"], expected, rel_tol=1e-6)
    assert math.isclose(uniform["perplexity"], 300, rel_tol=1e-4)

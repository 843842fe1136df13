"""`mixnas evaluate` plumbing: architecture loading, --set parsing, JSON and table output."""

import io
import json

import pytest
from rich.console import Console

from mixnas.errors import ConfigError
from mixnas.evaluator.commands import evaluate_command, load_architecture, parse_sets

from .helpers import tiny_arch

SETS = [
    "vocab_size=16",
    "seq_len=8",
    "num_train=32",
    "num_test=32",
    "train.lr=1e-2",
    "train.batch_size=8",
    "profile.latency=false",
    "profile.context_length=32",
]


def test_sets_are_routed_and_parsed_as_yaml_scalars():
    parsed = parse_sets(
        "mqar",
        [
            "seq_len=32",
            "train.lr=1e-3",
            "profile.latency=false",
            "rungs=[0.5]",
            "seed=2",
            "test_seq_lens=[64, 128]",
        ],
        None,
    )
    assert parsed["task"] == {"name": "mqar", "seq_len": 32, "test_seq_lens": [64, 128]}
    assert parsed["train"] == {"lr": 1e-3} and parsed["profile"] == {"latency": False}
    assert parsed["budget"] == {"rungs": [0.5], "steps": 500} and parsed["options"] == {"seed": 2}
    assert parse_sets("mqar", ["tokens=1000"], 20)["budget"] == {"steps": 20}
    with pytest.raises(ValueError, match="key=value"):
        parse_sets("mqar", ["seq_len"], None)


def test_json_output_has_metrics_and_profile(tmp_path):
    path = tmp_path / "arch.yaml"
    path.write_text(tiny_arch().to_json())  # JSON is YAML
    out = io.StringIO()
    evaluate_command(str(path), "memorization", SETS, 3, True, Console(file=out, width=60))
    data = json.loads(out.getvalue())
    assert set(data) == {"metrics", "profile"}
    assert set(data["metrics"]) == {"accuracy", "loss"} and data["profile"]["params"] > 0


def test_table_output_for_a_baseline():
    out = io.StringIO()
    result = evaluate_command(
        "mamba2",
        "memorization",
        SETS + ["train.batch_size=2"],
        1,
        False,
        Console(file=out, width=120),
    )
    text = out.getvalue()
    assert "mamba2 on memorization" in text and "non_embedding_params" in text
    assert result.steps == 1


def test_unknown_keys_and_architectures_are_named(tmp_path):
    console = Console(file=io.StringIO())
    with pytest.raises(ValueError, match="task 'memorization': unknown setting 'vocab'"):
        evaluate_command("transformer", "memorization", ["vocab=3"], 1, True, console)
    with pytest.raises(ValueError, match="unknown train setting 'lrate'"):
        evaluate_command("transformer", "memorization", SETS + ["train.lrate=1"], 1, True, console)
    with pytest.raises(ConfigError, match="'nope' is neither an architecture file nor a baseline"):
        load_architecture("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("d_model: 16\n")
    with pytest.raises(ConfigError,
                       match="bad.yaml: not a valid architecture: architecture is missing"):
        load_architecture(str(bad))

"""The one YAML loader of study files, grammars and architectures: lines and YAML 1.2 numbers."""

import math

import pytest

from mixnas.search_space.grammar import Grammar, GrammarError
from mixnas.yamlfile import SourceError, YamlMap, parse_yaml, plain, read_yaml


def test_numbers_follow_yaml_1_2():
    data = parse_yaml("a: 1e-3\nb: 5E6\nc: 010\nd: 1:30\ne: 1_000\nf: .5\ng: -.inf\nh: 0x1f\n"
                      "i: '1e-3'\nj: 3.0e-3\n")
    assert data == {"a": 1e-3, "b": 5e6, "c": 10, "d": "1:30", "e": 1000, "f": 0.5,
                    "g": -math.inf, "h": 31, "i": "1e-3", "j": 3e-3}
    assert isinstance(data["a"], float) and isinstance(data["c"], int)
    assert data["i"] == "1e-3"  # quoted stays a string


def test_containers_remember_lines_and_plain_drops_them():
    data = parse_yaml("top:\n  x: 1\n  items:\n    - a\n    - b\n")
    assert isinstance(data, YamlMap) and data.key_lines["top"] == 1
    inner = data["top"]
    assert inner.line == 2 and inner.key_lines == {"x": 2, "items": 3}
    assert inner["items"].item_lines == [4, 5]
    assert type(plain(data)["top"]["items"]) is list and type(plain(data)) is dict


@pytest.mark.parametrize(
    "text,line,message",
    [
        ("a: 1\nb: 2\na: 3\n", 3, "duplicate key 'a'"),
        ("a: [1,\n", 2, "malformed YAML"),
        ("? [1, 2]\n: 3\n", 1, "a mapping key must be a plain value"),
        ("a: !!python/object:os.system x\n", 1, "malformed YAML"),
    ],
)
def test_errors_name_file_and_line(text, line, message):
    with pytest.raises(SourceError) as info:
        parse_yaml(text, "f.yaml")
    assert str(info.value).startswith(f"f.yaml:{line}: ") and message in str(info.value)


def test_read_errors_are_one_line(tmp_path):
    with pytest.raises(SourceError, match="absent.yaml: cannot read: no such file"):
        read_yaml(tmp_path / "absent.yaml")
    with pytest.raises(SourceError, match="is a directory"):
        read_yaml(tmp_path)
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(SourceError, match="not UTF-8"):
        read_yaml(tmp_path / "bin.yaml")


def test_grammar_and_study_file_read_numbers_alike(tmp_path):
    from mixnas.orchestrator.config import load_study_config

    space = tmp_path / "space.yaml"
    space.write_text(
        "architecture:\n  d_model: 16\n  depth: 1\n  layers: stack\n"
        "constraints: {max_params: 1e6}\n"
        "rules:\n  stack: {per_layer: layer}\n"
        "  layer: {token_mixer: {primitive: attention, params: {heads: 2}},"
        " channel_mixer: {primitive: none}}\n"
    )
    assert Grammar.load(space).constraints.max_params == 1_000_000
    study = tmp_path / "study.yaml"
    study.write_text(
        "name: s\nsearch_space: space.yaml\ntask: {name: mqar}\nbudget: {steps: 10}\n"
        "train: {lr: 1e-3, min_lr: 1E-6}\n"
        "objectives: [{name: accuracy, direction: maximize}]\n"
    )
    config = load_study_config(study)
    assert config.train["lr"] == 1e-3 and isinstance(config.train["lr"], float)
    assert config.train["min_lr"] == 1e-6


def test_grammar_errors_keep_their_type():
    with pytest.raises(GrammarError, match=r"g\.yaml:3: duplicate key 'd_model'"):
        Grammar.parse("architecture:\n  d_model: 1\n  d_model: 2\n", "g.yaml")

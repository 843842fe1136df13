"""Hostile but honest inputs, one table: every one is answered with exit code 2 (or the code the
README documents), one line on stderr naming the file:line or the field, no traceback, and nothing
written (no new file anywhere under the test's directory, the current directory included; an
existing database logically unchanged).

Cases run in-process through `mixnas.cli.main` (a few seconds for the whole table); the ones that
need a fresh interpreter (an optional dependency missing) run as subprocesses. test_bad_input.py
keeps the first, smaller table; this one covers every class of issue 14 and more.
"""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mixnas.cli import main

from .helpers import SPACE

STUDY = """\
name: hostile
search_space: space.yaml
task: {name: mqar, vocab_size: 16, seq_len: 32, num_kv_pairs: 4}
budget: {steps: 30}
train: {lr: 3.0e-3, batch_size: 16}
objectives:
  - {name: accuracy, direction: maximize}
  - {name: non_embedding_params, direction: minimize}
profile: {latency: false, context_length: 64}
n_trials: 4
workers: 1
seed: 1
baselines: []
"""
GRAMMAR = SPACE.read_text()
ARCH = """\
d_model: 16
layers:
  - {token_mixer: {primitive: attention, params: {heads: 2}}, channel_mixer: {primitive: none}}
"""


@dataclass
class Case:
    """argv with {tmp}, {db} (a copy of a database holding study 'other'), {study} (STUDY edited
    by `edits`, written to study.yaml), {space} (GRAMMAR edited by `grammar`, space.yaml)."""

    argv: list[str]
    expect: str  # a substring of the one error line; {tmp} is filled in
    edits: list[tuple[str, str]] = field(default_factory=list)
    grammar: list[tuple[str, str]] = field(default_factory=list)
    files: dict[str, str | bytes] = field(default_factory=dict)  # more files to write first
    code: int = 2


START = ["study", "start", "{study}", "--storage", "sqlite:///{tmp}/new.db", "--quiet"]
CASES: dict[str, Case] = {}


def study(name: str, old: str, new: str, expect: str, *more: tuple[str, str]) -> None:
    """A study file edit: replace `old` with `new` (append `new` when `old` is empty)."""
    CASES[f"study: {name}"] = Case(START, expect, edits=[(old, new), *more])


def grammar(name: str, old: str, new: str, expect: str, commands=("validate", "start")) -> None:
    """A grammar edit, tried by `space validate` and by `study start` (and `space sample`)."""
    argv = {"validate": ["space", "validate", "{space}"],
            "sample": ["space", "sample", "{space}", "--n", "2"],
            "show": ["space", "show", "{space}"], "start": START}
    for command in commands:
        CASES[f"grammar {command}: {name}"] = Case(argv[command], expect, grammar=[(old, new)])


def cli(name: str, argv: list[str], expect: str, **kw) -> None:
    CASES[name] = Case(argv, expect, **kw)


# --------------------------------------------------------------------------- study files
S = "{study}"
study("unknown sampler option", "seed: 1", "sampler: tpe\nsampler_options: {n_startup: 3}",
      f"{S}:13: sampler_options: ")
study("nsga2 population 1", "seed: 1", "sampler: nsga2\nsampler_options: {population_size: 1}",
      f"{S}:13: sampler_options: ")
study("nsga2 unknown option", "seed: 1", "sampler: nsga2\nsampler_options: {pop: 8}",
      f"{S}:13: sampler_options: ")
study("random sampler options", "seed: 1", "sampler: random\nsampler_options: {seed: 3}",
      f"{S}:13: sampler_options: the random sampler takes no options")
study("surrogate unknown option", "seed: 1", "sampler: surrogate\nsampler_options: {bogus: 1}",
      f"{S}:13: sampler_options: ")
study("sampler options a list", "seed: 1", "sampler_options: [1, 2]", f"{S}:12: 'sampler_options'")
study("unknown sampler", "seed: 1", "sampler: cmaes", f"{S}:12: unknown sampler 'cmaes'")
study("seed -1", "seed: 1", "seed: -1", f"{S}:12: 'seed' must be >= 0")
study("seed 10**20", "seed: 1", "seed: 100000000000000000000", f"{S}:12: 'seed' must be at most")
study("seed float", "seed: 1", "seed: 1.5", f"{S}:12: 'seed' must be int")
study("seed bool", "seed: 1", "seed: true", f"{S}:12: 'seed' must be int")
study("workers 10**12", "workers: 1", "workers: 1000000000000", f"{S}:11: 'workers' must be at most")
study("workers 0", "workers: 1", "workers: 0", f"{S}:11: 'workers' must be positive")
study("n_trials 10**12", "n_trials: 4", "n_trials: 1000000000000",
      f"{S}:10: 'n_trials' must be at most")
study("n_trials 0", "n_trials: 4", "n_trials: 0", f"{S}:10: 'n_trials' must be positive")
study("n_trials float", "n_trials: 4", "n_trials: 4.0", f"{S}:10: 'n_trials' must be int")
study("n_trials string", "n_trials: 4", "n_trials: '4'", f"{S}:10: 'n_trials' must be int")
study("steps 10**21", "steps: 30", "steps: 1000000000000000000000", f"{S}:4: budget 'steps'")
study("steps float", "steps: 30", "steps: 3.0e1", f"{S}:4: 'steps' must be int")
study("steps and tokens", "steps: 30", "steps: 30, tokens: 1000", f"{S}:4: 'budget' needs exactly one of")
study("no budget", "budget: {steps: 30}\n", "", f"{S}:1: the study file is missing required key 'budget'")
study("tokens 10**20", "steps: 30", "tokens: 100000000000000000000", f"{S}:4: budget 'tokens'")
study("eval_every 10**12", "steps: 30", "steps: 30, eval_every: 1000000000000",
      f"{S}:4: budget 'eval_every'")
study("budget unknown key", "steps: 30", "steps: 30, step: 3", f"{S}:4: unknown key 'step'")
study("max_retries -1", "seed: 1", "max_retries: -1", f"{S}:12: 'max_retries' must be >= 0")
study("max_retries 10**9", "seed: 1", "max_retries: 1000000000", f"{S}:12: 'max_retries' must be at most")
study("trial_timeout nan", "seed: 1", "trial_timeout_s: .nan", f"{S}:12: 'trial_timeout_s' must be a finite")
study("trial_timeout inf", "seed: 1", "trial_timeout_s: .inf", f"{S}:12: 'trial_timeout_s' must be a finite")
study("trial_timeout 0", "seed: 1", "trial_timeout_s: 0", f"{S}:12: 'trial_timeout_s' must be positive")
study("pruning margin nan", "seed: 1", "pruning: {margin: .nan}", f"{S}:12: 'margin' must be a finite")
study("pruning rung 1", "seed: 1", "pruning: {rungs: [1.0]}", f"{S}:12: 'rungs' must be fractions")
study("pruning unknown key", "seed: 1", "pruning: {enable: true}", f"{S}:12: unknown key 'enable'")
study("keep_weights", "seed: 1", "keep_weights: some", f"{S}:12: 'keep_weights' must be one of")
study("reuse_results string", "seed: 1", "reuse_results: 'yes'", f"{S}:12: 'reuse_results' must be bool")
study("name with NUL", "name: hostile", 'name: "a\\0b"', f"{S}:1: 'name'")
study("name with slash", "name: hostile", "name: a/b", f"{S}:1: 'name'")
study("name with space", "name: hostile", "name: 'a b'", f"{S}:1: 'name'")
study("name empty", "name: hostile", "name: ''", f"{S}:1: 'name'")
study("name too long", "name: hostile", "name: " + "a" * 129, f"{S}:1: 'name'")
study("name starts with dot", "name: hostile", "name: .hidden", f"{S}:1: 'name'")
study("name number", "name: hostile", "name: 12", f"{S}:1: 'name' must be str")
study("name newline", "name: hostile", 'name: "a\\nb"', f"{S}:1: 'name'")
study("name unicode", "name: hostile", "name: étude", f"{S}:1: 'name'")
study("warm start itself", "seed: 1", "warm_start: [hostile]", f"{S}:12: study 'hostile' cannot warm-start")
study("warm start missing", "seed: 1", "warm_start: [nope]", "nope")
study("vocab_size 10**11", "vocab_size: 16", "vocab_size: 100000000000", f"{S}:3: task: ")
study("seq_len 10**9", "seq_len: 32", "seq_len: 1000000000", f"{S}:3: task: ")
study("num_train huge", "num_kv_pairs: 4", "num_kv_pairs: 4, num_train: 1048576, seq_len: 4096",
      f"{S}:3: task: ", ("seq_len: 32, ", ""))
study("task setting nan", "num_kv_pairs: 4", "num_kv_pairs: 4, power_a: .nan", f"{S}:3: task: ")
study("task not a mapping", "task: {name: mqar, vocab_size: 16, seq_len: 32, num_kv_pairs: 4}",
      "task: mqar", f"{S}:3: 'task' must be")
study("task unknown setting", "num_kv_pairs: 4", "num_kv_pairs: 4, pairs: 2", f"{S}:3: task: ")
study("task unknown", "name: mqar", "name: mqarr", f"{S}:3: task: ")
study("lr nan", "lr: 3.0e-3", "lr: .nan", f"{S}:5: train: ")
study("lr inf", "lr: 3.0e-3", "lr: .inf", f"{S}:5: train: ")
study("lr negative", "lr: 3.0e-3", "lr: -1e-3", f"{S}:5: train: ")
study("lr string", "lr: 3.0e-3", "lr: fast", f"{S}:5: train: ")
study("batch 10**9", "batch_size: 16", "batch_size: 1000000000", f"{S}:5: train: ")
study("batch 0", "batch_size: 16", "batch_size: 0", f"{S}:5: train: ")
study("betas wrong", "batch_size: 16", "batch_size: 16, betas: [0.9]", f"{S}:5: train: ")
study("train unknown key", "batch_size: 16", "batch_size: 16, momentum: 0.9", f"{S}:5: train: ")
study("schedule unknown", "batch_size: 16", "batch_size: 16, schedule: linear", f"{S}:5: train: ")
study("profile context 10**12", "context_length: 64", "context_length: 1000000000000",
      f"{S}:9: profile: ")
study("profile seq_lens huge", "context_length: 64", "context_length: 64, seq_lens: [1000000000]",
      f"{S}:9: ")
study("profile unknown key", "context_length: 64", "context_length: 64, repeat: 3", f"{S}:9: ")
study("objective direction", "direction: maximize", "direction: up", f"{S}:7: objective 'accuracy'")
study("objective twice", "name: non_embedding_params", "name: accuracy", f"{S}:8: objective 'accuracy' is listed twice")
study("objectives empty", "objectives:\n  - {name: accuracy, direction: maximize}\n"
      "  - {name: non_embedding_params, direction: minimize}\n", "objectives: []\n",
      f"{S}:6: 'objectives' must list")
study("baseline unknown", "baselines: []", "baselines: [transformr]", f"{S}:13: unknown baseline 'transformr'")
study("baseline bad mapping", "baselines: []", "baselines: [{d_model: -1}]", f"{S}:13: baselines: ")
study("unknown top key", "seed: 1", "seeds: 1", f"{S}:12: unknown key 'seeds'")
for label, url, expect in (("memory", "sqlite:///:memory:", "memory"),
                           ("mysql", "mysql://u@h/db", "only sqlite and postgresql"),
                           ("garbage", "not a url", "bad storage URL"),
                           ("no directory", "sqlite:///{tmp}/no/such/dir/x.db", "does not exist")):
    cli(f"study: storage {label}", START[:3], expect, edits=[("seed: 1", f"storage: '{url}'")])
study("search_space missing", "search_space: space.yaml", "search_space: nope.yaml",
      f"{S}:2: search_space file not found")
study("search_space a directory", "search_space: space.yaml", "search_space: .", f"{S}:2: ")
# --------------------------------------------------------------------------- YAML itself
BOMB = 'a: &a ["x","x","x","x","x","x","x","x","x"]\n' + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8))
study("alias bomb under task", "task: {name: mqar, vocab_size: 16, seq_len: 32, num_kv_pairs: 4}",
      "task:\n  name: mqar\n  " + BOMB.replace("\n", "\n  ").rstrip(), "aliases expand to more than")
study("nesting 20000 deep", "seed: 1", "seed: " + "[" * 20000 + "]" * 20000,
      f"{S}:12: nested deeper than")
study("block nesting 100 deep", "seed: 1", "x:\n" + "".join(" " * i + f"k{i}:\n" for i in range(1, 100)),
      f"{S}:")
study("complex key", "seed: 1", "? [a, b]\n: 1", f"{S}:12: a mapping key must be a plain value")
study("mapping key", "seed: 1", "? {a: 1}\n: 1", f"{S}:12: a mapping key must be a plain value")
study("duplicate key", "seed: 1", "seed: 1\nseed: 2", f"{S}:13: duplicate key 'seed'")
study("NUL byte", "seed: 1", "seed: 1\x00", f"{S}:12: malformed YAML: character U+0000")
study("escape character", "seed: 1", "seed: 1\x1b", f"{S}:12: malformed YAML")
study("tab indentation", "seed: 1", "pruning:\n\tenabled: false", f"{S}:")
study("python tag", "seed: 1", "seed: !!python/object/apply:os.system ['true']", f"{S}:12: malformed YAML")
study("unknown tag", "seed: 1", "seed: !custom 1", f"{S}:12: malformed YAML")
study("undefined alias", "seed: 1", "seed: *nope", f"{S}:12: malformed YAML")
study("huge integer", "seed: 1", "seed: " + "9" * 5000, f"{S}:12: an integer of more than")
study("two documents", "seed: 1", "seed: 1\n---\nname: other", f"{S}:13: malformed YAML")
study("top level list", STUDY, "- 1\n- 2\n", f"{S}:1: the study file must be a mapping")
study("top level scalar", STUDY, "hello\n", f"{S}:1: the study file must be a mapping")
study("empty file", STUDY, "", f"{S}: the file is empty")
study("only a comment", STUDY, "# nothing\n", f"{S}: the file is empty")
cli("study: not UTF-8", ["study", "start", "{tmp}/latin1.yaml"], "{tmp}/latin1.yaml: cannot read: not UTF-8",
    files={"latin1.yaml": "name: caf\xe9\n".encode("latin-1")})
cli("study: UTF-16", ["study", "start", "{tmp}/u16.yaml"], "{tmp}/u16.yaml: cannot read: not UTF-8",
    files={"u16.yaml": "name: x\n".encode("utf-16")})
cli("study: over 4 MiB", ["study", "start", "{tmp}/big.yaml"], "{tmp}/big.yaml: cannot read: larger than",
    files={"big.yaml": "# " + "x" * (5 << 20) + "\n"})
cli("study: a directory", ["study", "start", "{tmp}"], "{tmp}: cannot read: is a directory")
cli("study: missing file", ["study", "start", "{tmp}/nope.yaml"], "{tmp}/nope.yaml: cannot read: no such file")
cli("study: /dev/zero", ["study", "start", "/dev/zero"], "/dev/zero: cannot read: not a regular file")
# --------------------------------------------------------------------------- grammars
P = "{space}"
grammar("unknown primitive", "primitive: short_conv", "primitive: short_convv",
        f"{P}:22: unknown primitive 'short_convv'", ("validate", "sample", "show", "start"))
grammar("depth 10**9", "depth: 1", "depth: 1000000000", f"{P}:7: ", ("validate", "sample", "start"))
grammar("d_model 10**9", "d_model: {choice: [16, 32]}", "d_model: 1000000000", f"{P}:6: ",
        ("validate", "start"))
grammar("nesting 20000 deep", "norm: rms", "norm: " + "[" * 20000 + "]" * 20000,
        f"{P}:8: nested deeper than", ("validate", "start"))
grammar("NUL byte", "norm: rms", "norm: rms\x00", f"{P}:8: malformed YAML", ("validate", "start"))
grammar("alias bomb", "name: reliability", "name: reliability\n" + BOMB.replace("a:", "x:", 1)
        .replace("*a", "*x").replace("&a", "&x"), "aliases expand to more than", ("validate", "show"))
grammar("complex key", "norm: rms", "norm: rms\n  ? [a, b]\n  : 1", f"{P}:9: a mapping key",
        ("validate", "start"))
grammar("empty choice", "heads: {choice: [1, 2]}", "heads: {choice: []}", f"{P}:", ("validate", "start"))
grammar("unknown rule", "layers: stack", "layers: stak", f"{P}:", ("validate", "start"))
grammar("impossible constraint", "name: reliability",
        "name: reliability\nconstraints: {max_params: 1}", "no feasible architecture",
        ("validate", "start"))
for command in ("validate", "start"):  # attention only, and no draw builds
    CASES[f"grammar {command}: heads never divide d_model"] = Case(
        ["space", "validate", "{space}"] if command == "validate" else START,
        "no feasible architecture in 100 draws: does not build",
        grammar=[("heads: {choice: [1, 2]}", "heads: {choice: [3]}"),
                 ("    - primitive: short_conv\n      params:\n        conv_size: {choice: [2, 3, 4]}\n",
                  "")])
grammar("negative conv", "conv_size: {choice: [2, 3, 4]}", "conv_size: -4", f"{P}:", ("validate",))
grammar("rule loops", "    - motif: [layer]", "    - motif: [stack]", f"{P}:", ("validate", "start"))
cli("grammar: not UTF-8", ["space", "validate", "{tmp}/g.yaml"], "{tmp}/g.yaml: cannot read: not UTF-8",
    files={"g.yaml": b"name: \xff\xfe\n"})
cli("grammar: missing", ["space", "show", "{tmp}/nope.yaml"], "{tmp}/nope.yaml: cannot read")
# --------------------------------------------------------------------------- command line
cli("sample --n 10**20", ["space", "sample", str(SPACE), "--n", "100000000000000000000"], "--n")
cli("sample --n 0", ["space", "sample", str(SPACE), "--n", "0"], "--n")
cli("sample --n abc", ["space", "sample", str(SPACE), "--n", "abc"], "--n")
cli("sample --seed -1", ["space", "sample", str(SPACE), "--seed", "-1"], "--seed")
cli("sample --seed 10**30", ["space", "sample", str(SPACE), "--seed", "1" + "0" * 30], "--seed")
cli("start --workers 10**12", [*START, "--workers", "1000000000000"], "--workers: must be at most")
cli("start --n-trials 10**12", [*START, "--n-trials", "1000000000000"], "--n-trials: must be at most")
cli("start --workers 0", [*START, "--workers", "0"], "--workers")
cli("start --n-trials -3", [*START, "--n-trials", "-3"], "--n-trials")
cli("start --storage memory", [*START[:3], "--storage", "sqlite:///:memory:"], "memory")
cli("start --storage sqlite://", [*START[:3], "--storage", "sqlite://"], "memory")
cli("start --storage not sqlite", [*START[:3], "--storage", "sqlite:///{tmp}/junk.db"],
    "not a database", files={"junk.db": "this is not SQLite\n" * 100})
cli("start --storage a directory", [*START[:3], "--storage", "sqlite:///{tmp}"], "{tmp}")
cli("start --ray-address bad", [*START, "--ray-address", "nowhere:99999"], "nowhere:99999")
cli("start --warm-start itself", [*START, "--warm-start", "hostile"], "cannot warm-start from itself")
cli("start into a database holding the name", [*START[:3], "--storage", "{db}"],
    "already exists", edits=[("name: hostile", "name: other")])
cli("resume --workers 10**12", ["study", "resume", "other", "--storage", "{db}", "--workers",
                                "1000000000000"], "--workers: must be at most")
cli("resume unknown study", ["study", "resume", "nope", "--storage", "{db}"], "no study named 'nope'")
cli("resume bad ray address", ["study", "resume", "other", "--storage", "{db}", "--ray-address",
                               "bad:address:x"], "bad:address:x")
cli("list not sqlite", ["study", "list", "--storage", "sqlite:///{tmp}/junk.db"], "not a database",
    files={"junk.db": "this is not SQLite\n" * 100})
cli("list memory", ["study", "list", "--storage", "sqlite:///:memory:"], "memory")
cli("list missing file", ["study", "list", "--storage", "sqlite:///{tmp}/none.db", "--json"], "",
    code=0)  # no database there: no studies, and none created
cli("list mysql", ["study", "list", "--storage", "mysql://x@y/z"], "only sqlite and postgresql")
cli("status not sqlite", ["study", "status", "x", "--storage", "sqlite:///{tmp}/junk.db"],
    "not a database", files={"junk.db": b"\x00\x01" * 600})
cli("pareto not sqlite", ["study", "pareto", "x", "--storage", "sqlite:///{tmp}/junk.db"],
    "not a database", files={"junk.db": "SQLite format 3\x00 but not really\n" * 40})
cli("status unknown", ["study", "status", "nope", "--storage", "{db}"], "no study named 'nope'")
cli("pareto empty database file", ["study", "pareto", "x", "--storage", "sqlite:///{tmp}/e.db"],
    "no study named 'x'", files={"e.db": b""})
cli("promote --scale inf", ["study", "promote", "other", "--storage", "{db}", "--scale", "inf"],
    "--scale")
cli("promote --scale 0", ["study", "promote", "other", "--storage", "{db}", "--scale", "0"], "--scale")
cli("promote --scale 1e9", ["study", "promote", "other", "--storage", "{db}", "--scale", "1e9"],
    "--scale")
cli("promote --top-k 0", ["study", "promote", "other", "--storage", "{db}", "--top-k", "0"],
    "--top-k")
cli("promote --workers 10**12", ["study", "promote", "other", "--storage", "{db}", "--workers",
                                 "1000000000000"], "--workers")
cli("dashboard --port 99999", ["dashboard", "--storage", "{db}", "--port", "99999"], "--port")
cli("dashboard --port -1", ["dashboard", "--storage", "{db}", "--port", "-1"], "--port")
cli("dashboard --port abc", ["dashboard", "--storage", "{db}", "--port", "abc"], "--port")
cli("dashboard bad host", ["dashboard", "--storage", "{db}", "--host", "no.such.host.invalid",
                           "--port", "1"], "no.such.host.invalid")
cli("dashboard not sqlite", ["dashboard", "--storage", "sqlite:///{tmp}/junk.db"], "not a database",
    files={"junk.db": "this is not SQLite\n" * 100})
cli("dashboard missing db", ["dashboard", "--storage", "sqlite:///{tmp}/none.db"], "none.db")
cli("dashboard memory", ["dashboard", "--storage", "sqlite:///:memory:"], "memory")
cli("evaluate device cuda", ["evaluate", "transformer", "--task", "mqar", "--set", "device=cudaa"],
    "device")
cli("evaluate device garbage", ["evaluate", "transformer", "--task", "mqar", "--set",
                                "device=gpu9"], "device")
cli("evaluate --steps 10**21", ["evaluate", "transformer", "--task", "mqar", "--steps",
                                "1000000000000000000000"], "steps")
cli("evaluate --set steps huge", ["evaluate", "transformer", "--task", "mqar", "--set",
                                  "steps=10000000000000"], "steps")
cli("evaluate --set lr nan", ["evaluate", "transformer", "--task", "mqar", "--set",
                              "train.lr=.nan"], "lr")
cli("evaluate --set seed -1", ["evaluate", "transformer", "--task", "mqar", "--set", "seed=-1"],
    "seed")
cli("evaluate --set vocab huge", ["evaluate", "transformer", "--task", "mqar", "--set",
                                  "vocab_size=100000000000"], "vocab_size")
cli("evaluate --set no equals", ["evaluate", "transformer", "--task", "mqar", "--set", "steps"],
    "--set expects key=value")
cli("evaluate --set bad yaml", ["evaluate", "transformer", "--task", "mqar", "--set", "steps=[1"],
    "--set steps")
cli("evaluate unknown task", ["evaluate", "transformer", "--task", "mqarr"], "mqarr")
cli("evaluate unknown baseline", ["evaluate", "transformr", "--task", "mqar"], "transformr")
cli("evaluate arch bad yaml", ["evaluate", "{tmp}/a.yaml", "--task", "mqar"], "{tmp}/a.yaml:",
    files={"a.yaml": "d_model: [16\n"})
cli("evaluate arch alias bomb", ["evaluate", "{tmp}/a.yaml", "--task", "mqar"], "{tmp}/a.yaml:",
    files={"a.yaml": BOMB})
cli("evaluate arch not UTF-8", ["evaluate", "{tmp}/a.yaml", "--task", "mqar"], "{tmp}/a.yaml:",
    files={"a.yaml": b"d_model: \xff\n"})
cli("evaluate arch python tag", ["evaluate", "{tmp}/a.yaml", "--task", "mqar"], "{tmp}/a.yaml:",
    files={"a.yaml": "!!python/object/apply:os.system ['true']\n"})
cli("evaluate sample list of two", ["evaluate", "{tmp}/a.json", "--task", "mqar"],
    "{tmp}/a.json: holds 2 architectures",
    files={"a.json": '[{"architecture": {"d_model": 16, "layers": []}}, {"architecture": {}}]'})
cli("evaluate arch d_model huge", ["evaluate", "{tmp}/a.yaml", "--task", "mqar"], "{tmp}/a.yaml:",
    files={"a.yaml": ARCH.replace("d_model: 16", "d_model: 1000000000")})
cli("export -o under a file", ["export", "--arch", "transformer", "-o", "{tmp}/file.txt/out"],
    "{tmp}/file.txt", files={"file.txt": "x"})
cli("export --vocab-size 10**11", ["export", "--arch", "transformer", "-o", "{tmp}/out",
                                   "--vocab-size", "100000000000"], "--vocab-size")
cli("export unknown study", ["export", "nope", "--trial", "0", "-o", "{tmp}/out", "--storage",
                             "{db}"], "no study named 'nope'")
cli("export trial 2**70", ["export", "other", "--trial", str(2**70), "-o", "{tmp}/out",
                           "--storage", "{db}"], "--trial")
cli("export not sqlite", ["export", "x", "--trial", "0", "-o", "{tmp}/out", "--storage",
                          "sqlite:///{tmp}/junk.db"], "not a database",
    files={"junk.db": "this is not SQLite\n" * 100})
cli("export arch bad yaml", ["export", "--arch", "{tmp}/a.yaml", "-o", "{tmp}/out"], "{tmp}/a.yaml:",
    files={"a.yaml": "d_model: [16\n"})
cli("no command", [], "", code=2)
cli("unknown command", ["studdy"], "invalid choice")
cli("unknown option", ["study", "list", "--bogus"], "unrecognized arguments")
cli("missing argument", ["study", "resume"], "the following arguments are required")
cli("study without action", ["study"], "", code=2)
cli("data prepare missing source", ["data", "prepare", "{tmp}/none.txt", "-o", "{tmp}/out"],
    "none.txt")
cli("data prepare val-frac 2", ["data", "prepare", "{tmp}/t.txt", "-o", "{tmp}/out", "--val-frac",
                                "2"], "val", files={"t.txt": "hello\n"})
cli("data prepare val-frac nan", ["data", "prepare", "{tmp}/t.txt", "-o", "{tmp}/out",
                                  "--val-frac", "nan"], "val", files={"t.txt": "hello\n"})
cli("data info missing", ["data", "info", "{tmp}/none"], "none")


# --------------------------------------------------------------------------- the runner
@pytest.fixture(scope="module")
def template_db(tmp_path_factory) -> Path:
    """A database with one study, 'other', created without running it."""
    from mixnas.orchestrator.config import load_study_config
    from mixnas.orchestrator.study import create_study
    from mixnas.storage.engine import get_engine

    where = tmp_path_factory.mktemp("template")
    (where / "space.yaml").write_text(GRAMMAR)
    (where / "other.yaml").write_text(STUDY.replace("name: hostile", "name: other"))
    config = load_study_config(where / "other.yaml")
    config.storage = f"sqlite:///{where}/existing.db"
    handle = create_study(config)
    handle.storage.close()
    handle.optuna_storage.engine.dispose()
    get_engine.cache_clear()
    # copies of the file must hold every row: fold a write-ahead log back into it
    with sqlite3.connect(where / "existing.db") as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return where / "existing.db"


def dump(path: Path) -> list:
    """Every table's rows, sorted: the database's logical content."""
    with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        return [(t, sorted(map(repr, conn.execute(f'SELECT * FROM "{t}"')))) for t in tables]


def listing(root: Path) -> dict[str, float]:
    """Every file and its modification time; the existing database (compared logically, with
    `dump`) and SQLite's sidecar files of an open connection to it by name only."""
    out = {}
    for path in root.rglob("*"):
        name = str(path.relative_to(root))
        if name.startswith("existing.db"):
            if name.endswith(("-wal", "-shm")):
                continue
            out[name] = 0.0
        else:
            out[name] = path.stat().st_mtime
    return out


def edit(text: str, edits: list[tuple[str, str]]) -> str:
    for old, new in edits:
        if old == text:
            text = new
        elif old:
            assert old in text, old
            text = text.replace(old, new, 1)
        else:
            text += new + "\n"
    return text


class ReachedWork(Exception):
    """A hostile input got past every check to where work starts."""


def _guard(monkeypatch) -> None:
    """Fail a case at once should it get as far as starting Ray, training, serving or preparing
    a corpus (instead of running for minutes)."""
    def refuse(*_args, **_kwargs):
        raise ReachedWork("the input was accepted: work started")

    monkeypatch.setattr("mixnas.orchestrator.cluster.RayRuntime.start", refuse)
    monkeypatch.setattr("mixnas.evaluator.commands.evaluate", refuse)
    monkeypatch.setattr("uvicorn.run", refuse)
    monkeypatch.setattr("mixnas.data.prepare", refuse)


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_input(name, tmp_path, capfd, monkeypatch, template_db):
    case = CASES[name]
    _guard(monkeypatch)
    work = tmp_path / "work"
    work.mkdir()
    (work / "study.yaml").write_text(edit(STUDY, case.edits).replace("{tmp}", str(work)))
    (work / "space.yaml").write_text(edit(GRAMMAR, case.grammar))
    for file, content in case.files.items():
        (work / file).write_bytes(content if isinstance(content, bytes) else content.encode())
    shutil.copy(template_db, work / "existing.db")
    before_db = dump(work / "existing.db")
    monkeypatch.chdir(work)
    fill = {"tmp": str(work), "study": str(work / "study.yaml"), "space": str(work / "space.yaml"),
            "db": f"sqlite:///{work / 'existing.db'}"}
    argv = [a.format(**fill) for a in case.argv]
    before = listing(work)
    code = main(argv)
    out = capfd.readouterr()
    assert "Traceback" not in out.err + out.out, out.err
    lines = out.err.strip().splitlines()
    assert code == case.code, (code, out.err[-2000:])
    if case.code == 2 and argv and argv[-1] != "study":  # a bare command prints its help
        assert len(lines) == 1, out.err
        assert case.expect.format(**fill) in lines[0], lines[0]
        assert "error" in lines[0]
    assert listing(work) == before, "something was written"
    assert dump(work / "existing.db") == before_db


DASHBOARD_PATHS = [
    f"/api/studies/other/trials/{2**64}", f"/api/studies/other/trials/{2**63}",
    f"/api/trials/{2**70}", f"/api/trials/{2**70}/code", f"/studies/other/trials/{2**64}",
    f"/api/studies/other/trials/{10**40}/code", "/api/studies/other/trials/-1",
    "/api/studies/%00/trials/1", "/studies/no%2Fsuch", "/api/studies/" + "x" * 5000,
]


def test_hostile_dashboard_paths_are_404_not_500(template_db, tmp_path):
    """Trial numbers beyond 64 bits, NUL and slashes in names: 404, never a server error."""
    import warnings

    from mixnas.dashboard.app import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from starlette.testclient import TestClient

    shutil.copy(template_db, tmp_path / "db.db")
    before = dump(tmp_path / "db.db")
    with TestClient(create_app(f"sqlite:///{tmp_path / 'db.db'}"),
                    raise_server_exceptions=False) as client:
        codes = {path: client.get(path).status_code for path in DASHBOARD_PATHS}
    assert codes == dict.fromkeys(DASHBOARD_PATHS, 404)
    assert dump(tmp_path / "db.db") == before

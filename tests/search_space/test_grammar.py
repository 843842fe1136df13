"""The search-space grammar: loading with FILE:LINE errors, sampling through deciders (random,
Optuna, scripted), constraints, the shipped spaces, and the `mixnas space` command functions."""

import io
import pickle
import textwrap
from collections import Counter
from pathlib import Path

import optuna
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from mixnas.search_space import BASELINES, Architecture, build_model, commands
from mixnas.search_space.grammar import Grammar, GrammarError, ratio_positions, sample_architectures
from mixnas.search_space.sampling import OptunaDecider, RandomDecider, ScriptedDecider

SPACES = Path(__file__).resolve().parents[2] / "studies" / "spaces"
HYBRID, QUICKSTART = SPACES / "hybrid.yaml", SPACES / "quickstart.yaml"

SMALL = """\
architecture:
  d_model: {choice: [32, 64]}
  depth: {int: [2, 4], step: 2}
  layers: stack
rules:
  stack:
    - per_layer: layer
    - {label: uniform, motif: [layer]}
  layer:
    token_mixer: token_mixer
    channel_mixer: channel_mixer
  token_mixer:
    - {primitive: attention, params: {heads: {choice: [2, 4]}}}
    - {primitive: short_conv, params: {conv_size: {int: [2, 6], step: 2}}}
  channel_mixer:
    - {primitive: mlp, params: {expand: {float: [1.0, 4.0]}}}
    - {primitive: none}
"""


def parse(text: str) -> Grammar:
    return Grammar.parse(textwrap.dedent(text), "g.yaml")


def error(text: str) -> str:
    with pytest.raises(GrammarError) as info:
        parse(text)
    return str(info.value)


# ------------------------------------------------------------------------------------------
# Loading and validation


# Each case: a grammar, the line at fault, and a fragment of the message.
BAD = {
    "unknown primitive": (
        SMALL.replace("primitive: short_conv", "primitive: short_convv"),
        14,
        "unknown primitive 'short_convv' (did you mean 'short_conv'?)",
    ),
    "unknown parameter": (
        SMALL.replace("{heads: {choice: [2, 4]}}", "{heads: 2, kv_head: 1}"),
        13,
        "unknown parameter 'kv_head' of primitive 'attention'",
    ),
    "value outside the primitive's domain": (
        SMALL.replace("heads: {choice: [2, 4]}", "heads: {choice: [2, 0]}"),
        13,
        "attention.heads: 0 is below the minimum 1",
    ),
    "range outside the primitive's domain": (
        SMALL.replace("conv_size: {int: [2, 6], step: 2}", "conv_size: {int: [2, 128]}"),
        14,
        "short_conv.conv_size: 128 is above the maximum 64",
    ),
    "float range for an int parameter": (
        SMALL.replace("{int: [2, 6], step: 2}", "{float: [2.0, 6.0]}"),
        14,
        "short_conv.conv_size takes int values, not float ranges",
    ),
    "choice parameter outside its choices": (
        SMALL.replace("{expand: {float: [1.0, 4.0]}}", "{activation: swish}"),
        16,
        "mlp.activation: 'swish' is not one of ['gelu', 'relu2']",
    ),
    "undefined rule": (
        SMALL.replace("channel_mixer: channel_mixer", "channel_mixer: chanel_mixer"),
        11,
        "undefined rule 'chanel_mixer' (did you mean 'channel_mixer'?)",
    ),
    "unreachable rule": (
        SMALL + "  spare:\n    - {primitive: gla}\n",
        18,
        "rule 'spare' is never used",
    ),
    "zero weight": (
        SMALL.replace("- {primitive: none}", "- {primitive: none, weight: 0}"),
        17,
        "weight must be a positive number, got 0",
    ),
    "weight that is not a number": (
        SMALL.replace("- per_layer: layer", "- {per_layer: layer, weight: heavy}"),
        7,
        "weight must be a positive number, got 'heavy'",
    ),
    "choice weights of the wrong length": (
        SMALL.replace("{choice: [32, 64]}", "{choice: [32, 64], weights: [1]}"),
        2,
        "weights needs one number per option",
    ),
    "unknown top-level key": (SMALL + "constrains: {}\n", 18, "unknown key 'constrains'"),
    "unknown architecture key": (
        SMALL.replace("  layers: stack", "  layers: stack\n  width: 3"),
        5,
        "unknown key 'width' in architecture",
    ),
    "unknown production key": (
        SMALL.replace("{label: uniform, motif: [layer]}", "{label: uniform, motif: [layer], x: 1}"),
        8,
        "unknown key 'x' in a motif production",
    ),
    "unknown domain key": (
        SMALL.replace("{int: [2, 4], step: 2}", "{int: [2, 4], stride: 2}"),
        3,
        "unknown key 'stride' in depth (int range)",
    ),
    "duplicate key": (
        SMALL.replace("  layers: stack", "  layers: stack\n  d_model: 8"),
        5,
        "duplicate key 'd_model'",
    ),
    "duplicate labels": (
        SMALL.replace("- {primitive: none}", "- {primitive: mlp}"),
        17,
        "two productions of rule 'channel_mixer' are labelled 'mlp'",
    ),
    "channel mixer where a token mixer is needed": (
        SMALL.replace("token_mixer: token_mixer", "token_mixer: channel_mixer"),
        10,
        "a token mixer is needed here but rule 'channel_mixer' derives a channel mixer",
    ),
    "a rule mixing kinds": (
        SMALL.replace("- {primitive: none}", "- {primitive: gla}"),
        17,
        "this production derives a token mixer, but rule 'channel_mixer' derives a channel mixer",
    ),
    "step that does not divide the range": (
        SMALL.replace("{int: [2, 4], step: 2}", "{int: [2, 5], step: 2}"),
        3,
        "high - low must be a multiple of step 2",
    ),
    "log range from zero": (
        SMALL.replace("{float: [1.0, 4.0]}", "{float: [0.0, 4.0], log: true}"),
        16,
        "a log range needs low > 0",
    ),
    "per_layer without depth": (
        SMALL.replace("  depth: {int: [2, 4], step: 2}\n", ""),
        6,
        "per_layer needs architecture.depth",
    ),
    "state bound without a context length": (
        SMALL + "constraints:\n  max_state_bytes: 1MiB\n",
        19,
        "max_state_bytes needs context_length",
    ),
    "invalid YAML": (SMALL.replace("  layer:\n", "  layer: [\n"), 11, "malformed YAML: expected"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_invalid_grammar_names_file_and_line(case):
    text, line, fragment = BAD[case]
    message = error(text)
    assert message.startswith(f"g.yaml:{line}: "), message
    assert fragment in message
    assert "\n" not in message


def test_rule_that_never_finishes_is_reported_at_the_rule():
    text = """\
    architecture: {d_model: 32, depth: 2, layers: {per_layer: layer}}
    rules:
      layer:
        token_mixer: token_mixer
        channel_mixer: {primitive: none}
      token_mixer:
        - primitive: parallel
          branches: [token_mixer, hybrid]
      hybrid:
        - rule: token_mixer
    """
    assert error(text) == (
        "g.yaml:6: rule 'token_mixer' never finishes deriving: every production needs a rule "
        "that never finishes (token_mixer -> hybrid -> token_mixer)"
    )


def test_unit_productions_in_a_loop_are_rejected():
    text = """\
    architecture: {d_model: 32, depth: 2, layers: {per_layer: layer}}
    rules:
      layer: {token_mixer: a, channel_mixer: {primitive: none}}
      a: [b, {primitive: short_conv}]
      b: [a, {primitive: gla}]
    """
    assert error(text) == (
        "g.yaml:4: rules a -> b -> a refer to each other in a loop without deriving anything "
        "in between"
    )


def test_the_example_in_the_docs_loads():
    docs = (SPACES.parents[1] / "docs" / "grammar.md").read_text()
    example = docs.split("```yaml\n", 1)[1].split("```", 1)[0]
    arch = Grammar.parse(example, "grammar.md").sample_feasible(seed=0)
    assert arch.d_model in (32, 64) and len(arch.layers) in (2, 4)


def test_runaway_recursion_is_stopped():
    text = """\
    architecture: {d_model: 64, depth: 1, layers: {per_layer: layer}}
    rules:
      layer: {token_mixer: token_mixer, channel_mixer: {primitive: none}}
      token_mixer:
        - {primitive: parallel, branches: [token_mixer, token_mixer], weight: 100}
        - {primitive: short_conv}
    """
    with pytest.raises(GrammarError, match=r"^g\.yaml:5: mixers nest deeper than 8 levels"):
        parse(text).sample(RandomDecider(0))


def test_grammar_error_is_a_value_error_that_pickles(tmp_path):
    err = GrammarError("g.yaml", 3, "bad")
    assert isinstance(err, ValueError) and str(err) == "g.yaml:3: bad"
    assert str(pickle.loads(pickle.dumps(err))) == "g.yaml:3: bad"
    missing = tmp_path / "missing.yaml"
    with pytest.raises(GrammarError, match=r"missing\.yaml: cannot read"):
        Grammar.load(missing)


def test_numbers_in_yaml_read_naturally():
    grammar = parse(
        SMALL + "constraints:\n  max_params: 1.5M\n  min_params: 1e3\n"
        "  max_state_bytes: 64KiB\n  context_length: 64\n"
    )
    c = grammar.constraints
    assert (c.max_params, c.min_params, c.max_state_bytes) == (1_500_000, 1000, 65536)


@pytest.mark.parametrize("path", [HYBRID, QUICKSTART], ids=["hybrid", "quickstart"])
def test_shipped_spaces_load_and_render(path):
    grammar = Grammar.load(path)
    console = Console(file=io.StringIO(), width=200)
    console.print(grammar.render_tree())
    shown = console.file.getvalue()
    for name in grammar.rules:
        assert name in shown
    assert "constraints" in shown and "%" in shown


# ------------------------------------------------------------------------------------------
# Sampling


def test_same_seed_same_list_and_prefix_stable():
    first = sample_architectures(QUICKSTART, 6, seed=3)
    again = sample_architectures(QUICKSTART, 6, seed=3)
    assert [a.to_json() for a in first] == [a.to_json() for a in again]
    shorter = sample_architectures(QUICKSTART, 3, seed=3)
    assert [a.to_json() for a in shorter] == [a.to_json() for a in first[:3]]
    other = sample_architectures(QUICKSTART, 6, seed=4)
    assert [a.hash for a in other] != [a.hash for a in first]


def test_decision_names_follow_the_derivation_path():
    grammar = parse(SMALL)
    script = {
        "d_model": 32,
        "depth": 4,
        "stack": "per_layer",
        **{f"layer.{i}.token_mixer": "attention" for i in range(4)},
        **{f"layer.{i}.token_mixer.attention.heads": 2 for i in range(4)},
        **{f"layer.{i}.channel_mixer": "none" for i in range(4)},
    }
    script["layer.3.token_mixer"] = "short_conv"
    del script["layer.3.token_mixer.attention.heads"]
    script["layer.3.token_mixer.short_conv.conv_size"] = 6
    decider = ScriptedDecider(script)
    arch = grammar.sample(decider)
    assert not decider.unused
    assert decider.asked[:3] == ["d_model", "stack", "depth"]
    assert [layer.token_mixer.type for layer in arch.layers] == ["attention"] * 3 + ["short_conv"]
    assert arch.layers[3].token_mixer.params == {"conv_size": 6}
    with pytest.raises(KeyError, match="layer.0.channel_mixer"):
        grammar.sample(ScriptedDecider({k: v for k, v in script.items() if "channel" not in k}))
    with pytest.raises(ValueError, match="8 not in range"):
        grammar.sample(ScriptedDecider({**script, "layer.3.token_mixer.short_conv.conv_size": 8}))


def test_motif_derives_once_and_repeats():
    grammar = parse(
        SMALL.replace(
            "{label: uniform, motif: [layer]}",
            "{label: uniform, motif: [layer, layer], repeat: {int: [1, 3]}}",
        )
    )
    decider = ScriptedDecider(
        {"stack": "uniform", "stack.uniform.repeat": 3}, fallback=RandomDecider(0)
    )
    arch = grammar.sample(decider)
    assert len(arch.layers) == 6
    assert [layer.to_dict() for layer in arch.layers[2:]] == [l.to_dict() for l in arch.layers[:4]]


def test_ratio_positions():
    assert ratio_positions(4, 3, "interleaved") == {3}  # b b b a
    assert ratio_positions(6, 2, "interleaved") == {2, 5}  # Griffin: r r a r r a
    assert ratio_positions(8, 7, "middle") == {4}  # Jamba
    assert ratio_positions(12, 3, "interleaved") == {3, 7, 11}
    assert ratio_positions(12, 3, "first") == {0, 1, 2}
    assert ratio_positions(12, 3, "last") == {9, 10, 11}
    assert ratio_positions(2, 7, "first") == {0}  # always at least one `a` layer


@given(
    depth=st.integers(1, 32),
    r=st.integers(1, 12),
    placement=st.sampled_from(["interleaved", "first", "middle", "last"]),
)
def test_ratio_positions_count_and_range(depth, r, placement):
    positions = ratio_positions(depth, r, placement)
    assert len(positions) == min(depth, max(1, int(depth / (r + 1) + 0.5)))
    assert all(0 <= i < depth for i in positions)


@given(seed=st.integers(0, 10**6))
def test_random_decider_stays_on_the_domain(seed):
    decider = RandomDecider(seed)
    assert 8 <= decider.integer("a", 8, 256, log=True) <= 256
    assert decider.integer("b", 2, 10, step=4) in (2, 6, 10)
    assert 1e-4 <= decider.real("c", 1e-4, 1e-2, log=True) <= 1e-2
    assert decider.real("d", 0.5, 2.0, step=0.5) in (0.5, 1.0, 1.5, 2.0)


def test_random_decider_respects_weights():
    grammar = parse(
        SMALL.replace("- {primitive: attention,", "- {weight: 3, primitive: attention,").replace(
            "{choice: [32, 64]}", "{choice: [32, 64], weights: [1, 4]}"
        )
    )
    decider = RandomDecider(0)
    archs = [grammar.sample(decider) for _ in range(1500)]
    widths = Counter(a.d_model for a in archs)
    mixers = Counter(layer.token_mixer.type for a in archs for layer in a.layers)
    assert 0.76 < widths[64] / len(archs) < 0.84  # 4/5
    assert 0.71 < mixers["attention"] / sum(mixers.values()) < 0.79  # 3/4


def test_optuna_decisions_are_stable_conditional_parameters():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    grammar = Grammar.load(HYBRID)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    hashes = {}

    def objective(trial):
        arch = grammar.sample(OptunaDecider(trial))
        hashes[trial.number] = arch.hash
        return float(len(arch.layers))

    study.optimize(objective, n_trials=12)
    stacks = set()
    for trial in study.trials:
        names = set(trial.params)
        stacks.add(trial.params["stack"])
        assert {"d_model", "norm", "tie_embeddings", "stack"} <= names
        if trial.params["stack"] != "ratio":
            assert not any(n.startswith("stack.ratio") or n.startswith("ratio.") for n in names)
        if trial.params["stack"] not in ("uniform", "pair"):
            assert not any(n.startswith("motif.") for n in names)
        # replaying the recorded params asks exactly the same names and rebuilds the same network
        replay = ScriptedDecider(trial.params)
        assert grammar.sample(replay).hash == hashes[trial.number]
        assert not replay.unused and len(replay.asked) == len(names)
    assert len(stacks) > 1


def test_a_decision_name_with_two_meanings_is_caught():
    text = """\
    architecture: {d_model: 32, depth: 1, layers: stack}
    rules:
      stack:
        - per_layer: layer
        - {label: other, per_layer: x}
      layer:
        - {label: x, token_mixer: {primitive: gla, params: {heads: {choice: [2, 4]}}},
           channel_mixer: {primitive: none}}
        - {label: y, token_mixer: {primitive: short_conv}, channel_mixer: {primitive: none}}
      x:
        token_mixer: {primitive: gla, params: {heads: {choice: [1, 2]}}}
        channel_mixer: {primitive: none}
    """
    grammar = parse(text)
    decider = RandomDecider(0)
    with pytest.raises(GrammarError, match="decision 'layer.0.x.token_mixer.gla.heads' means"):
        for _ in range(200):
            grammar.sample(decider)


# ------------------------------------------------------------------------------------------
# Constraints


def test_constraints_reject_and_explain():
    grammar = parse(
        SMALL + "constraints:\n  max_params: 20K\n  max_layers: 3\n"
        "  max_state_bytes: 4KiB\n  context_length: 64\n"
    )
    script = {
        "d_model": 64,
        "depth": 4,
        "stack": "uniform",
        "motif.0.token_mixer": "attention",
        "motif.0.token_mixer.attention.heads": 4,
        "motif.0.channel_mixer": "mlp",
        "motif.0.channel_mixer.mlp.expand": 4.0,
    }
    reasons = grammar.check_constraints(grammar.sample(ScriptedDecider(script)))
    assert len(reasons) == 3
    assert reasons[0] == "4 layers > max_layers 3"
    assert "non-embedding params > max_params 20K" in reasons[1]
    assert "decode state at 64 tokens > max_state_bytes 4KiB" in reasons[2]
    feasible = grammar.sample_feasible(seed=0)
    assert grammar.check_constraints(feasible) == []


def test_an_architecture_that_does_not_build_is_infeasible():
    grammar = parse(SMALL.replace("{choice: [32, 64]}", "{choice: [30, 64]}"))
    arch = grammar.sample(
        ScriptedDecider(
            {
                "d_model": 30,
                "depth": 2,
                "stack": "uniform",
                "motif.0.token_mixer": "attention",
                "motif.0.token_mixer.attention.heads": 4,
                "motif.0.channel_mixer": "none",
            }
        )
    )
    assert grammar.check_constraints(arch) == [
        "does not build: layer 0 token_mixer: attention: d_model 30 is not divisible by heads 4"
    ]


def test_sample_feasible_gives_up_with_the_reason():
    grammar = parse(SMALL + "constraints:\n  min_params: 1G\n")
    with pytest.raises(
        GrammarError, match=r"no feasible architecture in 5 draws; last: .*min_params"
    ):
        grammar.sample_feasible(seed=0, max_tries=5)


# ------------------------------------------------------------------------------------------
# The shipped spaces

E83, E43 = 8 / 3, 4 / 3
GQA = {"heads": 4, "kv_heads": 2, "rope": True}
MAMBA = {"heads": 4, "expand": 2, "d_state": 16}
SWIGLU = ("swiglu", {"expand": E83})
MOE = ("moe", {"experts": 4, "top_k": 2, "expand": E43, "expert": "swiglu"})


def pick(at: str, label: str, params: dict) -> dict:
    """The decisions of choosing production `label` at `at` and its parameter values."""
    return {at: label, **{f"{at}.{label}.{k}": v for k, v in params.items()}}


def top(name: str, stack: str) -> dict:
    base = BASELINES[name]
    return {
        "d_model": base.d_model,
        "depth": len(base.layers),
        "norm": base.norm,
        "tie_embeddings": base.tie_embeddings,
        "stack": stack,
    }


def uniform(name, family, token, channel) -> dict:
    return {
        **top(name, "uniform"),
        "motif.0.token_mixer": family,
        **pick(f"motif.0.token_mixer.{family}", *token),
        **pick("motif.0.channel_mixer", *channel),
    }


def ratio(name, r, placement, shared) -> dict:
    return {
        **top(name, "ratio"),
        "stack.ratio.r": r,
        "stack.ratio.placement": placement,
        "stack.ratio.shared": shared,
    }


def attention_layer(at, token, channel) -> dict:
    return {
        **pick(f"{at}.attention_layer.token_mixer.attention", *token),
        **pick(f"{at}.attention_layer.channel_mixer", *channel),
    }


def recurrent_layer(at, token, channel) -> dict:
    return {
        **pick(f"{at}.recurrent_layer.token_mixer.recurrent", *token),
        **pick(f"{at}.recurrent_layer.channel_mixer", *channel),
    }


# For each baseline, the decisions that derive it from hybrid.yaml.
BASELINE_SCRIPTS = {
    "transformer": uniform("transformer", "attention", ("global", GQA), SWIGLU),
    "mamba2": uniform("mamba2", "recurrent", ("mamba2", MAMBA), ("none", {})),
    "gated_deltanet": uniform(
        "gated_deltanet", "recurrent", ("gated_deltanet", {"heads": 4}), SWIGLU
    ),
    "hyena": uniform("hyena", "convolution", ("hyena", {"order": 2, "filter_hidden": 32}), SWIGLU),
    "gdn_attn_3to1": {
        **ratio("gdn_attn_3to1", 3, "interleaved", True),
        **attention_layer("ratio.a", ("global", GQA), SWIGLU),
        **recurrent_layer("ratio.b", ("gated_deltanet", {"heads": 4}), SWIGLU),
    },
    "griffin": {
        **ratio("griffin", 2, "interleaved", True),
        **attention_layer(
            "ratio.a",
            ("local", {"heads": 4, "kv_heads": 1, "window": 32}),
            ("geglu", {"expand": E83}),
        ),
        **recurrent_layer(
            "ratio.b", ("gla", {"heads": 4, "gate_rank": 16}), ("geglu", {"expand": E83})
        ),
    },
    "jamba": {
        **ratio("jamba", 7, "middle", False),
        **attention_layer("layer.4", ("global", GQA), SWIGLU),
        **{
            k: v
            for i in (0, 1, 2, 3, 5, 6, 7)
            for k, v in recurrent_layer(
                f"layer.{i}", ("mamba2", MAMBA), MOE if i % 2 else SWIGLU
            ).items()
        },
    },
}


def test_every_baseline_has_a_script():
    assert set(BASELINE_SCRIPTS) == set(BASELINES)


@pytest.mark.parametrize("name", sorted(BASELINE_SCRIPTS))
def test_hybrid_space_derives_every_baseline(name):
    grammar = Grammar.load(HYBRID)
    decider = ScriptedDecider(BASELINE_SCRIPTS[name])
    arch = grammar.sample(decider)
    assert arch.hash == BASELINES[name].hash
    assert not decider.unused  # every scripted name is a decision the derivation really makes
    assert grammar.check_constraints(BASELINES[name]) == []


def test_hybrid_decision_names_never_clash():
    grammar = Grammar.load(HYBRID)  # _claim raises on a name used twice or with two meanings
    decider = RandomDecider(1)
    archs = [grammar.sample(decider) for _ in range(300)]
    kinds = Counter(layer.token_mixer.type for a in archs for layer in a.layers)
    assert set(kinds) >= {
        "attention",
        "mla",
        "linear_attention",
        "retention",
        "gla",
        "mamba2",
        "deltanet",
        "gated_deltanet",
        "hyena",
        "short_conv",
        "parallel",
    }


def run_tiny(arch: Architecture) -> None:
    model = build_model(arch, vocab_size=16)
    tokens = torch.randint(0, 16, (2, 12))
    loss = torch.nn.functional.cross_entropy(model(tokens).flatten(0, 1), tokens.flatten())
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1))
def test_quickstart_samples_build_and_train(seed):
    grammar = Grammar.load(QUICKSTART)
    arch = grammar.sample_feasible(seed)
    assert len(arch.layers) == 2 and arch.d_model in (32, 64)
    run_tiny(arch)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1))
def test_hybrid_samples_build_and_train(seed):
    # Width and depth pinned small so the model trains in milliseconds; the rest is random.
    grammar = Grammar.load(HYBRID)
    pinned = ScriptedDecider({"d_model": 64, "depth": 2}, fallback=RandomDecider(seed))
    arch = grammar.sample(pinned)
    reasons = grammar.check_constraints(arch)
    if reasons:  # the only infeasible small models are ones that do not build
        assert all(r.startswith("does not build") for r in reasons)
        with pytest.raises(ValueError):
            build_model(arch, vocab_size=16)
        return
    run_tiny(arch)


# ------------------------------------------------------------------------------------------
# `mixnas space` commands


def test_commands_show_validate_sample():
    console = Console(file=io.StringIO(), width=160)
    commands.show(QUICKSTART, console)
    assert "recurrent_layer" in console.file.getvalue()
    summary = commands.validate(QUICKSTART)
    assert summary.startswith(f"{QUICKSTART}: ok") and "random draws are feasible" in summary
    drawn = commands.sample(QUICKSTART, 3, seed=1)
    assert len(drawn) == 3
    for item in drawn:
        arch = Architecture.from_dict(item["architecture"])
        assert arch.hash == item["hash"]
        assert item["non_embedding_params"] == build_model(arch, 16).num_params()
    assert drawn == commands.sample(QUICKSTART, 3, seed=1)


def test_validate_fails_when_nothing_is_feasible(tmp_path):
    path = tmp_path / "tight.yaml"
    path.write_text(SMALL + "constraints:\n  max_params: 10\n")
    with pytest.raises(GrammarError, match=r"tight\.yaml: no feasible architecture in 20 draws"):
        commands.validate(path, draws=20)

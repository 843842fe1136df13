"""Architecture values: JSON round trips and the canonical hash (defaults, unused params, name)."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mixnas.search_space import BASELINES, Architecture, Layer, Mixer
from mixnas.search_space.registry import REGISTRY, ParamSpec, get_primitive

get_primitive("attention")  # load the built-in registry before strategies read it


def param_values(spec: ParamSpec):
    if spec.kind == "bool":
        return st.booleans()
    if spec.kind == "choice":
        return st.sampled_from(spec.choices)
    if spec.kind == "int":
        low = int(spec.low if spec.low is not None else 0)
        values = st.integers(low, low + 16)
        return st.one_of(st.none(), values) if spec.default is None else values
    return st.floats(spec.low, min(spec.high, spec.low + 8.0), allow_nan=False)


@st.composite
def mixers(draw, role):
    names = sorted(n for n, s in REGISTRY.items() if s.role == role and n != "parallel")
    name = draw(st.sampled_from(names))
    specs = REGISTRY[name].params
    keys = draw(st.lists(st.sampled_from(sorted(specs)), unique=True)) if specs else []
    return Mixer(name, {k: draw(param_values(specs[k])) for k in keys})


@st.composite
def token_mixers(draw):
    if draw(st.integers(0, 4)) == 0:
        branches = draw(st.lists(mixers("token"), min_size=2, max_size=3))
        combine = draw(st.sampled_from(["concat", "mix"]))
        return Mixer("parallel", {"branches": [b.to_dict() for b in branches], "combine": combine})
    return draw(mixers("token"))


@st.composite
def architectures(draw):
    layers = draw(st.lists(st.builds(Layer, token_mixers(), mixers("channel")), min_size=1, max_size=4))
    return Architecture(
        d_model=draw(st.sampled_from([32, 64, 96, 128])),
        layers=layers,
        norm=draw(st.sampled_from(["rms", "layer"])),
        tie_embeddings=draw(st.booleans()),
        name=draw(st.one_of(st.none(), st.text(max_size=8))),
    )


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(architectures())
def test_json_round_trip_keeps_everything(arch):
    again = Architecture.from_json(arch.to_json())
    assert again == arch
    assert Architecture.from_dict(json.loads(json.dumps(arch.to_dict()))) == arch


@SETTINGS
@given(architectures(), st.text(max_size=5))
def test_hash_is_stable_and_ignores_the_name(arch, other_name):
    again = Architecture.from_json(arch.to_json())
    again.name = other_name
    assert again.hash == arch.hash and again.canonical_json() == arch.canonical_json()
    assert len(arch.hash) == 16
    # canonical form is a fixed point: rebuilding from it changes nothing
    assert Architecture.from_dict(arch.canonical_dict()).hash == arch.hash


@SETTINGS
@given(architectures())
def test_hash_ignores_undeclared_parameters(arch):
    noisy = Architecture.from_dict(arch.to_dict())
    for layer in noisy.layers:
        layer.token_mixer.params["not_a_param"] = 123
        layer.channel_mixer.params["lr"] = 0.1
    assert noisy.hash == arch.hash


def with_params(mixer: Mixer, **params) -> Architecture:
    return Architecture(64, [Layer(Mixer(mixer.type, {**mixer.params, **params}), Mixer("swiglu"))])


def test_defaults_and_equivalent_settings_hash_alike():
    attn = Mixer("attention", {})
    base = with_params(attn).hash
    assert with_params(attn, heads=4, rope=True, window=None).hash == base  # explicit defaults
    assert with_params(attn, kv_heads=4).hash == base  # kv_heads None means kv_heads = heads
    assert with_params(attn, rope=False, rope_base=500.0).hash == with_params(attn, rope=False).hash
    assert with_params(Mixer("mla"), rope_dim=0, rope_base=3.0).hash == with_params(
        Mixer("mla"), rope_dim=0
    ).hash
    # settings that build a different network hash differently
    different = [
        with_params(attn, heads=8),
        with_params(attn, kv_heads=2),
        with_params(attn, window=16),
        with_params(attn, rope=False),
        with_params(attn, rope_base=500.0),
        with_params(Mixer("gla")),
        Architecture(64, [Layer(attn, Mixer("swiglu"))], norm="layer"),
        Architecture(64, [Layer(attn, Mixer("swiglu"))], tie_embeddings=False),
        Architecture(128, [Layer(attn, Mixer("swiglu"))]),
        Architecture(64, [Layer(attn, Mixer("swiglu"))] * 2),
    ]
    hashes = {base} | {a.hash for a in different}
    assert len(hashes) == len(different) + 1


def test_parallel_branches_are_canonical_and_ordered():
    a, b = Mixer("attention", {"heads": 4}), Mixer("mamba2", {})
    par = Mixer("parallel", {"branches": [a.to_dict(), b.to_dict()]})
    explicit = Mixer(
        "parallel",
        {"branches": [{"type": "attention", "params": {"heads": 4, "kv_heads": 4}},
                      {"type": "mamba2", "params": {"expand": 2, "junk": 1}}],
         "combine": "concat"},
    )
    assert with_params(par).hash == with_params(explicit).hash
    swapped = Mixer("parallel", {"branches": [b.to_dict(), a.to_dict()]})
    assert with_params(swapped).hash != with_params(par).hash
    arch = with_params(par)
    assert arch.mixer_counts() == {"attention": 1, "mamba2": 1}
    branches = arch.canonical_dict()["layers"][0]["token_mixer"]["params"]["branches"]
    assert branches[1]["params"] == {"heads": 4, "expand": 2, "d_state": 16, "conv_size": 4}


def test_baselines_have_distinct_hashes_and_round_trip():
    hashes = {arch.hash for arch in BASELINES.values()}
    assert len(hashes) == len(BASELINES)
    for arch in BASELINES.values():
        assert Architecture.from_json(arch.to_json()) == arch


@pytest.mark.parametrize(
    "data,message",
    [
        ({"layers": []}, "missing 'd_model'"),
        ({"d_model": 8, "layers": [], "depth": 2}, r"unknown architecture key\(s\) \['depth'\]"),
        ({"d_model": 8, "layers": [{"token_mixer": {"params": {}}}]}, "must be a mapping with a 'type'"),
        ({"d_model": 8, "layers": [{"token_mixer": {"type": "gla"}, "ffn": {}}]}, "unknown layer key"),
    ],
)
def test_malformed_dicts_are_rejected(data, message):
    with pytest.raises(ValueError, match=message):
        Architecture.from_dict(data)


def test_canonical_rejects_unknown_primitives():
    arch = Architecture(64, [Layer(Mixer("transformerxl"), Mixer("swiglu"))])
    with pytest.raises(KeyError, match="unknown primitive 'transformerxl'"):
        arch.canonical_json()

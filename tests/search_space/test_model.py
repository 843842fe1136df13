"""The model builder and the baselines: shapes, decoding, state and parameter accounting."""

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from mixnas.search_space import BASELINES, Architecture, Layer, Mixer, build_model, get_baseline
from mixnas.search_space.primitives.moe import MoE

V = 37


def tiny(token: Mixer, channel: Mixer | None = None, **kwargs) -> Architecture:
    channel = channel or Mixer("swiglu")
    layers = [Layer(token, channel), Layer(Mixer("attention", {"heads": 2}), channel)]
    return Architecture(16, layers, **kwargs)


def decode(model, tokens):
    state = model.init_state(tokens.shape[0])
    logits = []
    for t in range(tokens.shape[1]):
        out, state = model.step(tokens[:, t], state)
        logits.append(out)
    return torch.stack(logits, dim=1), state


def state_tensor_bytes(state):
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, dict):
        return sum(state_tensor_bytes(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(state_tensor_bytes(v) for v in state)
    return 0


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_baseline_trains_and_decodes_like_forward(name):
    arch = get_baseline(name)
    assert arch.name == name and arch.d_model in range(64, 129)
    torch.manual_seed(0)
    model = build_model(arch, V)
    tokens = torch.randint(0, V, (2, 12))
    logits = model(tokens)
    assert logits.shape == (2, 12, V) and torch.isfinite(logits).all()
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens.flatten())
    (loss + 0.01 * model.aux_loss()).backward()
    assert all(p.grad is not None for p in model.parameters())
    with torch.no_grad():
        stepped, state = decode(model, tokens)
    torch.testing.assert_close(stepped, model(tokens), atol=1e-4, rtol=1e-4)
    assert state_tensor_bytes(state) == 2 * model.state_bytes(12, bytes_per_element=4)


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_baseline_flops_match_the_flop_counter(name):
    """Within a factor 2 for the reasons given in test_primitives (reference kernels do more)."""
    model = build_model(get_baseline(name), V)
    seq = 64
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randint(0, V, (1, seq)))
    ratio = counter.get_total_flops() / seq / model.flops_per_token(seq)
    assert 0.5 <= ratio <= 2.0, ratio


def test_baseline_patterns():
    assert BASELINES["jamba"].mixer_counts() == {"mamba2": 7, "attention": 1}
    assert [layer.channel_mixer.type for layer in BASELINES["jamba"].layers] == ["swiglu", "moe"] * 4
    assert BASELINES["gdn_attn_3to1"].mixer_counts() == {"gated_deltanet": 3, "attention": 1}
    griffin = BASELINES["griffin"].layers
    assert [layer.token_mixer.params.get("window") for layer in griffin] == [None, None, 32] * 2
    assert BASELINES["transformer"].layers[0].token_mixer.params["kv_heads"] == 2  # GQA
    get_baseline("transformer").layers.pop()
    assert len(BASELINES["transformer"].layers) == 4  # get_baseline hands out copies
    with pytest.raises(ValueError, match="unknown baseline 'gpt5'"):
        get_baseline("gpt5")


def test_state_dict_layout_and_parameter_counts():
    arch = Architecture(
        16,
        [Layer(Mixer("mamba2", {"heads": 2, "d_state": 4}), Mixer("none")),
         Layer(Mixer("attention", {"heads": 2}), Mixer("mlp"))],
        norm="layer",
        tie_embeddings=False,
    )
    model = build_model(arch, V)
    keys = set(model.state_dict())
    assert {"embed.weight", "lm_head.weight", "norm.weight", "norm.bias"} <= keys
    assert "blocks.0.norm1.weight" in keys and "blocks.0.token_mixer.A_log" in keys
    assert not any(k.startswith(("blocks.0.norm2", "blocks.0.channel_mixer")) for k in keys)
    assert "blocks.1.norm2.weight" in keys and "blocks.1.channel_mixer.up.weight" in keys
    total = sum(p.numel() for p in model.parameters())
    assert model.num_params(non_embedding=False) == total
    assert model.num_params(non_embedding=True) == total - 2 * V * 16
    tied = build_model(Architecture(16, arch.layers, "rms", True), V)
    assert "lm_head.weight" not in tied.state_dict()
    assert tied.num_params(non_embedding=False) - tied.num_params() == V * 16


def test_init_is_deterministic_given_the_seed():
    arch = get_baseline("gdn_attn_3to1")
    torch.manual_seed(3)
    a = build_model(arch, V).state_dict()
    torch.manual_seed(3)
    b = build_model(arch, V).state_dict()
    torch.manual_seed(4)
    c = build_model(arch, V).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_parallel_hybrid_model_decodes_like_forward():
    branches = [Mixer("attention", {"heads": 2}).to_dict(), Mixer("gla", {"heads": 2}).to_dict()]
    for combine in ("concat", "mix"):
        model = build_model(tiny(Mixer("parallel", {"branches": branches, "combine": combine})), V)
        tokens = torch.randint(0, V, (1, 9))
        with torch.no_grad():
            stepped, _ = decode(model, tokens)
            torch.testing.assert_close(stepped, model(tokens), atol=1e-4, rtol=1e-4)


def test_aux_loss_sums_the_moe_layers():
    moe = Mixer("moe", {"experts": 4, "top_k": 1})
    model = build_model(tiny(Mixer("gla", {"heads": 2}), moe), V)
    assert model.aux_loss().item() == 0.0  # before any forward
    model(torch.randint(0, V, (2, 10)))
    layers = [m for m in model.modules() if isinstance(m, MoE)]
    assert len(layers) == 2
    assert model.aux_loss().item() == pytest.approx(sum(m.aux_loss.item() for m in layers))
    assert build_model(tiny(Mixer("gla", {"heads": 2})), V).aux_loss().item() == 0.0


def test_state_bytes_grows_with_attention_only():
    recurrent = build_model(get_baseline("gated_deltanet"), V)
    hybrid = build_model(get_baseline("gdn_attn_3to1"), V)
    assert recurrent.state_bytes(128) == recurrent.state_bytes(4096)
    assert hybrid.state_bytes(4096) > hybrid.state_bytes(128)
    assert hybrid.state_bytes(4096, bytes_per_element=4) == 2 * hybrid.state_bytes(4096)


def test_builds_on_the_meta_device():
    for arch in BASELINES.values():
        with torch.device("meta"):
            model = build_model(arch, V)
        assert model.num_params() == build_model(arch, V).num_params()


@pytest.mark.parametrize(
    "arch,message",
    [
        (tiny(Mixer("attention", {"heads": 5})), "layer 0 token_mixer: attention: d_model 16 is"),
        (tiny(Mixer("gla", {"gate_rank": 0})), "layer 0 token_mixer: gla.gate_rank: 0 is below"),
        (tiny(Mixer("gla"), Mixer("moe", {"expert": "x"})), "layer 0 channel_mixer: moe.expert"),
        (tiny(Mixer("mlp")), "layer 0 token_mixer: primitive 'mlp' is a channel mixer"),
        (tiny(Mixer("gla"), norm="batch"), "norm must be 'rms' or 'layer', got 'batch'"),
        (Architecture(16, []), "architecture has no layers"),
    ],
)
def test_bad_architectures_fail_with_a_clear_message(arch, message):
    with pytest.raises(ValueError, match=message):
        build_model(arch, V)

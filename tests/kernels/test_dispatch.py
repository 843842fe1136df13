"""Op dispatch: table loading and bucket matching, the MIXNAS_KERNELS override, and the fallbacks
when an implementation is unavailable or unsupported for the inputs. The CUDA choices are tested
on CPU with `Call`s that say 'cuda' and a fake device name; every candidate that can run here is
also checked against the naive reference (on CUDA too, with MIXNAS_TEST_DEVICE=cuda)."""

import json
import os
import warnings

import pytest
import torch

import mixnas.kernels as K
from mixnas.kernels import dispatch as D
from mixnas.kernels import reference as R
from mixnas.kernels import torch_ops

from ._device import DEVICE, ON_GPU, TOL

H100 = "NVIDIA H100 80GB HBM3"


@pytest.fixture(autouse=True)
def fresh(monkeypatch, tmp_path):
    """No user table, no override, empty caches; the CUDA device is named H100."""
    monkeypatch.setenv(D.TABLE_ENV, "none")
    monkeypatch.delenv(D.OVERRIDE_ENV, raising=False)
    monkeypatch.setattr(D, "device_name", lambda index: H100)
    D._plan.cache_clear()
    D._refused.clear()
    monkeypatch.setattr(D, "_warn_once", lambda message: warnings.warn(message, RuntimeWarning,
                                                                       stacklevel=2))
    yield
    D._plan.cache_clear()
    D._refused.clear()


def cuda_call(op="attention", dtype="bfloat16", variant="causal", T=4096, D_=128, **kw):
    return D.Call(op, "cuda", dtype, variant, T, D_, **kw)


def write_table(path, entries, device=H100):
    doc = {"format": D.TABLE_FORMAT, "device": device,
           "entries": [D.table_entry(bucket, winner, {}, {}) for bucket, winner in entries]}
    path.write_text(json.dumps(doc))
    return path


def use_table(monkeypatch, tmp_path, entries, device=H100):
    path = write_table(tmp_path / "table.json", entries, device)
    monkeypatch.setenv(D.TABLE_ENV, str(path))
    return path


def test_defaults_without_a_table():
    assert D.plan(cuda_call()) == ["sdpa", "triton", "reference"]  # flex: windows only
    assert D.plan(cuda_call(variant="window")) == ["triton", "flex", "reference"]  # no SDPA
    assert D.choice(cuda_call(variant="offset")) == "triton"
    assert D.choice(cuda_call("linear_attention", variant="channel", chunk_size=64)) == "triton"
    assert D.choice(cuda_call("rms_norm", variant="-")) == "triton"
    cpu = D.Call("attention", "cpu", "float32", "causal", 64, 16)
    assert D.plan(cpu) == ["reference"]


def test_table_exact_and_nearest_buckets(monkeypatch, tmp_path):
    use_table(monkeypatch, tmp_path, [
        (("attention", "bfloat16", "causal", 1024, 64), "sdpa_flash"),
        (("attention", "bfloat16", "causal", 16384, 64), "triton"),
        (("attention", "bfloat16", "causal", 4096, 128), "sdpa_cudnn"),
        (("attention", "bfloat16", "window", 4096, 128), "flex"),
        (("delta_rule", "bfloat16", "gated", 16384, 128), "reference"),
    ])
    assert D.choice(cuda_call(T=1000, D_=64)) == "sdpa_flash"  # bucket 1024
    assert D.choice(cuda_call(T=12000, D_=64)) == "triton"  # bucket 16384
    assert D.choice(cuda_call(T=3000, D_=64)) == "sdpa_flash"  # 4096: as near 1024 as 16384
    assert D.choice(cuda_call(T=64, D_=128)) == "sdpa_cudnn"  # only one for D=128
    assert D.choice(cuda_call(T=64, D_=96)) == "sdpa_cudnn"  # D bucket 128
    assert D.choice(cuda_call(T=8192, D_=32)) == "triton"  # nearest D 64, then nearest T 16384
    assert D.choice(cuda_call(variant="window", T=100, D_=128)) == "flex"
    assert D.choice(cuda_call(dtype="float16")) == "sdpa"  # no float16 entry: the default
    assert D.choice(cuda_call("delta_rule", variant="gated", T=2048, chunk_size=64)) == "reference"
    assert D.choice(cuda_call("delta_rule", variant="plain", chunk_size=64)) == "triton"


def test_a_winner_that_cannot_run_the_call_falls_back(monkeypatch, tmp_path):
    use_table(monkeypatch, tmp_path, [
        (("attention", "float32", "causal", 4096, 128), "sdpa_cudnn"),
        (("attention", "bfloat16", "causal", 4096, 256), "sdpa_cudnn"),
        (("attention", "bfloat16", "window", 4096, 64), "flex"),
        (("linear_attention", "bfloat16", "token", 4096, 128), "triton"),
    ])
    assert D.plan(cuda_call(dtype="float32"))[0] == "sdpa"  # cuDNN needs half precision
    assert D.choice(cuda_call(D_=256)) == "sdpa"  # cuDNN here: head dim <= 128
    assert D.choice(cuda_call(variant="window", D_=60)) == "triton"  # flex: power-of-two dims
    call = cuda_call("linear_attention", variant="token", chunk_size=24)
    assert D.plan(call) == ["reference"]  # Triton tiles take 16, 32, 64


def test_a_table_of_another_device_is_ignored(monkeypatch, tmp_path):
    use_table(monkeypatch, tmp_path, [(("attention", "bfloat16", "causal", 4096, 128), "triton")],
              device="NVIDIA A100-SXM4-80GB")
    with pytest.warns(RuntimeWarning, match="measured on 'NVIDIA A100"):
        assert D.choice(cuda_call()) == "sdpa"


def test_the_table_is_reread_when_it_changes(monkeypatch, tmp_path):
    path = use_table(monkeypatch, tmp_path,
                     [(("attention", "bfloat16", "causal", 4096, 128), "triton")])
    assert D.choice(cuda_call()) == "triton"
    write_table(path, [(("attention", "bfloat16", "causal", 4096, 128), "sdpa_efficient")])
    os.utime(path, (1, 1))  # a distinct modification time, however fast the rewrite
    assert D.choice(cuda_call()) == "sdpa_efficient"


@pytest.mark.parametrize("doc,match", [
    ({"format": "other"}, "not a kernel table"),
    ({"format": D.TABLE_FORMAT, "entries": [{"op": "attention"}]}, r"entries\[0\]"),
    ({"format": D.TABLE_FORMAT, "entries": [D.table_entry(
        ("attention", "bfloat16", "causal", 1, 64), "cuda_magic", {}, {})]}, "cuda_magic"),
])
def test_a_bad_table_is_a_clear_error(monkeypatch, tmp_path, doc, match):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    monkeypatch.setenv(D.TABLE_ENV, str(path))
    with pytest.raises(ValueError, match=match):
        D.choice(cuda_call())
    monkeypatch.setenv(D.TABLE_ENV, str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match="no such kernel table"):
        D.load_table(tmp_path / "missing.json")


def test_a_broken_table_at_the_default_place_only_warns(monkeypatch, tmp_path):
    monkeypatch.delenv(D.TABLE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    (tmp_path / "mixnas").mkdir()
    (tmp_path / "mixnas" / "kernel_table.json").write_text("{not json")
    with pytest.warns(RuntimeWarning, match="ignoring the kernel table"):
        assert D.choice(cuda_call()) == "sdpa"
    monkeypatch.setenv(D.TABLE_ENV, "none")
    assert D.default_table_path() is None


def test_merge_table_replaces_buckets_and_other_devices(tmp_path):
    path = tmp_path / "t.json"
    a = D.table_entry(("attention", "bfloat16", "causal", 1024, 64), "triton", {}, {})
    b = D.table_entry(("attention", "bfloat16", "causal", 2048, 64), "sdpa_flash", {}, {})
    D.merge_table(path, H100, [a, b], {})
    a2 = dict(a, winner="sdpa_cudnn")
    doc = D.merge_table(path, H100, [a2], {})
    assert {e["T"]: e["winner"] for e in doc["entries"]} == {1024: "sdpa_cudnn", 2048: "sdpa_flash"}
    doc = D.merge_table(path, "NVIDIA H200", [a], {})
    assert [e["winner"] for e in doc["entries"]] == ["triton"]
    assert D.Table.from_json(json.loads(path.read_text())).device == "NVIDIA H200"


def test_override_forces_per_op_and_globally(monkeypatch, tmp_path):
    use_table(monkeypatch, tmp_path, [(("attention", "bfloat16", "causal", 4096, 128), "triton")])
    monkeypatch.setenv(D.OVERRIDE_ENV, "reference")
    assert D.choice(cuda_call()) == "reference"
    assert D.choice(cuda_call("rms_norm", variant="-")) == "reference"
    monkeypatch.setenv(D.OVERRIDE_ENV, "reference, attention=sdpa_cudnn")
    assert D.choice(cuda_call()) == "sdpa_cudnn"
    assert D.choice(cuda_call("swiglu", variant="-")) == "reference"
    monkeypatch.setenv(D.OVERRIDE_ENV, "flex")  # only attention has it: other ops stay automatic
    assert D.choice(cuda_call(variant="window")) == "flex"
    assert D.choice(cuda_call("swiglu", variant="-")) == "triton"
    monkeypatch.setenv(D.OVERRIDE_ENV, "auto")
    assert D.choice(cuda_call()) == "triton"


def test_a_forced_implementation_that_cannot_run_warns_and_falls_back(monkeypatch):
    monkeypatch.setenv(D.OVERRIDE_ENV, "attention=sdpa_flash")
    with pytest.warns(RuntimeWarning, match="forces attention=sdpa_flash.*sliding window"):
        assert D.choice(cuda_call(variant="window")) == "triton"
    cpu = D.Call("attention", "cpu", "float32", "causal", 64, 16)
    monkeypatch.setenv(D.OVERRIDE_ENV, "sdpa_cudnn")
    with pytest.warns(RuntimeWarning, match="needs CUDA"):
        assert D.plan(cpu) == ["reference"]
    monkeypatch.setenv(D.OVERRIDE_ENV, "triton")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.warns(RuntimeWarning, match="Triton needs CUDA"):
        assert D.plan(cpu) == ["reference"]


@pytest.mark.parametrize("text,match", [
    ("cuda", "unknown implementation 'cuda'"),
    ("atention=triton", "unknown op 'atention'.*did you mean 'attention'"),
    ("attention=sdpa_cudn", "did you mean 'sdpa_cudnn'"),
    ("rms_norm=flex", "unknown implementation 'flex'"),
])
def test_bad_overrides_are_clear_errors(monkeypatch, text, match):
    monkeypatch.setenv(D.OVERRIDE_ENV, text)
    q = torch.randn(1, 8, 2, 16)
    with pytest.raises(ValueError, match=f"MIXNAS_KERNELS=.*{match}"):
        K.attention(q, q, q)


@pytest.mark.skipif(ON_GPU, reason="forces Triton on CPU tensors (the interpreter)")
def test_cpu_ops_keep_the_reference_path_and_the_override_reaches_them(monkeypatch):
    torch.manual_seed(0)
    q = torch.randn(1, 20, 2, 16)
    assert K.implementation("attention", q, q, q) == "reference"
    assert K.implementation("linear_attention", q, q, q, chunk_size=24) == "reference"
    monkeypatch.setenv(D.OVERRIDE_ENV, "triton")
    assert K.implementation("attention", q, q, q, window=5) == "triton"
    assert K.implementation("rms_norm", q) == "triton"
    torch.testing.assert_close(K.attention(q, q, q, window=5), R.attention(q, q, q, window=5))
    with pytest.warns(RuntimeWarning, match="chunk_size=24"):
        assert K.implementation("delta_rule", q, q, q, q[..., 0], chunk_size=24) == "reference"


def test_a_fallible_implementation_refusing_at_run_time_hands_over(monkeypatch):
    """SDPA answers 'No available kernel' for inputs a pinned backend cannot take: the next
    implementation runs, the refusal is remembered for that call, and other errors propagate."""
    calls = []

    def refusing(q, k, v, causal=True, window=None, scale=None):
        calls.append(1)
        raise RuntimeError("No available kernel. Aborting execution.")

    cand = D.Candidate("sdpa_flash", lambda: refusing, lambda call: None, True)
    monkeypatch.setitem(D.CANDIDATES["attention"], "sdpa_flash", cand)
    monkeypatch.setenv(D.OVERRIDE_ENV, "attention=sdpa_flash")
    q = torch.randn(1, 8, 2, 16)
    with pytest.warns(RuntimeWarning, match="sdpa_flash refused"):
        out = K.attention(q, q, q)
    torch.testing.assert_close(out, R.attention(q, q, q))
    K.attention(q, q, q)
    assert len(calls) == 1  # not retried for the same call

    def broken(*args, **kwargs):
        raise RuntimeError("an honest bug")

    monkeypatch.setitem(D.CANDIDATES["attention"], "sdpa_flash",
                        D.Candidate("sdpa_flash", lambda: broken, lambda call: None, True))
    with pytest.raises(RuntimeError, match="honest bug"):
        K.attention(q[:, :4], q[:, :4], q[:, :4])


def runnable(name, call):
    """Can this candidate run here? (dispatch's static check: device, dtype, variant, head dim)"""
    return D.CANDIDATES["attention"][name].refuses(call) is None


@pytest.mark.filterwarnings("ignore:.*torch.compile")
@pytest.mark.parametrize("name", sorted(D.CANDIDATES["attention"]))
@pytest.mark.parametrize("Tq,Tk,H,Hkv,Dh,window", [
    (64, 64, 4, 4, 32, None), (64, 64, 4, 2, 64, None), (1, 40, 4, 1, 16, None),
    (70, 70, 4, 2, 32, 9), (5, 40, 2, 1, 16, 7), (40, 40, 2, 2, 16, 100),
])
def test_every_attention_candidate_agrees_with_the_naive_reference(name, Tq, Tk, H, Hkv, Dh,
                                                                   window):
    torch.manual_seed(0)
    dtype = torch.bfloat16 if ON_GPU else torch.float32
    q = torch.randn(2, Tq, H, Dh, device=DEVICE, dtype=dtype)
    k, v = (torch.randn(2, Tk, Hkv, Dh, device=DEVICE, dtype=dtype) for _ in range(2))
    call = D.attention_call(q, k, True, window)
    forward_only = name == "flex" and not ON_GPU  # no FlexAttention backward on CPU
    if not forward_only and not runnable(name, call):
        pytest.skip(f"{name} cannot run {call.variant} on {DEVICE.type}")
    fn = D.CANDIDATES["attention"][name].load()
    try:
        out = fn(q, k, v, causal=True, window=window, scale=0.3)
    except RuntimeError as exc:
        if torch_ops.backend_unavailable(exc):
            pytest.skip(f"{name}: {exc}")
        raise
    ref = R.attention_naive(q.double(), k.double(), v.double(), window=window, scale=0.3)
    err = ((out.double() - ref).norm() / ref.norm()).item()
    assert err < TOL[DEVICE.type, dtype] * 2, f"{name}: {err:.2e}"


def test_sdpa_and_flex_refuse_what_they_cannot_express():
    q = torch.randn(1, 8, 2, 16)
    with pytest.raises(ValueError, match="window"):
        torch_ops.sdpa_attention(q, q, q, window=3)
    with pytest.raises(ValueError, match="Tq == Tk"):
        torch_ops.sdpa_attention(q[:, :3], q, q)
    with pytest.raises(ValueError, match="causal"):
        torch_ops.flex_attention(q, q, q, causal=False, window=3)
    assert torch_ops.backend_unavailable(RuntimeError("No viable backend for ..."))
    assert not torch_ops.backend_unavailable(RuntimeError("CUDA error: illegal address"))


@pytest.mark.skipif(not ON_GPU, reason="CUDA tensors (MIXNAS_TEST_DEVICE=cuda)")
def test_cuda_ops_take_the_defaults_and_agree_with_the_reference():
    torch.manual_seed(0)
    q = torch.randn(2, 256, 4, 64, device=DEVICE, dtype=torch.bfloat16)
    k = torch.randn(2, 256, 2, 64, device=DEVICE, dtype=torch.bfloat16)
    assert K.implementation("attention", q, k, k) == "sdpa"
    assert K.implementation("attention", q, k, k, window=32) == "triton"
    assert K.implementation("linear_attention", q, q, q) == "triton"
    assert K.implementation("linear_attention", q, q, q, chunk_size=48) == "reference"
    for window in (None, 32):
        out = K.attention(q, k, k, window=window)
        ref = R.attention_naive(q.double(), k.double(), k.double(), window=window)
        assert ((out.double() - ref).norm() / ref.norm()).item() < TOL["cuda", torch.bfloat16]

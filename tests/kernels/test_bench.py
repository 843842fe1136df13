"""The kernel benchmark script: refuses to run without a GPU, and its CPU smoke mode produces
well-formed results (timings are not checked: benchmarks measure speed, tests do not)."""

import json

import torch

from mixnas.kernels import bench


def test_without_a_gpu_it_says_so_and_fails(capsys):
    if torch.cuda.is_available():
        return
    assert bench.main([]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err


def test_peak_table():
    assert bench.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert bench.peak_tflops("NVIDIA H200") == 989.0
    assert bench.peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert bench.peak_tflops("NVIDIA H100 PCIe") is None
    assert bench.peak_tflops("NVIDIA GeForce RTX 4090") is None


def test_smoke_mode_writes_json(tmp_path):
    out = tmp_path / "kernels.json"
    code = bench.main(["--smoke", "--json", str(out), "--lengths", "40", "--head-dims", "16"])
    assert code == 0
    rows = json.loads(out.read_text())
    impls = {(r["op"], r["impl"], r["pass"]) for r in rows}
    for op, impl in [("attention", "triton"), ("attention", "sdpa"), ("attention", "naive"),
                     ("linear_attention", "triton_decay"), ("linear_attention", "reference_plain")]:
        assert {(op, impl, "fwd"), (op, impl, "fwd+bwd")} <= impls
    for r in rows:
        assert r["ms"] > 0 and r["tflops"] > 0 and r["pct_peak"] is None and r["T"] == 40
        assert r["gflop"] > 0

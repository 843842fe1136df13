"""The kernel benchmark: refuses to run without a GPU, and its smoke mode produces well-formed rows,
checks, a dispatch table that dispatch reads back, and issue 17's figures (timings are not
checked: benchmarks measure speed, tests do not)."""

import json

import pytest
import torch

from mixnas.cli import main as cli_main
from mixnas.kernels import bench, dispatch


def test_without_a_gpu_it_says_so_and_fails(capsys):
    if torch.cuda.is_available():
        pytest.skip("there is a GPU")
    assert bench.main([]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err


def test_peak_table():
    assert bench.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert bench.peak_tflops("NVIDIA H200") == 989.0
    assert bench.peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert bench.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert bench.peak_tflops("NVIDIA GeForce RTX 4090") is None


def test_bad_arguments_exit_2(capsys):
    assert bench.main(["--smoke", "--lengths", "0"]) == 2
    assert "--lengths" in capsys.readouterr().err
    assert bench.main(["--smoke", "--ops", "rms_norm", "--variants", "causal"]) == 2
    with pytest.raises(SystemExit) as exit_:
        bench.main(["--ops", "softmax"])
    assert exit_.value.code == 2


def test_the_cli_passes_every_option_through(monkeypatch):
    seen = []
    monkeypatch.setattr(bench, "main", lambda argv: seen.append(argv) or 0)
    assert cli_main(["bench", "kernels", "--smoke", "--json", "x.json", "--table", "t.json",
                     "--ops", "attention", "--lengths", "64", "128", "--head-dims", "16",
                     "--variants", "causal"]) == 0
    argv = seen[0]
    assert bench.build_parser().parse_args(argv).lengths == [64, 128]
    cli_flags = {a for a in argv if a.startswith("--")}
    bench_flags = {o for action in bench.build_parser()._actions for o in action.option_strings
                   if o.startswith("--") and o != "--help"}
    assert cli_flags == bench_flags


def test_smoke_mode_writes_rows_checks_table_and_figures(tmp_path, monkeypatch):
    out, table = tmp_path / "kernels.json", tmp_path / "table.json"
    code = bench.main(["--smoke", "--json", str(out), "--table", str(table), "--lengths", "40",
                       "--head-dims", "16", "--ops", "attention", "linear_attention",
                       "delta_rule", "--variants", "causal", "token", "gated"])
    assert code == 0
    doc = json.loads(out.read_text())
    assert doc["environment"]["command"].startswith("mixnas bench kernels")
    rows = doc["rows"]
    impls = {(r["op"], r["impl"], r["pass"]) for r in rows}
    gpu = torch.cuda.is_available()  # smoke runs float32 on the GPU when there is one
    expected = [("attention", "triton"), ("attention", "sdpa"), ("attention", "reference"),
                ("linear_attention", "triton"), ("delta_rule", "reference")]
    expected += [("attention", "sdpa_efficient")] if gpu else [("attention", "sdpa_flash")]
    for op, impl in expected:
        assert {(op, impl, "fwd"), (op, impl, "fwd+bwd")} <= impls
    assert any(op == "attention" and impl.startswith("dispatched:") for op, impl, _ in impls)
    for r in rows:
        assert r["ms"] > 0 and r["T"] == 40 and r["error"] is None
        assert gpu or r["pct_peak"] is None  # no peak for a CPU
    assert all(c["ok"] for c in doc["checks"]), [c for c in doc["checks"] if not c["ok"]]
    assert {c["impl"] for c in doc["checks"] if c["op"] == "attention"} >= {"triton", "sdpa"}
    # every candidate either ran or says why not (cuDNN / efficient / flex: CUDA only here)
    entry = next(e for e in doc["table"]["entries"] if e["op"] == "attention")
    assert set(entry["ms"]) | set(entry["rejected"]) == set(dispatch.CANDIDATES["attention"])
    assert entry["winner"] == min(entry["ms"], key=entry["ms"].get)
    assert dispatch.load_table(table).winners == dispatch.Table.from_json(doc["table"]).winners
    figures = doc["figures"]
    (att,) = figures["attention_vs_sdpa"]
    assert att["T"] == 40 and att["sdpa_best"].startswith("sdpa") and att["speedup_triton"] > 0
    assert {f["op"] for f in figures["linear_vs_sdpa"]} == {"linear_attention", "delta_rule"}
    assert figures["attention_fwd_8k_d128"] is None  # not measured at that shape here


def test_a_wrong_candidate_never_wins(monkeypatch, tmp_path):
    """Each candidate is checked against the reference before it may win: a fast wrong one is
    rejected with its error."""
    fast_and_wrong = dispatch.Candidate("sdpa_math", lambda: lambda q, k, v, **kw: q * 1.0,
                                        lambda call: None, True)
    monkeypatch.setitem(dispatch.CANDIDATES["attention"], "sdpa_math", fast_and_wrong)
    monkeypatch.setattr(bench.bench_cases, "SKIP", set())
    out = tmp_path / "k.json"
    assert bench.main(["--smoke", "--json", str(out), "--lengths", "24", "--head-dims", "16",
                       "--ops", "attention", "--variants", "causal"]) == 0
    doc = json.loads(out.read_text())
    (check,) = [c for c in doc["checks"] if c["impl"] == "sdpa_math"]
    assert not check["ok"] and check["errors"]["output"] > 0.1
    (entry,) = doc["table"]["entries"]
    assert entry["winner"] != "sdpa_math" and entry["rejected"]["sdpa_math"].startswith("wrong")
    assert not any(r["impl"] == "sdpa_math" for r in doc["rows"])


def _row(op, variant, impl, pass_, T, D, ms, tflops=None, pct=None):
    return {"op": op, "variant": variant, "impl": impl, "pass": pass_, "T": T, "head_dim": D,
            "ms": ms, "tflops": tflops, "pct_peak": pct, "error": None}


def test_figures_compare_with_the_best_sdpa_backend():
    rows = [
        _row("attention", "causal", "sdpa_flash", "fwd+bwd", 16384, 128, 2.0),
        _row("attention", "causal", "sdpa_cudnn", "fwd+bwd", 16384, 128, 1.0),
        _row("attention", "causal", "triton", "fwd+bwd", 16384, 128, 1.25),
        _row("attention", "causal", "dispatched:sdpa_cudnn", "fwd+bwd", 16384, 128, 1.0),
        _row("attention", "causal", "sdpa_flash", "fwd+bwd", 1024, 64, None),  # failed
        _row("attention", "causal", "triton", "fwd+bwd", 1024, 64, 0.5),
        _row("attention", "causal", "triton", "fwd", 8192, 128, 0.1, 500.0, 50.5),
        _row("attention", "causal", "sdpa_cudnn", "fwd", 8192, 128, 0.09, 600.0, 60.7),
        _row("linear_attention", "token", "triton", "fwd+bwd", 16384, 128, 0.2),
        _row("linear_attention", "token", "dispatched:triton", "fwd+bwd", 16384, 128, 0.25),
        _row("delta_rule", "gated", "triton", "fwd+bwd", 4096, 128, 0.5),  # no attention at 4k
    ]
    fig = bench.figures(rows, 989.0)
    by_t = {f["T"]: f for f in fig["attention_vs_sdpa"]}
    assert by_t[16384]["sdpa_best"] == "sdpa_cudnn" and by_t[16384]["speedup_triton"] == 0.8
    assert by_t[16384]["dispatched"] == "sdpa_cudnn" and by_t[16384]["speedup_dispatched"] == 1.0
    assert by_t[1024]["sdpa_best"] is None and by_t[1024]["speedup_triton"] is None
    peak = fig["attention_fwd_8k_d128"]
    assert peak["triton"]["pct_peak"] == 50.5 and peak["sdpa_best"]["impl"] == "sdpa_cudnn"
    assert peak["dispatched"] is None
    linear = {(f["op"], f["impl"]): f["speedup"] for f in fig["linear_vs_sdpa"]}
    assert linear == {("linear_attention", "triton"): 5.0,
                      ("linear_attention", "dispatched:triton"): 4.0}

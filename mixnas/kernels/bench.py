"""Kernel benchmark: the Triton ops against torch SDPA and naive torch forms (`mixnas bench
kernels`, `python benchmarks/kernels.py`).

Reports milliseconds, TFLOP/s and the percentage of the device's dense bf16 peak for forward and
forward+backward, bf16, at T in {1k, 2k, 4k, 8k, 16k} and head_dim 64 and 128. Every
implementation of an op is credited with the same analytic FLOPs (`mixnas.kernels.flops`: causal
attention counts the attended half), so TFLOP/s compare like with like. It needs a CUDA GPU;
`--smoke` instead runs tiny float32 shapes on CPU (Triton under its interpreter) to check the
script itself, and its timings mean nothing.
"""

import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

from mixnas.kernels import reference

# Dense bf16 tensor-core peaks in TFLOP/s (no sparsity), matched against the device name.
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}
MODEL_DIM = 2048  # heads = MODEL_DIM // head_dim
TOKENS = 16384  # batch = TOKENS // T


def peak_tflops(device_name):
    """Dense bf16 peak of a device, None when unknown (H100 PCIe/NVL differ from SXM: unknown)."""
    if "H100" in device_name and ("PCIe" in device_name or "NVL" in device_name):
        return None
    for key, peak in PEAK_BF16_TFLOPS.items():
        if key in device_name:
            return peak
    return None


def naive_attention(q, k, v):
    """Materialised causal softmax(QK^T / sqrt(d)) V in torch, (B, T, H, D) layout."""
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    T = q.shape[2]
    scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    mask = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)
    p = scores.float().masked_fill(mask, float("-inf")).softmax(-1).to(v.dtype)
    return (p @ v).transpose(1, 2)


def sdpa_attention(q, k, v):
    """torch SDPA, letting torch pick its best backend (flash / efficient / cuDNN)."""
    o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                       is_causal=True)
    return o.transpose(1, 2)


def _timer(device):
    """ms per call of fn: triton's do_bench (median) on a GPU, one run after a warm-up on CPU."""
    if device.type == "cuda":
        from triton.testing import do_bench

        return lambda fn: do_bench(fn, warmup=25, rep=100, return_mode="median")

    def cpu_time(fn):
        fn()
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) * 1e3

    return cpu_time


def _cases(smoke):
    if smoke:
        return [64, 128], [16, 32], torch.float32, 128, 32
    return [1024, 2048, 4096, 8192, 16384], [64, 128], torch.bfloat16, TOKENS, MODEL_DIM


def _attention_impls(triton_ops):
    impls = {"sdpa": sdpa_attention, "naive": naive_attention}
    if triton_ops is not None:
        impls["triton"] = triton_ops.attention
    return impls


def _linear_impls(triton_ops):
    """Chunked linear attention with a per-token decay (Mamba-2 / GLA-scalar style) and plain."""
    impls = {
        "reference_decay": lambda q, k, v, g: reference.linear_attention(q, k, v, g),
        "reference_plain": lambda q, k, v, g: reference.linear_attention(q, k, v),
    }
    if triton_ops is not None:
        impls["triton_decay"] = lambda q, k, v, g: triton_ops.linear_attention(q, k, v, g)
        impls["triton_plain"] = lambda q, k, v, g: triton_ops.linear_attention(q, k, v)
    return impls


def _measure(fn, inputs, timer, backward):
    leaves = [x for x in inputs if x.requires_grad]

    def step():
        out = fn(*inputs)
        if backward:
            out.backward(grad)
            for x in leaves:
                x.grad = None

    grad = None
    if backward:
        grad = torch.randn_like(fn(*inputs))
    return timer(step)


def run(json_out=None, smoke=False, ops=("attention", "linear_attention"), lengths=None,
        head_dims=None, log=print):
    """Benchmark and return a list of result dicts (also written to `json_out` if given, '-' for
    stdout). `lengths` / `head_dims` override the default sweeps."""
    device = torch.device("cuda" if torch.cuda.is_available() and not smoke else "cpu")
    if device.type != "cuda" and not smoke:
        raise RuntimeError("mixnas bench kernels needs a CUDA GPU (use --smoke for a CPU check "
                           "of the script itself)")
    if smoke:
        os.environ.setdefault("TRITON_INTERPRET", "1")
    # imported here, after TRITON_INTERPRET is set: these import triton
    from mixnas.kernels.flops import attention_flops, linear_attention_flops

    try:
        from mixnas.kernels import triton_ops
    except RuntimeError as e:  # smoke mode in a process that imported triton too early
        if not smoke:
            raise
        log(f"triton skipped: {e}")
        triton_ops = None
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (smoke)"
    peak = peak_tflops(name) if device.type == "cuda" else None
    timer = _timer(device)
    default_lengths, default_dims, dtype, tokens, model_dim = _cases(smoke)
    lengths, head_dims = lengths or default_lengths, head_dims or default_dims
    results = []
    for T in lengths:
        for D in head_dims:
            B, H = max(1, tokens // T), max(1, model_dim // D)

            def make(*shape, fn=None):
                x = torch.randn(*shape, device=device)
                return (x if fn is None else fn(x)).to(dtype).requires_grad_()

            q, k, v = (make(B, T, H, D) for _ in range(3))
            suites = []
            if "attention" in ops:
                suites.append(("attention", _attention_impls(triton_ops), (q, k, v),
                               attention_flops(B, T, T, H, D)))
            if "linear_attention" in ops:
                g = F.logsigmoid(torch.randn(B, T, H, device=device)).requires_grad_()
                suites.append(("linear_attention", _linear_impls(triton_ops), (q, k, v, g),
                               linear_attention_flops(B, T, H, D, D)))
            for op, impls, inputs, flops in suites:
                for impl, fn in impls.items():
                    for backward in (False, True):
                        # backward: 2.5x the forward for attention, 2x for linear attention
                        total = flops + (flops * (5 if op == "attention" else 4) // 2) * backward
                        row = {"op": op, "impl": impl, "pass": "fwd+bwd" if backward else "fwd",
                               "T": T, "head_dim": D, "batch": B, "heads": H,
                               "dtype": str(dtype).replace("torch.", ""), "device": name,
                               "gflop": total / 1e9}
                        try:
                            ms = _measure(fn, inputs, timer, backward)
                        except torch.cuda.OutOfMemoryError:
                            torch.cuda.empty_cache()
                            row.update(ms=None, tflops=None, pct_peak=None, error="out of memory")
                        else:
                            tflops = total / (ms * 1e-3) / 1e12
                            row.update(ms=ms, tflops=tflops,
                                       pct_peak=None if peak is None else 100 * tflops / peak)
                        results.append(row)
                        log(_format(row))
    if json_out is not None:
        text = json.dumps(results, indent=2)
        if json_out == "-":
            sys.stdout.write(text + "\n")
        else:
            with open(json_out, "w") as f:
                f.write(text + "\n")
    return results


def _format(row):
    if row.get("error"):
        return (f"{row['op']:17s} {row['impl']:16s} {row['pass']:8s} T={row['T']:6d} "
                f"D={row['head_dim']:4d}  {row['error']}")
    pct = "   n/a" if row["pct_peak"] is None else f"{row['pct_peak']:5.1f}%"
    return (f"{row['op']:17s} {row['impl']:16s} {row['pass']:8s} T={row['T']:6d} "
            f"D={row['head_dim']:4d} {row['ms']:10.3f} ms {row['tflops']:8.2f} TFLOP/s {pct}")


def main(argv=None):
    """CLI entry point; returns the exit status (2 without a GPU and without --smoke)."""
    parser = argparse.ArgumentParser(prog="mixnas bench kernels",
                                     description="Benchmark the Triton kernels (needs a GPU).")
    parser.add_argument("--json", nargs="?", const="-", default=None, metavar="PATH",
                        help="write the results as JSON to PATH (stdout when PATH is omitted)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny float32 shapes on CPU to check the script (timings meaningless)")
    parser.add_argument("--ops", nargs="+", default=["attention", "linear_attention"],
                        choices=["attention", "linear_attention"])
    parser.add_argument("--lengths", nargs="+", type=int, help="sequence lengths to sweep")
    parser.add_argument("--head-dims", nargs="+", type=int, help="head dims to sweep")
    args = parser.parse_args(argv)
    log = (lambda line: print(line, file=sys.stderr)) if args.json == "-" else print
    try:
        results = run(args.json, smoke=args.smoke, ops=args.ops, lengths=args.lengths,
                      head_dims=args.head_dims, log=log)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0 if results else 1

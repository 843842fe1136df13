"""Kernel benchmark and dispatch table (`mixnas bench kernels`, `python benchmarks/kernels.py`).

For every case of `bench_cases.sweep` (attention causal at T = 1k..16k and D = 64, 128; windowed
attention; chunked linear attention and the delta rule with each decay form; the elementwise
ops), every implementation `dispatch` knows is first checked against the float32 reference
(output and every gradient), then timed forward and forward+backward with `triton.testing.do_bench`
(median). The fastest correct one per (op, dtype, variant, T bucket, D bucket) becomes the
table's winner (written to `--table`, by default where dispatch reads it), and the op is then
timed once more through `mixnas.kernels` itself: the dispatched figure. The JSON holds every row,
every check, the table and issue 17's figures (`figures`), with provenance.

It needs a CUDA GPU; `--smoke` runs tiny float32 shapes on CPU (Triton under its interpreter, or
the GPU when there is one) to check the script itself: its timings mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from mixnas.kernels import bench_cases, dispatch

# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s from the vendors' datasheets, matched in
# order against the device name (PCIe and NVL H100s before the SXM one).
PEAK_BF16_TFLOPS = [
    ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("H200", 989.0),
    ("GH200", 989.0), ("H800", 989.0), ("B200", 2250.0), ("A100", 312.0), ("L40S", 362.0),
    ("L4", 121.0),
]


def peak_tflops(device_name: str) -> float | None:
    """Dense bf16 peak of a device by name, None when unknown."""
    for key, peak in PEAK_BF16_TFLOPS:
        if key in device_name:
            return peak
    return None


def provenance(argv) -> dict:
    """Command, date, machine and versions (the keys of benchmarks.common.environment, which this
    package may not import)."""
    from importlib.metadata import PackageNotFoundError, version

    def ver(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {
        "command": " ".join(["mixnas", "bench", "kernels", *argv]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "processor": platform.machine(),
                    "load_average": [round(x, 2) for x in os.getloadavg()]},
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "cuda": torch.version.cuda, "triton": ver("triton"), "mixnas": ver("mixnas")},
    }


def _timer(device):
    """ms per call: triton's do_bench (median) on a GPU; one run after a warm-up on CPU."""
    if device.type == "cuda":
        from triton.testing import do_bench

        return lambda fn: do_bench(fn, warmup=25, rep=100, return_mode="median")

    def cpu_time(fn):
        fn()
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) * 1e3

    return cpu_time


def _measure(fn, args, kwargs, timer, backward):
    leaves = [x for x in [*args, *kwargs.values()] if torch.is_tensor(x) and x.requires_grad]
    grad = torch.randn_like(fn(*args, **kwargs)) if backward else None

    def step():
        out = fn(*args, **kwargs)
        if backward:
            out.backward(grad)
            for x in leaves:
                x.grad = None

    return timer(step)


class Bench:
    """One benchmark run: measures cases, keeps rows, checks and table entries, writes JSON."""

    def __init__(self, device, smoke, table_path, json_out, argv, log):
        self.device, self.smoke, self.log = device, smoke, log
        self.name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        self.peak = peak_tflops(self.name) if device.type == "cuda" else None
        self.timer = _timer(device)
        self.table_path, self.json_out = table_path, json_out
        self.doc = {"environment": provenance(argv), "device": self.name,
                    "peak_bf16_tflops": self.peak, "smoke": smoke, "rows": [], "checks": [],
                    "table": None, "figures": None}
        self.entries: list[dict] = []

    def row(self, case, impl, backward, ms=None, error=None):
        flops = case.flops(backward)
        tflops = None if ms is None or flops is None else flops / (ms * 1e-3) / 1e12
        row = {"op": case.op, "variant": case.variant, "impl": impl,
               "pass": "fwd+bwd" if backward else "fwd", "T": case.T, "head_dim": case.D,
               "batch": case.B, "heads": case.H, "window": case.window,
               "dtype": case.dtype_name, "device": self.name,
               "gflop": None if flops is None else flops / 1e9, "ms": ms, "tflops": tflops,
               "pct_peak": None if tflops is None or self.peak is None
               else 100 * tflops / self.peak, "error": error}
        self.doc["rows"].append(row)
        self.log(_format(row))
        return row

    def time_impl(self, case, impl, fn, args, kwargs) -> float | None:
        """Forward and forward+backward rows; returns the fwd+bwd ms (None if it failed)."""
        ms = None
        for backward in (False, True):
            try:
                ms = _measure(fn, args, kwargs, self.timer, backward)
            except torch.OutOfMemoryError:
                torch.cuda.empty_cache()
                self.row(case, impl, backward, error="out of memory")
                return None
            except Exception as exc:  # an implementation that fails here loses, the run goes on
                self.row(case, impl, backward, error=f"{type(exc).__name__}: "
                                                     f"{str(exc).splitlines()[0][:200]}")
                return None
            self.row(case, impl, backward, ms=ms)
        return ms

    def run_case(self, case):
        args, kwargs = bench_cases.make_inputs(case, self.device)
        timed, rejected = {}, {}
        for impl, why in bench_cases.candidates(case, self.device.type).items():
            if why is not None:
                rejected[impl] = why
                continue
            fn = dispatch.CANDIDATES[case.op][impl].load()
            try:
                ok, errors = bench_cases.check(fn, case, self.device)
            except Exception as exc:
                ok, errors = False, {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
            self.doc["checks"].append({"case": case.label(), "op": case.op, "impl": impl,
                                       "ok": ok, "errors": errors})
            if not ok:
                rejected[impl] = f"wrong: {errors}"
                continue
            ms = self.time_impl(case, impl, fn, args, kwargs)
            if ms is None:
                rejected[impl] = "failed when timed"
            else:
                timed[impl] = ms
        if timed:
            winner = min(timed, key=timed.get)
            call = dispatch.Call(case.op, "cuda", case.dtype_name, case.variant, case.T, case.D)
            self.entries.append(dispatch.table_entry(call.bucket(), winner, timed, rejected))
            self.time_dispatched(case, args, kwargs)
        self.write()

    def time_dispatched(self, case, args, kwargs):
        """The op through `mixnas.kernels` with the table measured so far."""
        import mixnas.kernels as K

        path = self.table_path or Path(tempfile.gettempdir()) / f"mixnas-bench-{os.getpid()}.json"
        doc = dispatch.merge_table(path, self.name, self.entries, {"smoke": self.smoke})
        self.doc["table"] = doc
        saved = os.environ.get(dispatch.TABLE_ENV)
        os.environ[dispatch.TABLE_ENV] = str(path)
        try:
            impl = K.implementation(case.op, *args, **kwargs)
            self.time_impl(case, f"dispatched:{impl}", getattr(K, case.op), args, kwargs)
        finally:
            if saved is None:
                os.environ.pop(dispatch.TABLE_ENV)
            else:
                os.environ[dispatch.TABLE_ENV] = saved
            if self.table_path is None:
                path.unlink(missing_ok=True)

    def write(self):
        self.doc["figures"] = figures(self.doc["rows"], self.peak)
        if self.json_out in (None, "-"):
            return
        path = Path(self.json_out)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.doc, indent=1) + "\n")
        tmp.replace(path)


def _best(rows, accept):
    """The fastest successful row whose implementation `accept(name)` accepts."""
    ok = [r for r in rows if r["ms"] is not None and accept(r["impl"])]
    return min(ok, key=lambda r: r["ms"]) if ok else None


def _pick(rows, **match):
    return [r for r in rows if all(r[k] == v for k, v in match.items())]


def _is_sdpa(name):
    return name.startswith("sdpa")


def _is_dispatched(name):
    return name.startswith("dispatched:")


def _is_triton(name):
    return name == "triton"


def _speedup(base, row):
    return None if base is None or row is None else base["ms"] / row["ms"]


def _rate(row):
    return row and {k: row[k] for k in ("impl", "ms", "tflops", "pct_peak")}


def _fwd_bwd(rows, **match):
    return _pick(rows, **match, **{"pass": "fwd+bwd"})


def figures(rows, peak) -> dict:
    """Issue 17's figures from the rows: attention fwd+bwd vs SDPA's best backend per (T, D);
    attention forward at T=8k, D=128 as % of the dense bf16 peak; linear attention and the delta
    rule vs SDPA's best attention at the longest length measured for both (16k by default)."""
    out = {"attention_vs_sdpa": [], "attention_fwd_8k_d128": None, "linear_vs_sdpa": []}
    causal = _pick(rows, op="attention", variant="causal")
    for T, D in sorted({(r["T"], r["head_dim"]) for r in causal}):
        both = _fwd_bwd(causal, T=T, head_dim=D)
        best, tri, dis = (_best(both, f) for f in (_is_sdpa, _is_triton, _is_dispatched))
        out["attention_vs_sdpa"].append({
            "T": T, "head_dim": D, "sdpa_best": best and best["impl"],
            "sdpa_best_ms": best and best["ms"], "triton_ms": tri and tri["ms"],
            "dispatched": dis and dis["impl"].split(":", 1)[1],
            "dispatched_ms": dis and dis["ms"], "speedup_dispatched": _speedup(best, dis),
            "speedup_triton": _speedup(best, tri)})
    fwd = _pick(causal, T=8192, head_dim=128, **{"pass": "fwd"})
    if fwd:
        out["attention_fwd_8k_d128"] = {
            "peak_bf16_tflops": peak, "triton": _rate(_best(fwd, _is_triton)),
            "sdpa_best": _rate(_best(fwd, _is_sdpa)),
            "dispatched": _rate(_best(fwd, _is_dispatched))}
    for op, variant in (("linear_attention", "token"), ("delta_rule", "gated")):
        mine = _fwd_bwd(rows, op=op, variant=variant)
        shared = {(r["T"], r["head_dim"]) for r in mine} & {(r["T"], r["head_dim"]) for r in causal}
        if not shared:
            continue
        T, D = max(shared)
        best = _best(_fwd_bwd(causal, T=T, head_dim=D), _is_sdpa)
        for accept in (_is_triton, _is_dispatched):
            row = _best(_pick(mine, T=T, head_dim=D), accept)
            if row is not None and best is not None:
                out["linear_vs_sdpa"].append({
                    "op": op, "variant": variant, "T": T, "head_dim": D, "impl": row["impl"],
                    "ms": row["ms"], "sdpa_best": best["impl"], "sdpa_best_ms": best["ms"],
                    "speedup": _speedup(best, row)})
    return out


def _format(row):
    head = (f"{row['op']:16s} {row['variant']:7s} {row['impl']:22s} {row['pass']:7s} "
            f"T={row['T']:6d} D={row['head_dim']:5d}")
    if row["error"]:
        return f"{head}  {row['error']}"
    tf = "" if row["tflops"] is None else f" {row['tflops']:8.2f} TFLOP/s"
    pct = "" if row["pct_peak"] is None else f" {row['pct_peak']:5.1f}%"
    return f"{head} {row['ms']:10.3f} ms{tf}{pct}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mixnas bench kernels",
        description="Time every implementation of every kernel op (checked against the "
                    "reference first) and write the dispatch table (needs a GPU).")
    parser.add_argument("--json", nargs="?", const="-", default=None, metavar="PATH",
                        help="write the results as JSON to PATH (stdout when PATH is omitted)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny float32 shapes to check the script (timings meaningless)")
    parser.add_argument("--table", metavar="PATH",
                        help="where to write the dispatch table (default: where dispatch reads "
                             "it, MIXNAS_KERNEL_TABLE or ~/.cache/mixnas/kernel_table.json; "
                             "'none': nowhere; with --smoke: nowhere unless given)")
    parser.add_argument("--ops", nargs="+", default=list(dispatch.OPS), choices=dispatch.OPS)
    parser.add_argument("--lengths", nargs="+", type=int, metavar="T",
                        help="sequence lengths to sweep (every op)")
    parser.add_argument("--head-dims", nargs="+", type=int, metavar="D",
                        help="head dims to sweep (attention, linear attention, delta rule)")
    parser.add_argument("--variants", nargs="+", metavar="V",
                        help="only these variants: causal window (attention); none token "
                             "channel (linear attention); plain gated (delta rule); - (others)")
    return parser


def run(args, argv=(), log=print) -> dict:
    """Benchmark per parsed `args`; returns the JSON document (also written per `args.json`)."""
    cuda = torch.cuda.is_available()
    if not cuda and not args.smoke:
        raise RuntimeError("mixnas bench kernels needs a CUDA GPU (use --smoke for a check of "
                           "the script itself)")
    if not cuda:
        os.environ.setdefault("TRITON_INTERPRET", "1")
    for name, values in (("--lengths", args.lengths), ("--head-dims", args.head_dims)):
        if values and min(values) < 1:
            raise ValueError(f"{name}: values must be positive, got {values}")
    table = args.table
    if table is None and not args.smoke:
        table = dispatch.default_table_path()
    table = None if table is None or str(table).lower() == "none" else Path(table)
    bench = Bench(torch.device("cuda" if cuda else "cpu"), args.smoke, table, args.json,
                  list(argv), log)
    cases = bench_cases.sweep(args.smoke, args.ops, args.lengths, args.head_dims, args.variants)
    if not cases:
        raise ValueError("no case matches --ops/--variants")
    for case in cases:
        bench.run_case(case)
    bench.write()
    if args.json == "-":
        sys.stdout.write(json.dumps(bench.doc, indent=1) + "\n")
    return bench.doc


def main(argv=None) -> int:
    """CLI entry point; returns the exit status (2 without a GPU and without --smoke)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    log = (lambda line: print(line, file=sys.stderr)) if args.json == "-" else print
    try:
        doc = run(args, argv, log)
    except (RuntimeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0 if doc["rows"] else 1

"""Compile every Triton kernel (every autotune config) for a GPU target without a GPU.

Run as a script in a process without TRITON_INTERPRET: a fake driver reports the target, kernel
launches become compile-only warmups, and each custom op is called once per code path on CPU
tensors. Catches what the interpreter cannot: type errors in tl.dot, non-constexpr shapes, and
configs that need more shared memory than the device has.
Usage: python tests/kernels/compile_for_gpu.py [--arch 90] [--shared-kib 227] [GROUP ...]
with GROUP among attention, linear, scan, small (default: all). Takes minutes: it is a manual
check (run it after changing a kernel), not part of the test suite.
"""

import argparse
import os
import sys

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.runtime.autotuner import Autotuner
from triton.runtime.jit import JITFunction

assert not os.environ.get("TRITON_INTERPRET"), "run without TRITON_INTERPRET"
_parser = argparse.ArgumentParser()
_parser.add_argument("--arch", type=int, default=90)
_parser.add_argument("--shared-kib", type=int, default=227)
_parser.add_argument("groups", nargs="*", default=["attention", "linear", "scan", "small"])
ARGS = _parser.parse_args()
compiled = []


class _FakeDriver:
    def get_current_device(self):
        return 0

    def get_current_stream(self, device=None):
        return 0

    def get_current_target(self):
        return GPUTarget("cuda", ARGS.arch, 32)


triton.runtime.driver.set_active(_FakeDriver())
_jit_run = JITFunction.run


def _compile_only(self, *args, grid, warmup, **kwargs):
    kernel = _jit_run(self, *args, grid=grid, warmup=True, **kwargs)
    meta = {k: v for k, v in kwargs.items() if k.isupper()}
    compiled.append((self.fn.__name__, meta, kernel.metadata.shared, kernel.metadata.num_warps))
    return kernel


def _all_configs(self, *args, **kwargs):
    for config in self.configs:
        self.fn.run(*args, **kwargs, **config.all_kwargs())


JITFunction.run = _compile_only
Autotuner.run = _all_configs

from mixnas.kernels import reference  # noqa: E402
from mixnas.kernels.triton_ops.attention import attention_bwd, attention_fwd  # noqa: E402
from mixnas.kernels.triton_ops.causal_conv1d import (  # noqa: E402
    causal_conv1d_bwd,
    causal_conv1d_fwd,
)
from mixnas.kernels.triton_ops.chunk_scan import chunk_scan_bwd, chunk_scan_fwd  # noqa: E402
from mixnas.kernels.triton_ops.linear_attention import (  # noqa: E402
    linear_attention_bwd,
    linear_attention_fwd,
)
from mixnas.kernels.triton_ops.rms_norm import rms_norm_bwd, rms_norm_fwd  # noqa: E402
from mixnas.kernels.triton_ops.swiglu import swiglu_bwd, swiglu_fwd  # noqa: E402


def attention_group():
    bf16 = torch.bfloat16
    B, T, H = 1, 256, 4
    for dtype, d in [(bf16, 64), (bf16, 128), (torch.float16, 60), (torch.float32, 64)]:
        q = torch.randn(B, T, H, d, dtype=dtype)
        kv = torch.randn(B, T, 2, d, dtype=dtype)
        for causal, window in [(True, 0), (True, 64), (False, 0)]:
            o, lse = attention_fwd(q, kv, kv, causal, window, d ** -0.5)
            attention_bwd(o, q, kv, kv, o, lse, causal, window, d ** -0.5)


def linear_group():
    B, T, H, D = 1, 256, 4, 64
    for dtype in (torch.bfloat16, torch.float32):
        q = torch.randn(B, T, H, D, dtype=dtype)
        v = torch.randn(B, T, H, 2 * D, dtype=dtype)
        for g in (None, torch.randn(B, T, H)):
            o, s = linear_attention_fwd(q, q, v, g, None, 0.1, 64)
            linear_attention_bwd(o, s, q, q, v, g, s, s, 0.1, 64)


def scan_group():
    B, T, H = 1, 256, 4
    for d in (64, 128, 256):
        q = torch.randn(B, T, H, d)
        beta = torch.rand(B, T, H)
        for g in (None, torch.randn(B, T, H), -torch.rand(B, T, H, d)):  # per-channel too
            chunks = reference.delta_rule_chunks(q, q, q, beta, g, 64)
            o, s, states = chunk_scan_fwd(*chunks, None)
            chunk_scan_bwd(o, s, *chunks, states)
        chunks = reference.linear_attention_chunks(q, q, q, torch.randn(B, T, H, d), 64)
        q_in, k_out, u, a, dec = chunks
        o, s, states = chunk_scan_fwd(q_in, k_out, u, None, a, dec, s)
        chunk_scan_bwd(o, s, q_in, k_out, u, None, a, dec, states)


def small_group():
    for dtype in (torch.bfloat16, torch.float32):
        x = torch.randn(4, 100, 1024, dtype=dtype)
        w = torch.randn(1024, dtype=dtype)
        y, rstd = rms_norm_fwd(x, w, 1e-6)
        rms_norm_bwd(y, x, w, rstd)
        rms_norm_bwd(y, x, None, rstd)
        swiglu_bwd(x, x, swiglu_fwd(x, x))
        cw = torch.randn(1024, 4, dtype=dtype)
        for silu in (False, True):
            y = causal_conv1d_fwd(x, cw, w, silu)
            causal_conv1d_bwd(y, x, cw, w, silu)


def main():
    torch.manual_seed(0)
    for group in ARGS.groups:
        globals()[f"{group}_group"]()
    limit = ARGS.shared_kib * 1024
    too_big = [c for c in compiled if c[2] > limit]
    for name, meta, shared, warps in sorted({(c[0], str(c[1]), c[2], c[3]) for c in compiled}):
        print(f"{name:24s} warps={warps} shared={shared // 1024:4d} KiB {meta}")
    print(f"{len(compiled)} compilations for sm_{ARGS.arch}; {len(too_big)} over "
          f"{ARGS.shared_kib} KiB of shared memory")
    return 1 if too_big else 0


if __name__ == "__main__":
    sys.exit(main())

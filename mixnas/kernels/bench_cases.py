"""What `mixnas bench kernels` measures: the cases (op, variant, shape), their inputs, the
correctness check every candidate must pass before it may win, and the figures issue 17 asks for.

Shapes follow one budget: TOKENS tokens per batch (batch = TOKENS // T) and MODEL_DIM channels
(heads = MODEL_DIM // head_dim), so every length does the same work per token. FLOPs are the
analytic ones of `mixnas.kernels.flops`, the same for every implementation of an op (causal
attention counts the attended half: 4*B*H*T^2*D / 2 forward, backward 2.5x the forward).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from mixnas.kernels import dispatch, reference

TOKENS = 16384
MODEL_DIM = 2048
WINDOW = 512
# relative RMS error of output and every gradient vs the float32 reference before a candidate
# may win: TF32 dots (~3e-4) for float32 inputs, 8-bit mantissas (~4e-3 each) for half types
CHECK_TOL = {"float32": 5e-3, "float16": 2e-2, "bfloat16": 3e-2}
# never competitive at benchmark lengths and O(T^2) memory: not timed
SKIP = {("attention", "sdpa_math")}


@dataclass(frozen=True)
class Case:
    """One benchmarked (op, variant, shape, dtype)."""

    op: str
    variant: str
    T: int
    D: int
    dtype: torch.dtype
    B: int = 1
    H: int = 1
    window: int | None = None
    kwargs: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    def flops(self, backward: bool) -> int | None:
        """Forward (+ backward) FLOPs; None for the elementwise ops (bandwidth-bound)."""
        # imported here: torch's flop counter imports triton, which must come after the smoke
        # run has set TRITON_INTERPRET
        from mixnas.kernels.flops import attention_flops, delta_rule_flops, linear_attention_flops

        B, T, H, D = self.B, self.T, self.H, self.D
        if self.op == "attention":
            fwd = attention_flops(B, T, T, H, D, causal=True, window=self.window)
            return fwd + fwd * 5 // 2 * backward
        if self.op == "linear_attention":
            fwd = linear_attention_flops(B, T, H, D, D)
        elif self.op == "delta_rule":
            fwd = delta_rule_flops(B, T, H, D, D)
        else:
            return None
        return fwd + 2 * fwd * backward  # the gradient passes mirror the forward twice

    def label(self) -> str:
        return f"{self.op}/{self.variant} T={self.T} D={self.D} {self.dtype_name}"


def sweep(smoke: bool, ops, lengths=None, head_dims=None, variants=None) -> list[Case]:
    """The cases to run, the ones issue 17's figures need first (a timeout keeps those);
    `variants` keeps only those variants ('-' for the elementwise ops)."""
    dtype = torch.float32 if smoke else torch.bfloat16
    tokens, model_dim, window = (128, 32, 16) if smoke else (TOKENS, MODEL_DIM, WINDOW)
    long = [64, 128] if smoke else [1024, 2048, 4096, 8192, 16384]
    short = [128] if smoke else [4096, 16384]
    dims = [16, 32] if smoke else [64, 128]
    plan = [  # op, variant, lengths, head dims
        ("attention", "causal", long, dims),
        ("linear_attention", "token", short, dims[-1:]),
        ("delta_rule", "gated", short, dims[-1:]),
        ("attention", "window", short, dims[-1:]),
        ("linear_attention", "channel", short, dims[-1:]),
        ("linear_attention", "none", short, dims[-1:]),
        ("delta_rule", "plain", short, dims[-1:]),
        ("linear_attention", "token", short, dims[:1]),
        ("delta_rule", "gated", short, dims[:1]),
        ("rms_norm", "-", short[-1:], [model_dim]),
        ("swiglu", "-", short[-1:], [model_dim]),
        ("causal_conv1d", "-", short[-1:], [model_dim]),
    ]
    cases = []
    for op, variant, Ts, Ds in plan:
        if op not in ops or (variants and variant not in variants):
            continue
        elementwise = op in ("rms_norm", "swiglu", "causal_conv1d")
        for T in lengths or Ts:
            for D in (Ds if elementwise else head_dims or Ds):
                B = max(1, tokens // T)
                H = 1 if elementwise else max(1, model_dim // D)
                w = window if variant == "window" else None
                cases.append(Case(op, variant, T, D, dtype, B, H, w))
    return list(dict.fromkeys(cases))


def make_inputs(case: Case, device, B=None, H=None, seed=0):
    """(args, kwargs) of one call of the op, leaves requiring grad; B/H override the case's."""
    g = torch.Generator(device=device).manual_seed(seed)
    B, H, T, D = B or case.B, H or case.H, case.T, case.D

    def leaf(*shape, fn=None):
        x = torch.randn(*shape, device=device, generator=g)
        return (x if fn is None else fn(x)).to(case.dtype).requires_grad_()

    def decay(form):
        shapes = {"token": (B, T, H), "gated": (B, T, H), "channel": (B, T, H, D)}
        if form not in shapes:
            return None
        shift = 2.0 if form == "channel" else 0.0
        x = torch.randn(*shapes[form], device=device, generator=g) + shift
        return F.logsigmoid(x).float().requires_grad_()

    if case.op == "attention":
        return [leaf(B, T, H, D) for _ in range(3)], {"causal": True, "window": case.window}
    if case.op == "linear_attention":
        return [leaf(B, T, H, D) for _ in range(3)], {"log_decay": decay(case.variant)}
    if case.op == "delta_rule":
        unit = lambda x: F.normalize(x, dim=-1)  # noqa: E731
        args = [leaf(B, T, H, D, fn=unit), leaf(B, T, H, D, fn=unit), leaf(B, T, H, D),
                leaf(B, T, H, fn=torch.sigmoid)]
        return args, {"log_decay": decay(case.variant)}
    if case.op == "rms_norm":
        return [leaf(B * T, D), leaf(D)], {}
    if case.op == "swiglu":
        return [leaf(B * T, D), leaf(B * T, D)], {}
    return [leaf(B, T, D), leaf(D, 4), leaf(D)], {"activation": "silu"}


def _reference_fn(op):
    """The float32 ground truth of a candidate check (attention: the materialised naive form, not
    the reference op, which is itself a candidate)."""
    return reference.attention_naive if op == "attention" else getattr(reference, op)


def check(fn, case: Case, device) -> tuple[bool, dict]:
    """Output and every gradient of `fn` against the float32 reference, on the case's length and
    head dim with batch 1 and at most 2 heads. Returns (ok, {what: relative RMS error})."""
    args, kwargs = make_inputs(case, device, B=1, H=min(case.H, 2), seed=1)
    out = fn(*args, **kwargs)
    leaves = [x for x in [*args, *kwargs.values()] if torch.is_tensor(x) and x.requires_grad]
    grad_out = torch.randn_like(out)
    grads = torch.autograd.grad(out, leaves, grad_out, allow_unused=True)
    args32 = [x.detach().float().requires_grad_() for x in args]
    kw32 = {k: x.detach().float().requires_grad_() if torch.is_tensor(x) else x
            for k, x in kwargs.items()}
    ref = _reference_fn(case.op)(*args32, **kw32)
    leaves32 = [x for x in [*args32, *kw32.values()] if torch.is_tensor(x) and x.requires_grad]
    ref_grads = torch.autograd.grad(ref, leaves32, grad_out.float())
    errors = {"output": _rel_rms(out, ref)}
    errors.update({f"grad{i}": _rel_rms(a, b) for i, (a, b) in enumerate(zip(grads, ref_grads))})
    ok = all(e == e and e < CHECK_TOL[case.dtype_name] for e in errors.values())  # e == e: no NaN
    return ok, errors


def _rel_rms(x, ref) -> float:
    if x is None:  # no gradient for an input the reference depends on
        return math.inf
    x, ref = x.detach().double(), ref.detach().double()
    return ((x - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt().clamp_min(1e-30)).item()


def candidates(case: Case, device_type: str) -> dict[str, str | None]:
    """{implementation: None if it may run the case, else why not}."""
    call = dispatch.Call(case.op, device_type, case.dtype_name, case.variant, case.T, case.D,
                         chunk_size=64 if case.op in ("linear_attention", "delta_rule") else None)
    out = {}
    for name, cand in dispatch.CANDIDATES[case.op].items():
        out[name] = "not timed (never competitive)" if (case.op, name) in SKIP else \
            cand.refuses(call)
    return out

"""Attention through PyTorch's own fused kernels, as dispatch candidates beside our Triton kernel.

Why here: on a GPU, PyTorch's `scaled_dot_product_attention` has flash, cuDNN and memory-efficient
backends that may beat our kernel for full causal attention (the cuDNN one is up to 75% faster
than FlashAttention-2 on H100), and FlexAttention compiles block-sparse kernels for sliding
windows. `mixnas.kernels.dispatch` picks among them with a measured table; this module only runs
them in our (B, T, H, D) layout with our mask semantics:

- query i sits at position i + Tk - Tq (aligned to the end, as in KV-cached decoding); SDPA's
  `is_causal` aligns to the start, so it only serves Tq == Tk (or Tq == 1, which sees every key);
- `window=w` lets position t attend keys in (t - w, t]; SDPA cannot skip masked blocks, so windows
  go to FlexAttention (or our kernel).

Naive reference for both: `reference.attention_naive`. Nothing here imports triton; FlexAttention
is compiled with `torch.compile` on CUDA on first use (automatic dynamic shapes) and runs eagerly
(slow, for tests) elsewhere.
"""

from contextlib import nullcontext
from functools import cache, lru_cache

import torch
import torch.nn.functional as F

# the SDPA backends a dispatch candidate may pin, by candidate name
SDPA_BACKENDS = {
    "sdpa_flash": "FLASH_ATTENTION",
    "sdpa_cudnn": "CUDNN_ATTENTION",
    "sdpa_efficient": "EFFICIENT_ATTENTION",
    "sdpa_math": "MATH",
}
_NO_BACKEND = ("No viable backend", "No available kernel")


def backend_unavailable(exc: BaseException) -> bool:
    """True when `exc` is SDPA saying that the pinned backend cannot run these inputs."""
    return isinstance(exc, RuntimeError) and any(m in str(exc) for m in _NO_BACKEND)


def _gqa_kwargs(H, Hkv):
    return {"enable_gqa": True} if Hkv != H else {}


def sdpa_attention(q, k, v, causal=True, window=None, scale=None, backend=None):
    """Softmax attention by `F.scaled_dot_product_attention`, optionally pinned to one backend.

    Args:
        q: queries `[B, Tq, H, D]`.
        k, v: keys and values `[B, Tk, Hkv, D]`, H % Hkv == 0 (GQA/MQA through `enable_gqa`).
        causal: causal mask; needs Tq == Tk or Tq == 1 here (see the module docstring).
        window: must be None or >= Tk (no effect); windows are not an SDPA feature.
        scale: softmax scale, default D ** -0.5.
        backend: None (PyTorch chooses) or a key of `SDPA_BACKENDS` ('sdpa_flash', ...).

    Returns:
        o `[B, Tq, H, D]` in the dtype of q.

    Raises:
        ValueError: for a window or a causal mask this function cannot express.
        RuntimeError: from SDPA when the pinned backend cannot run the inputs
            (`backend_unavailable` tells).
    """
    Tq, H = q.shape[1], q.shape[2]
    Tk, Hkv = k.shape[1], k.shape[2]
    if window is not None and window < Tk:
        raise ValueError("sdpa_attention: sliding windows are not supported")
    if causal and Tq not in (Tk, 1):
        raise ValueError("sdpa_attention: causal attention needs Tq == Tk or Tq == 1")
    ctx = nullcontext()
    if backend is not None:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        ctx = sdpa_kernel(getattr(SDPBackend, SDPA_BACKENDS[backend]))
    with ctx:
        o = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
            is_causal=causal and Tq > 1, scale=scale, **_gqa_kwargs(H, Hkv),
        )
    return o.transpose(1, 2)


@cache
def sdpa_candidate(name):
    """The op-signature callable of one SDPA dispatch candidate ('sdpa' lets PyTorch choose)."""
    backend = None if name == "sdpa" else name

    def run(q, k, v, causal=True, window=None, scale=None):
        return sdpa_attention(q, k, v, causal=causal, window=window, scale=scale, backend=backend)

    run.__name__ = f"attention_{name}"
    return run


@lru_cache(maxsize=64)
def _block_mask(Tq, Tk, causal, window, device):
    """FlexAttention block mask of our causal / windowed semantics (cached per shape)."""
    from torch.nn.attention.flex_attention import create_block_mask

    shift = Tk - Tq

    def mask_mod(b, h, q_idx, kv_idx):
        pos = q_idx + shift
        ok = kv_idx <= pos
        if window is not None:
            ok = ok & (kv_idx > pos - window)
        return ok

    if not causal:
        return None
    return create_block_mask(mask_mod, B=None, H=None, Q_LEN=Tq, KV_LEN=Tk, device=device)


@lru_cache(maxsize=2)
def _flex(compiled):
    from torch.nn.attention.flex_attention import flex_attention

    # default dynamic=None: a second shape recompiles once with dynamic dims, later ones reuse it
    return torch.compile(flex_attention) if compiled else flex_attention


def flex_attention(q, k, v, causal=True, window=None, scale=None):
    """Softmax attention by FlexAttention: causal, sliding-window and GQA with block sparsity.

    Args:
        q: queries `[B, Tq, H, D]`, query i at position i + Tk - Tq.
        k, v: keys and values `[B, Tk, Hkv, D]`, H % Hkv == 0.
        causal: causal mask (bottom-right aligned, any Tq <= Tk).
        window: None or w >= 1: position t attends keys in (t - w, t]; needs causal=True.
        scale: softmax scale, default D ** -0.5.

    Returns:
        o `[B, Tq, H, D]` in the dtype of q. Compiled with `torch.compile` on CUDA tensors,
        eager (unfused, slow) elsewhere.
    """
    Tq, H, D = q.shape[1:]
    Tk, Hkv = k.shape[1], k.shape[2]
    if window is not None and not causal:
        raise ValueError("flex_attention: window requires causal=True")
    if window is not None and window >= Tk:
        window = None
    mask = _block_mask(Tq, Tk, bool(causal), window, str(q.device))
    fn = _flex(q.is_cuda)
    o = fn(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), block_mask=mask,
           scale=scale, **_gqa_kwargs(H, Hkv))
    return o.transpose(1, 2)

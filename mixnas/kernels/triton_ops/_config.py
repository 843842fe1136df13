"""Launch settings shared by the Triton kernels.

Under `TRITON_INTERPRET=1` (CPU) every program instance costs about half a millisecond and
autotuning over several configs fails, so the interpreter gets one config with large blocks.
This module is imported lazily (see `mixnas.kernels`), after the caller has set the environment.
"""

import torch
import triton
import triton.language as tl
from triton import knobs

from mixnas.kernels.dispatch import TRITON_CHUNK_SIZES, triton_chunk_ok

INTERPRET = bool(knobs.runtime.interpret)
if INTERPRET and type(tl.zeros).__name__ != "InterpretedFunction":
    raise RuntimeError(
        "TRITON_INTERPRET=1 was set after triton was imported (torch.utils.flop_counter imports "
        "it, for one): triton's own library functions are then compiled-only and the interpreter "
        "fails. Set TRITON_INTERPRET=1 before anything imports triton (e.g. at the top of "
        "tests/conftest.py)."
    )


def autotune(gpu_configs, interpreter_config, key):
    """`triton.autotune` over `gpu_configs` on a GPU, a single config under the interpreter."""
    return triton.autotune(configs=[interpreter_config] if INTERPRET else gpu_configs, key=key)


def pow2(n, minimum=16):
    """Block size for a head dimension: next power of two (tl.dot needs >= 16)."""
    return max(minimum, triton.next_power_of_2(int(n)))


def check_inputs(name, *tensors):
    """Fail clearly when the Triton path cannot run these tensors."""
    for t in tensors:
        if t is None:
            continue
        if not (t.is_cuda or INTERPRET):
            raise RuntimeError(
                f"{name}: the Triton kernels need CUDA tensors (or TRITON_INTERPRET=1 set before "
                f"mixnas.kernels first runs a Triton op); got a {t.device} tensor"
            )
        if INTERPRET and t.dtype == torch.bfloat16:
            raise RuntimeError(f"{name}: bfloat16 is not supported under TRITON_INTERPRET=1")


def check_chunk_size(name, chunk_size):
    """Refuse, saying what is accepted, a chunk size the chunked kernels cannot tile."""
    if not triton_chunk_ok(chunk_size):
        sizes = ", ".join(map(str, TRITON_CHUNK_SIZES))
        raise ValueError(
            f"{name}: chunk_size={chunk_size!r} is not supported by the Triton kernels, which take "
            f"{sizes} (a power of two: chunks are tiles); the torch reference takes any positive "
            f"integer (MIXNAS_KERNELS={name}=reference)"
        )

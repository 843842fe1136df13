"""Where the kernel tests run, and at which tolerances.

CPU by default, the Triton kernels under `TRITON_INTERPRET=1` (float32 and float16: the
interpreter's bfloat16 dots are wrong). `MIXNAS_TEST_DEVICE=cuda` (what scripts/gpu-check.sh sets)
runs the same tests on CUDA tensors with compiled kernels, every case also in bfloat16, and a few
larger GPU-only shapes that exercise the tiled code paths the interpreter's whole-tile blocks skip.
"""

import os

import pytest
import torch

DEVICE = torch.device(os.environ.get("MIXNAS_TEST_DEVICE", "cpu"))
ON_GPU = DEVICE.type == "cuda"
if ON_GPU and not torch.cuda.is_available():
    raise pytest.UsageError("MIXNAS_TEST_DEVICE=cuda but torch sees no CUDA device")

# relative RMS error against the float64 reference; on a GPU float32 dots run in TF32 (10-bit
# mantissa, ~3e-4) and bfloat16 operands round to 8 bits (~4e-3 per element)
TOL = {
    ("cpu", torch.float32): 2e-5,
    ("cpu", torch.float16): 3e-3,
    ("cuda", torch.float32): 2e-3,
    ("cuda", torch.float16): 3e-3,
    ("cuda", torch.bfloat16): 1.5e-2,
}

gpu_only = pytest.mark.skipif(not ON_GPU, reason="GPU-only shape (MIXNAS_TEST_DEVICE=cuda)")


def with_gpu_dtypes(cases):
    """Parametrize cases whose first item is a dtype: as given on CPU; on a GPU each case also
    in float32 and bfloat16."""
    if not ON_GPU:
        return cases
    out = []
    for case in cases:
        for dtype in dict.fromkeys([case[0], torch.float32, torch.bfloat16]):
            out.append((dtype, *case[1:]))
    return out

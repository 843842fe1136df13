"""Run the Triton kernels on CPU through the interpreter.

Triton decides when it is imported whether to interpret, and `torch.utils.flop_counter` imports
it: the variable must be set before any test module of any area imports that (the root
tests/conftest.py is the safe place; this one covers running tests/kernels alone).
`mixnas.kernels` itself imports triton only on the first Triton call.
"""

import os

# MIXNAS_TEST_DEVICE=cuda runs the kernel tests on a GPU, with compiled kernels
if os.environ.get("MIXNAS_TEST_DEVICE", "cpu") == "cpu":
    os.environ.setdefault("TRITON_INTERPRET", "1")

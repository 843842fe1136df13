"""Test-session setup shared by every area.

Triton decides whether to interpret kernels on the CPU when it is first imported (torch's flop
counter imports it), so the choice must be made before any test module is collected.
"""

import os

# MIXNAS_TEST_DEVICE=cuda runs the kernel tests on a GPU, with compiled kernels
if os.environ.get("MIXNAS_TEST_DEVICE", "cpu") == "cpu":
    os.environ.setdefault("TRITON_INTERPRET", "1")

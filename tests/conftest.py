"""Test-session setup shared by every area.

Triton decides whether to interpret kernels on the CPU when it is first imported (torch's flop
counter imports it), so the choice must be made before any test module is collected.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

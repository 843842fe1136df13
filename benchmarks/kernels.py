"""Benchmark the Triton kernels against torch SDPA and naive torch forms on a CUDA GPU.

Usage: python benchmarks/kernels.py [--json [PATH]] [--smoke] [--ops attention linear_attention]
(same as `mixnas bench kernels`); see `mixnas.kernels.bench`.
"""

import sys

from mixnas.kernels.bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

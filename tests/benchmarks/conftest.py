"""Benchmarks live outside the package (`benchmarks/`); make them importable from the repo root."""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

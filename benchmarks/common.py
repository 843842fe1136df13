"""What every benchmark result records besides its numbers: command, date, machine, versions."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def environment(module: str, argv: list[str] | None = None) -> dict[str, Any]:
    """The provenance block of a result: how to reproduce it and where it was measured."""
    import torch

    import mixnas

    try:
        import optuna
    except ImportError:  # the GPU check's summary runs even where its install step failed
        optuna = None

    args = sys.argv[1:] if argv is None else argv
    return {
        "command": " ".join(["python", "-m", module, *args]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "processor": platform.machine(),
                    "load_average": [round(x, 2) for x in os.getloadavg()]},
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "optuna": optuna and optuna.__version__, "mixnas": mixnas.__version__},
        "git": _git_revision(),
    }


def _git_revision() -> str | None:
    """The checkout's commit, with `+dirty` when tracked files differ from it (None outside git)."""
    root = Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, text=True,
                             capture_output=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, text=True, capture_output=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("+dirty" if dirty.strip() else "")


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")


def device_slug(name: str) -> str:
    """A device name as a file-name part: 'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3'."""
    slug = "".join(c if c.isalnum() else "-" for c in name.lower())
    return "-".join(filter(None, slug.split("-"))) or "unknown"


def require_extra(*modules: str, extra: str = "bench") -> None:
    """Exit at once (code 2, one line naming what to install) when an optional dependency of a
    benchmark is missing, rather than after minutes of work at its first use."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        print(f"error: this benchmark needs {', '.join(missing)}: pip install 'mixnas[{extra}]'",
              file=sys.stderr)
        raise SystemExit(2)

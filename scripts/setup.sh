#!/usr/bin/env bash
# Install mixnas into the current Python environment (a virtualenv if one is active).
#   scripts/setup.sh          runtime: CPU PyTorch, Triton, Optuna, Ray, SQLAlchemy, ...
#   scripts/setup.sh --test   also the test tools, the PostgreSQL driver, transformers (for the
#                             `export --format hf` tests) and Debian's Chromium
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
quiet=(-q --disable-pip-version-check)

# CPU PyTorch first: an unpinned torch would pull several GB of CUDA packages.
if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
  "$PYTHON" -m pip install "${quiet[@]}" "torch==2.13.0"
fi

if [[ "${1:-}" == "--test" ]]; then
  "$PYTHON" -m pip install "${quiet[@]}" -e ".[test,postgres,bench,hf]"
  if [[ ! -x /usr/bin/chromium ]]; then
    if [[ $(id -u) == 0 ]]; then
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
        || echo "setup: could not install chromium; browser tests will be skipped" >&2
    else
      echo "setup: run 'sudo apt-get install -y chromium' for the browser tests" >&2
    fi
  fi
else
  "$PYTHON" -m pip install "${quiet[@]}" -e .
fi
echo "mixnas installed: $("$PYTHON" -m mixnas.cli --version)"

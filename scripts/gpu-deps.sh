#!/usr/bin/env bash
# Prepare .gpu-deps/ for scripts/gpu-check.sh, here, where PyPI is reachable.
#
# The lent GPU machines reach no network. Their image has Python 3.12 with torch, triton, numpy,
# scipy, pyyaml, rich, safetensors, pytest (and pytest-xdist) but not optuna, ray, sqlalchemy or
# alembic. This downloads those (the versions installed here, for the GPU's Python) as wheels
# into .gpu-deps/wheels/, and Ray as .gpu-deps/ray.tar.xz: Ray's wheel (~80 MB) is over what a
# GPU call may carry (64 MiB with the repository), so its Java jars and dashboard web client,
# which a local Ray without dashboard never loads, are left out and the rest xz-compressed
# (~31 MB). gpu-check.sh installs both into a private folder on the GPU machine.
#
# Usage: scripts/gpu-deps.sh            (takes a few minutes: xz of ~160 MB)
#   GPU_PYTHON_VERSION=3.12 (default)   the GPU machine's Python
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
PYV=${GPU_PYTHON_VERSION:-3.12}
OUT=.gpu-deps
PKGS=(optuna alembic sqlalchemy greenlet mako colorlog jsonschema jsonschema-specifications
      referencing rpds-py)
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
           --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64)

pin() {  # NAME==VERSION as installed here, else NAME
  local v
  v=$("$PYTHON" -c "from importlib.metadata import version; print(version('$1'))" 2>/dev/null) \
    && echo "$1==$v" || echo "$1"
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
specs=()
for p in "${PKGS[@]}"; do specs+=("$(pin "$p")"); done
ray_spec=$(pin ray)
download() {
  "$PYTHON" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version "$PYV" --implementation cp "${PLATFORMS[@]}" -d "$1" "${@:2}"
}
download "$tmp/wheels" "${specs[@]}"
download "$tmp/ray" "$ray_spec"

"$PYTHON" - "$tmp/ray" "$tmp/ray.tar.xz" <<'EOF'
"""Unpack Ray's wheel without its jars and web client, then tar.xz it (files keep their modes)."""
import sys
import tarfile
import zipfile
from pathlib import Path

SKIP = ("ray/jars/", "ray/dashboard/client/")
(wheel,) = Path(sys.argv[1]).glob("ray-*.whl")
root = Path(sys.argv[1]) / "unpacked"
with zipfile.ZipFile(wheel) as zf:
    for info in zf.infolist():
        if info.filename.startswith(SKIP) or info.filename.endswith(".map"):
            continue
        path = Path(zf.extract(info, root))
        mode = info.external_attr >> 16
        if mode:
            path.chmod(mode & 0o777)
with tarfile.open(sys.argv[2], "w:xz", preset=6) as tar:
    for top in sorted(root.iterdir()):
        tar.add(top, arcname=top.name)
EOF

rm -rf "$OUT"
mkdir -p "$OUT"
mv "$tmp/wheels" "$OUT/wheels"
mv "$tmp/ray.tar.xz" "$OUT/ray.tar.xz"
{
  echo "# made by scripts/gpu-deps.sh for Python $PYV on $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  printf '%s\n' "${specs[@]}" "$ray_spec"
} > "$OUT/MANIFEST.txt"
echo "gpu-deps: $(du -sh "$OUT" | cut -f1) in $OUT ($(find "$OUT/wheels" -name '*.whl' | wc -l) wheels + Ray);" \
     "carry it: run(command='bash scripts/gpu-check.sh', carry=['$OUT'])"

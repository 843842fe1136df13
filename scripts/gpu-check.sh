#!/usr/bin/env bash
# The one prepared GPU check of issue 17: run it the moment a CUDA GPU is there.
#
# Steps, each under its own time limit (`timeout`), all together <= GPU_CHECK_BUDGET_S (540 s,
# plus at most 15 s for a step that ignores Ctrl-C):
#   install  optuna, ray, sqlalchemy, alembic from .gpu-deps/ (scripts/gpu-deps.sh makes it where
#            PyPI is reachable) into a private folder, when the machine lacks them
#   tests    the kernel test suite on CUDA tensors: forward and every gradient vs the references,
#            float32 and bfloat16 tolerances (MIXNAS_TEST_DEVICE=cuda)
#   bench    mixnas bench kernels --json: every implementation checked and timed, the dispatch
#            table (later steps use it), issue 17's attention / linear-attention figures
#   curves   one design trained with the reference, Triton and dispatched ops: loss curves
#   study    the quickstart study on the GPU through Ray, 4 trials packed per GPU
#            (study start --workers 4 --gpus-per-trial 0.25), then 4 trials
#            one at a time: trials per hour and the packing gain
#   summary  everything as one JSON (with the device name) under benchmarks/results/, and a
#            one-screen summary; copies of the results go to $OUT when that folder exists
# Without a GPU (or with GPU_CHECK_DRY=1) it checks that each step's command line is valid and
# says so in one line (exit 0; 1 if a command line is invalid).
# GPU_CHECK_STEPS="bench curves" runs only those steps (then the summary, over every result
# present): a rerun of what failed or timed out. T_<STEP>=seconds changes a step's time limit.
# GPU_CHECK_STEPS="install corpus throughput" runs the packing sweep instead (quickstart and
# lm-gpu at 1, 2, 4, 8 packed trials; GPU_CHECK_SCALES to change the scales; `corpus` prepares
# lm-gpu's BPE corpus there first). At lm-gpu's full budget (2-3 min a trial) that takes longer
# than one 10-minute call: run it per scale, GPU_CHECK_SCALES=quickstart, then lm-gpu.
#
# Usage: bash scripts/gpu-check.sh
#   on a lent GPU: scripts/gpu-deps.sh here once, then run "bash scripts/gpu-check.sh" there
#   with .gpu-deps carried (see docs/gpu.md)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
PY=${PYTHON:-python3}
BUDGET=${GPU_CHECK_BUDGET_S:-540}
RES=$(realpath -m "${GPU_CHECK_RESULTS:-benchmarks/results}")
SITE=${GPU_CHECK_SITE:-/tmp/mixnas-gpu-site}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mixnas-gpu-check.XXXXXX")
export PYTHONPATH="$ROOT:$SITE${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
START=$(date +%s)

gpu_name=$("$PY" -c 'import torch; print(torch.cuda.get_device_name(0))' 2>/dev/null || true)
DRY=${GPU_CHECK_DRY:-}
[[ -z "$gpu_name" ]] && DRY=1
slug=$("$PY" -c 'import sys; from benchmarks.common import device_slug; print(device_slug(sys.argv[1]))' \
  "${gpu_name:-none}" 2>/dev/null || echo none)
XDIST=()
"$PY" -c 'import xdist' 2>/dev/null && XDIST=(-n 8)
read -r -a TRIALS <<<"${GPU_CHECK_TRIALS:-16 4}"
read -r -a SCALES <<<"${GPU_CHECK_SCALES:-quickstart lm-gpu}"

install_deps() {
  if "$PY" -c 'import optuna, ray, sqlalchemy, alembic' 2>/dev/null; then
    echo "optuna, ray, sqlalchemy and alembic are installed"; return 0
  fi
  if [[ ! -d .gpu-deps ]]; then
    echo "optuna/ray/sqlalchemy missing and no .gpu-deps/: run scripts/gpu-deps.sh where PyPI" \
         "is reachable and carry .gpu-deps"; return 1
  fi
  "$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile \
    --no-cache-dir --upgrade --target "$SITE" .gpu-deps/wheels/*.whl || return 1
  "$PY" - "$SITE" <<'EOF' || return 1
import sys
import tarfile
with tarfile.open(".gpu-deps/ray.tar.xz") as tar:  # our own archive, modes kept
    kw = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
    tar.extractall(sys.argv[1], **kw)
EOF
  "$PY" -c 'import optuna, ray, sqlalchemy, alembic; print("installed ray", ray.__version__)'
}

# name, time limit (s), command...; the command line each step runs (and checks when dry)
STEP_NAMES=(install tests bench curves study summary)
declare -A LIMIT=([install]=${T_INSTALL:-40} [tests]=${T_TESTS:-140} [bench]=${T_BENCH:-170}
                  [curves]=${T_CURVES:-60} [study]=${T_STUDY:-150} [summary]=${T_SUMMARY:-20}
                  [throughput]=${T_THROUGHPUT:-530} [corpus]=${T_CORPUS:-300})
step_cmd() {
  case $1 in
    install) CMD=(install_deps) ;;
    tests) CMD=(env MIXNAS_TEST_DEVICE=cuda TRITON_INTERPRET=0 "$PY" -m pytest -v -p no:cacheprovider
                tests/kernels "${XDIST[@]}" --junitxml="$WORK/kernel_tests.xml") ;;
    bench) CMD=("$PY" -m mixnas.cli bench kernels --json "$RES/kernels_$slug.json"
                --table "$RES/kernel_table_$slug.json") ;;
    curves) CMD=("$PY" -m benchmarks.gpu_loss_curves --out "$RES/gpu_loss_curves_$slug.json") ;;
    study) CMD=("$PY" -m benchmarks.gpu_throughput --scales quickstart --packs 4 1
                --trials "${TRIALS[@]}" --timeout-s 70
                --out "$RES/gpu_throughput_$slug.json") ;;
    throughput) CMD=("$PY" -m benchmarks.gpu_throughput --scales "${SCALES[@]}"
                     --packs 1 2 4 8 --timeout-s 240
                     --out "$RES/gpu_throughput_full_$slug.json") ;;
    corpus) CMD=("$PY" -m mixnas.cli data prepare "$("$PY" -c 'import sysconfig
print(sysconfig.get_paths()["purelib"])')" -o data/site-packages-bpe8k --tokenizer bpe:8192 --quiet) ;;
    summary) CMD=("$PY" -m benchmarks.gpu_check --work "$WORK" --device "${gpu_name:-none}"
                  --results "$RES" --slug "$slug") ;;
  esac
}
dry_flag() {  # what turns a step's command into a check of its command line
  case $1 in
    install) CMD=("$PY" -m pip --version) ;;
    tests) CMD=(env -u MIXNAS_TEST_DEVICE "${CMD[@]:3}" --collect-only) ;;
    bench | corpus) CMD+=(--help) ;;
    *) CMD+=(--check) ;;
  esac
}

read -r -a SELECTED <<<"${GPU_CHECK_STEPS:-${STEP_NAMES[*]}}"
for name in "${SELECTED[@]}"; do
  if [[ -z "${LIMIT[$name]:-}" ]]; then
    echo "gpu-check: GPU_CHECK_STEPS: unknown step '$name' (steps: ${STEP_NAMES[*]})"; exit 2
  fi
done
[[ -z "$DRY" && " ${SELECTED[*]} " != *" summary "* ]] && SELECTED+=(summary)

if [[ -n "$DRY" ]]; then
  bad=0
  for name in "${SELECTED[@]}"; do
    step_cmd "$name"; dry_flag "$name"
    if ! out=$(timeout 300 "${CMD[@]}" 2>&1); then  # generous: a loaded machine imports slowly
      echo "gpu-check: step '$name' has an invalid command line: $(tail -n 1 <<<"$out")"
      bad=1
    fi
  done
  rm -rf "$WORK"
  [[ $bad == 0 ]] && echo "gpu-check: no CUDA GPU here${GPU_CHECK_DRY:+ (GPU_CHECK_DRY)}: nothing" \
    "measured; the command lines of its ${#SELECTED[@]} steps are valid"
  exit $bad
fi

mkdir -p "$RES"
echo "gpu-check on $gpu_name: steps ${SELECTED[*]}, work folder $WORK, budget ${BUDGET}s"
for name in "${SELECTED[@]}"; do
  left=$(( BUDGET - ($(date +%s) - START) ))
  limit=${LIMIT[$name]}
  (( limit > left )) && limit=$(( left > 10 ? left : 10 ))
  [[ -f "$RES/kernel_table_$slug.json" ]] && export MIXNAS_KERNEL_TABLE="$RES/kernel_table_$slug.json"
  step_cmd "$name"
  t0=$(date +%s)
  if [[ $name == corpus && -d data/site-packages-bpe8k ]]; then
    echo "data/site-packages-bpe8k is prepared" > "$WORK/$name.log"; rc=0
  elif [[ $name == install ]]; then
    install_deps > "$WORK/$name.log" 2>&1; rc=$?  # a shell function: no `timeout`; pip is quick
  else
    # SIGINT first: pytest still writes its report, the benchmarks stop their studies cleanly
    timeout -s INT --kill-after=15 "$limit" "${CMD[@]}" > "$WORK/$name.log" 2>&1; rc=$?
  fi
  secs=$(( $(date +%s) - t0 ))
  printf '{"step": "%s", "rc": %d, "seconds": %d, "limit_s": %d, "timed_out": %s}\n' \
    "$name" "$rc" "$secs" "$limit" "$([[ $rc == 124 || $rc == 137 ]] && echo true || echo false)" \
    > "$WORK/$name.step.json"
  [[ $name == summary ]] && cat "$WORK/$name.log"
  printf '%-8s rc=%-3d %4ds (limit %ds)\n' "$name" "$rc" "$secs" "$limit" >&2
done
exit 0

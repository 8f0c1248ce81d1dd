#!/usr/bin/env bash
# One-command GPU check. On a machine with a CUDA GPU, from the repository (any directory):
#
#   benchmarks/gpu_check.sh             CUDA tests, the GPU kernel benchmark (full grid), and a
#                                       bf16 pretraining smoke run per head with images/s
#   benchmarks/gpu_check.sh --quick     the same with the benchmark's quick grid
#   benchmarks/gpu_check.sh --focus     what issue 15 still needs, in about 6 minutes: the Triton
#                                       tests, a tile sweep at its target (KME/WPSE fwd+bwd, B = 4096,
#                                       M = 8, d = 256) with a per-kernel profile, the grid rows the
#                                       first run did not reach (B = 16384, M = 16), and, if ncu is
#                                       there, an ncu report of the KME kernels; each section under
#                                       its own time limit
#   benchmarks/gpu_check.sh --short     issue 27 in about 4 minutes (6 of device time with the
#                                       machine's start-up): the compiled tests of the flattened
#                                       kernels, the target shape (B = 4096, M = 8, d = 256, KME
#                                       and WPSE fwd+bwd) on the tiled and the flattened kernels
#                                       (both backward modes) with the bf16 GEMM rate measured in
#                                       the same run, and, if ncu is there, an ncu profile of one
#                                       flattened KME fwd+bwd (SpeedOfLight, Occupancy,
#                                       WarpStateStats, MemoryWorkloadAnalysis; --clock-control none)
#   benchmarks/gpu_check.sh --dry-run   on a CPU: checks this script and the benchmark's code path
#                                       (Triton interpreter, tiny sizes); writes to a temp dir
#   benchmarks/gpu_check.sh --focus --dry-run   the same for the focus sections (--short alike)
#   SECTIONS="sweep ncu" benchmarks/gpu_check.sh --focus   only these sections (after machine):
#                                       the focus run takes ~8-9 minutes in all (tests ~2, sweep
#                                       ~2.5, grid rows ~2, ncu <= 2.5), so a 10-minute call may
#                                       want it in two halves
#
# Needs .venv with a CUDA build of torch and Triton (`make setup` after installing the CUDA torch;
# see README). PY=/path/to/python overrides the interpreter.
# Results, named after the GPU (nvidia-smi --query-gpu=name), in benchmarks/results/gpu/:
#   <gpu>-machine.txt   nvidia-smi, torch, triton, the commit
#   <gpu>-tests.txt     section 1's pytest output
#   <gpu>.md, <gpu>.csv section 2's benchmark
#   <gpu>-tiles-64x32x8.md, .csv   section 3: Triton alone on the other tile shape (README)
#   pretrain-<gpu>.md, .json       section 4: bf16 pretraining smoke per head, heads vs GEMM
#   --focus: <gpu>-tests-triton.txt, <gpu>-sweep.{md,csv}, <gpu>-sweep-profile.md,
#            <gpu>-grid-rest.{md,csv}, <gpu>-ncu-kme.txt
#   --short: <gpu>-short-tests.txt, <gpu>-short.{md,csv}, <gpu>-short-ncu.txt
# Sections run in order; a failing section is reported and the next one still runs; the script
# exits 1 if any failed. To add a section (e.g. a bf16 pretraining smoke run), add a function
# `section_<name>` below and one `run_section <name>` line at the end.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2
PY="${PY:-.venv/bin/python}"
MODE=full
FOCUS=0
SHORT=0
USAGE="usage: $0 [--quick | --focus | --short] [--dry-run]"
for arg in "$@"; do
  case "$arg" in
    --quick) MODE=quick ;;
    --dry-run) MODE=dry ;;
    --focus) FOCUS=1 ;;
    --short) SHORT=1 ;;
    *) echo "$USAGE" >&2; exit 2 ;;
  esac
done
if ((FOCUS && SHORT)); then echo "$USAGE" >&2; exit 2; fi
FOCUS_ALL="tests_triton sweep grid_rest ncu"
SHORT_ALL="tests_flat target ncu_flat"
if ((SHORT)); then KIND=short ALL=$SHORT_ALL; else KIND=focus ALL=$FOCUS_ALL; fi
read -r -a FOCUS_SECTIONS <<<"${SECTIONS:-$ALL}"
for name in "${FOCUS_SECTIONS[@]}"; do
  if [[ " $ALL " != *" $name "* ]]; then
    echo "gpu_check: no $KIND section '$name' (SECTIONS takes: $ALL)" >&2
    exit 2
  fi
done
# Tile shapes the focus sweep tries (BB,BC,warps[,stages]): the default, then the wgmma tiles
# that compile without spills or with few (benchmarks/results/triton_compile_sm90.md).
SWEEP_TILES=(default 64,32,8 64,32,8,2 64,32,8,4 128,32,8 64,64,8)

FAILED=()

run_section() {  # run_section NAME: runs section_NAME, records a failure, never stops the script
  echo
  echo "=== $1 ==="
  if "section_$1"; then
    echo "=== $1: ok ==="
  else
    echo "=== $1: FAILED ===" >&2
    FAILED+=("$1")
  fi
}

# --- 0. machine: name the results after the GPU ---------------------------------------------
if [[ $MODE == dry ]]; then
  GPU="dry-run"
  OUT="$(mktemp -d)"
else
  if ! command -v nvidia-smi >/dev/null; then
    echo "nvidia-smi not found: this script needs a CUDA GPU (use --dry-run on a CPU)" >&2
    exit 2
  fi
  GPU_NAME="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)"
  GPU="$(echo "$GPU_NAME" | tr '[:upper:]' '[:lower:]' | tr -cs 'a-z0-9' '-' | sed 's/^-//; s/-$//')"
  OUT="benchmarks/results/gpu"
fi
mkdir -p "$OUT"
echo "results: $OUT/$GPU*"

section_machine() {
  {
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    if [[ $MODE != dry ]]; then
      nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    fi
    "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'available', torch.cuda.is_available())"
    "$PY" -c "import triton; print('triton', triton.__version__)"
  } | tee "$OUT/$GPU-machine.txt"
  if [[ $MODE != dry ]]; then
    "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || {
      echo "torch sees no CUDA device: install a CUDA build of torch into .venv (README)" >&2
      return 1
    }
  fi
}

# --- 1. CUDA tests: pytest -m cuda (on a GPU the Triton tests run compiled, marked cuda) ------
section_tests() {
  if [[ $MODE == dry ]]; then
    "$PY" -m pytest -m cuda --collect-only -q tests | tail -n 3 | tee "$OUT/$GPU-tests.txt"
    local rc=${PIPESTATUS[0]}
    ((rc == 5)) && rc=0  # 5: nothing collected
    return "$rc"
  fi
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || {
    echo "torch sees no CUDA device: every cuda test would skip" >&2
    return 1
  }
  "$PY" -m pytest -m cuda -q -rs tests 2>&1 | tee "$OUT/$GPU-tests.txt"
  return "${PIPESTATUS[0]}"
}

# --- 2. GPU benchmark: Triton vs chunked vs einsum, fraction of the bf16 GEMM rate -----------
section_benchmark() {
  local args=(--out "$OUT" --name "$GPU")
  [[ $MODE == quick ]] && args+=(--quick)
  [[ $MODE == dry ]] && args+=(--dry-run)
  "$PY" benchmarks/pairwise_gpu.py "${args[@]}"
}

# --- 3. the same, Triton only, quick grid, on the wgmma tiles the default avoids at d = 256 ----
section_benchmark_wgmma_tiles() {
  local args=(--out "$OUT" --name "$GPU-tiles-64x32x8" --impls triton --tiles "64,32,8")
  if [[ $MODE == dry ]]; then args+=(--dry-run); else args+=(--quick); fi
  "$PY" benchmarks/pairwise_gpu.py "${args[@]}"
}

# --- 4. bf16 pretraining smoke run per head (images/s) and the heads against the bf16 GEMM ----
section_pretrain_smoke() {
  local args=(--out-dir "$OUT")
  [[ $MODE == quick ]] && args+=(--steps 10)
  [[ $MODE == dry ]] && args+=(--dry-run)
  "$PY" benchmarks/gpu_pretrain.py "${args[@]}"
}

# --- focus sections (--focus) ------------------------------------------------------------------
limit() {  # limit SECONDS CMD...: the command under a time limit (none in a dry run)
  local s=$1
  shift
  if [[ $MODE == dry ]]; then "$@"; else timeout --signal=INT --kill-after=10 "$s" "$@"; fi
}

section_tests_triton() {
  if [[ $MODE == dry ]]; then
    "$PY" -m pytest -m cuda --collect-only -q tests/similarity/triton | tail -n 3 \
      | tee "$OUT/$GPU-tests-triton.txt"
    local rc=${PIPESTATUS[0]}
    ((rc == 5)) && rc=0  # 5: nothing collected
    return "$rc"
  fi
  limit 240 "$PY" -m pytest -m cuda -q -rs tests/similarity/triton 2>&1 | tee "$OUT/$GPU-tests-triton.txt"
  return "${PIPESTATUS[0]}"
}

section_sweep() {
  local args=(--out "$OUT" --name "$GPU-sweep" --impls triton --profile)
  if [[ $MODE == dry ]]; then
    args+=(--dry-run --configs 20,2,20 --tiles default 32,16,4,2)
  else
    args+=(--configs 4096,8,256 --tiles "${SWEEP_TILES[@]}")
  fi
  limit 240 "$PY" benchmarks/pairwise_gpu.py "${args[@]}"
}

section_grid_rest() {
  local args=(--out "$OUT" --name "$GPU-grid-rest" --impls triton chunked)
  if [[ $MODE == dry ]]; then
    args+=(--dry-run --configs 20,3,20)
  else
    args+=(--configs 16384,16,64 16384,16,256 --target-seconds 0.5)
  fi
  limit 150 "$PY" benchmarks/pairwise_gpu.py "${args[@]}"
}

section_ncu() {
  if ! command -v ncu >/dev/null; then
    echo "ncu not found: no Nsight Compute report (the sweep's profile still says which kernel)"
    return 0
  fi
  local args=(--out "$(mktemp -d)" --name ncu --impls triton --heads kme --max-seconds 0)
  if [[ $MODE == dry ]]; then
    echo "dry run: ncu would profile: $PY benchmarks/pairwise_gpu.py ${args[*]} --configs 4096,8,256"
    return 0
  fi
  limit 150 ncu --clock-control none --kernel-name regex:_kme_ --launch-count 3 --section SpeedOfLight \
    --section Occupancy --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis \
    "$PY" benchmarks/pairwise_gpu.py "${args[@]}" --configs 4096,8,256 2>&1 | tee "$OUT/$GPU-ncu-kme.txt"
  return "${PIPESTATUS[0]}"
}

# --- short sections (--short): issue 27, about 4 minutes in all -------------------------------
# The target shape on every Triton variant in one benchmark process (one bf16 GEMM rate for all)
TARGET_IMPLS=(triton triton-flat triton-flat-atomic)
FLAT_TESTS=(tests/similarity/triton/test_flat_heads.py tests/similarity/triton/test_flat_negative_controls.py)

section_tests_flat() {
  if [[ $MODE == dry ]]; then
    "$PY" -m pytest -m cuda --collect-only -q "${FLAT_TESTS[@]}" | tail -n 3 \
      | tee "$OUT/$GPU-short-tests.txt"
    local rc=${PIPESTATUS[0]}
    ((rc == 5)) && rc=0  # 5: nothing collected
    return "$rc"
  fi
  limit 90 "$PY" -m pytest -m cuda -q -rs --maxfail=3 "${FLAT_TESTS[@]}" 2>&1 \
    | tee "$OUT/$GPU-short-tests.txt"
  return "${PIPESTATUS[0]}"
}

section_target() {
  local args=(--out "$OUT" --name "$GPU-short" --impls "${TARGET_IMPLS[@]}")
  if [[ $MODE == dry ]]; then
    args+=(--dry-run --configs 20,3,20)
  else
    args+=(--configs 4096,8,256 --target-seconds 0.3)
  fi
  limit 90 "$PY" benchmarks/pairwise_gpu.py "${args[@]}"
}

section_ncu_flat() {
  local args=(--out "$(mktemp -d)" --name ncu --impls triton-flat --heads kme --max-seconds 0)
  local ncu_args=(--clock-control none --kernel-name "regex:_kme_(fwd|bwd)_flat" --launch-count 3
    --section SpeedOfLight --section Occupancy --section WarpStateStats
    --section MemoryWorkloadAnalysis)
  if [[ $MODE == dry ]]; then
    echo "dry run: ncu ${ncu_args[*]} $PY benchmarks/pairwise_gpu.py ${args[*]} --configs 4096,8,256"
    return 0
  fi
  if ! command -v ncu >/dev/null; then
    echo "ncu not found: no Nsight Compute profile (the target section's times still stand)"
    return 0
  fi
  limit 60 ncu "${ncu_args[@]}" "$PY" benchmarks/pairwise_gpu.py "${args[@]}" --configs 4096,8,256 \
    2>&1 | tee "$OUT/$GPU-short-ncu.txt"
  return "${PIPESTATUS[0]}"
}

run_section machine
if ((FOCUS || SHORT)); then
  for name in "${FOCUS_SECTIONS[@]}"; do run_section "$name"; done
else
  run_section tests
  run_section benchmark
  run_section benchmark_wgmma_tiles
  run_section pretrain_smoke
fi

echo
if ((${#FAILED[@]})); then
  echo "gpu_check: FAILED sections: ${FAILED[*]} (results in $OUT)" >&2
  exit 1
fi
echo "gpu_check: all sections ok (results in $OUT)"

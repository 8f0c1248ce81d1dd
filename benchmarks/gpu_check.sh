#!/usr/bin/env bash
# One-command GPU check. On a machine with a CUDA GPU, from the repository (any directory):
#
#   benchmarks/gpu_check.sh             CUDA tests, the GPU kernel benchmark (full grid), and a
#                                       bf16 pretraining smoke run per head with images/s
#   benchmarks/gpu_check.sh --quick     the same with the benchmark's quick grid
#   benchmarks/gpu_check.sh --dry-run   on a CPU: checks this script and the benchmark's code path
#                                       (Triton interpreter, tiny sizes); writes to a temp dir
#
# Needs .venv with a CUDA build of torch and Triton (`make setup` after installing the CUDA torch;
# see README). PY=/path/to/python overrides the interpreter.
# Results, named after the GPU (nvidia-smi --query-gpu=name), in benchmarks/results/gpu/:
#   <gpu>-machine.txt   nvidia-smi, torch, triton, the commit
#   <gpu>-tests.txt     section 1's pytest output
#   <gpu>.md, <gpu>.csv section 2's benchmark
#   <gpu>-tiles-64x32x8.md, .csv   section 3: Triton alone on the other tile shape (README)
#   pretrain-<gpu>.md, .json       section 4: bf16 pretraining smoke per head, heads vs GEMM
# Sections run in order; a failing section is reported and the next one still runs; the script
# exits 1 if any failed. To add a section (e.g. a bf16 pretraining smoke run), add a function
# `section_<name>` below and one `run_section <name>` line at the end.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2
PY="${PY:-.venv/bin/python}"
MODE=full
case "${1:-}" in
  "") ;;
  --quick) MODE=quick ;;
  --dry-run) MODE=dry ;;
  *) echo "usage: $0 [--quick | --dry-run]" >&2; exit 2 ;;
esac

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

run_section machine
run_section tests
run_section benchmark
run_section benchmark_wgmma_tiles
run_section pretrain_smoke

echo
if ((${#FAILED[@]})); then
  echo "gpu_check: FAILED sections: ${FAILED[*]} (results in $OUT)" >&2
  exit 1
fi
echo "gpu_check: all sections ok (results in $OUT)"

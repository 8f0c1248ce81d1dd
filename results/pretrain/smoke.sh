#!/usr/bin/env bash
# CPU smoke run of issue 7: shapes (known PMI), three similarities, 300 steps each, then eval.
# Usage: bash results/pretrain/smoke.sh [OUT]   (default OUT=runs/smoke; ~5-10 min on 2 cores)
# --threads 1: on a shared 2-core machine one torch thread per process is several times faster
# than two (OpenMP threads spin when the cores are busy).
set -euo pipefail
OUT=${1:-runs/smoke}
PMILAB=${PMILAB:-.venv/bin/pmilab}
PY=${PY:-.venv/bin/python}
export PMILAB_CACHE=${PMILAB_CACHE:-$OUT/cache}
mkdir -p "$OUT"
: > "$OUT/times.txt"
start=$(date +%s.%N)
for s in linear wpse kme; do
  t0=$(date +%s.%N)
  $PMILAB pretrain --data shapes --similarity "$s" --steps 300 --threads 1 --out "$OUT/$s" --no-progress
  t1=$(date +%s.%N)
  $PMILAB eval --checkpoint "$OUT/$s" --data shapes --out "$OUT/$s/eval" --threads 1 --no-progress
  t2=$(date +%s.%N)
  echo "$s pretrain_s=$(echo "$t1 - $t0" | bc) eval_s=$(echo "$t2 - $t1" | bc)" | tee -a "$OUT/times.txt"
done
echo "total_s=$(echo "$(date +%s.%N) - $start" | bc)" | tee -a "$OUT/times.txt"
$PY -m pmilab.pretrain.report "$OUT"/{linear,wpse,kme}/eval/eval.json | tee "$OUT/table.md"

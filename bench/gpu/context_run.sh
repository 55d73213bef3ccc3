#!/usr/bin/env bash
# One device call for issue 21's second pass and issue 16's llama.cpp overhead (the GPU machine,
# repository root, after bench/prepare.sh here; carry bench/.pack):
#   bash bench/gpu/context_run.sh
# 1. builds llama.cpp and synthesizes the 30B-A3B model (entry.sh build)
# 2. the shim's overhead on llama-bench -ngl 99 when everything fits   -> $OUT/overhead/
# 3. 32k: the reference and spillway's plan (the planner after the per-cell quantized-KV cost) -> $OUT/c32/
#    (CONTEXT_RUN_32K_ONLY picks the methods; add `default` on another card than the 2026-12-06 H100)
# 4. 64k: reference, llama.cpp's default, spillway's plan, q8_0 KV hand-tuned, as time allows -> $OUT/c64/
# With SPILLWAY_LLAMA_PATCHED=1 set, entry.sh builds (or reuses) the patched llama.cpp instead (its
# switches off, it computes as stock). Only 8 files come back: each part keeps results.json, results.md and logs.tar.gz.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
OUT="${OUT:-/tmp/spillway-context-out}"
START=$(date +%s)
left() { echo $((${CONTEXT_RUN_BUDGET_S:-585} - ($(date +%s) - START))); }
mkdir -p "$OUT/overhead" "$OUT/c32" "$OUT/c64" /tmp/spillway-bench/logs
export SPILLWAY_BENCH_TIERS=0
SPILLWAY_BENCH_BUDGET_S=$(left) OUT=/tmp/spillway-bench/build-out bash "$ROOT/bench/gpu/entry.sh" build "$ROOT/bench/matrices/context-12g.json5" 2>&1 | tail -3
MODEL=$(ls /dev/shm/spillway-models/qwen3moe-30b-a3b-Q8_0.gguf /tmp/spillway-bench/models/qwen3moe-30b-a3b-Q8_0.gguf 2>/dev/null | head -1)
# CONTEXT_RUN_OVERHEAD=0 skips step 2 (device time for the context parts first).
if [[ "${CONTEXT_RUN_OVERHEAD:-1}" == 1 ]]; then
  bash "$ROOT/bench/gpu/clients/llama_overhead.sh" /tmp/spillway-bench/llama.cpp/build/bin "$MODEL" "$OUT/overhead" 2
fi
part() { # OUTSUB MATRIX ONLY
  local budget
  budget=$(left)
  ((budget > 60)) || { echo "no time left for $1"; return; }
  SPILLWAY_BENCH_ONLY="$3" SPILLWAY_BENCH_BUDGET_S=$budget OUT="$OUT/$1" bash "$ROOT/bench/gpu/entry.sh" matrix "$ROOT/bench/matrices/$2" 2>&1 | tail -4
  rm -f "$OUT/$1/entry.log" "$OUT/$1/phases.tsv"
}
part c32 context-12g.json5 "${CONTEXT_RUN_32K_ONLY:-all-vram,spillway}"
part c64 context-12g-64k.json5 "${CONTEXT_RUN_64K_ONLY:-all-vram,default,spillway,hand-q8}"
echo "done in $(($(date +%s) - START)) s"

#!/usr/bin/env bash
# One device call for two issues on one patched llama.cpp build (the GPU machine, repository root,
# after bench/prepare.sh here; carry bench/.pack):
#   bash bench/gpu/hybrid_context_run.sh
# 1. issue 22: the GLM-4.7-Flash shape's hybrid matrix (bench/matrices/hybrid-glm-12g.json5); builds
#    the patched llama.cpp (runtimes/llama.cpp/build.sh) and synthesizes the model   -> hybrid/
# 2. issue 21: the 32k plan after the per-cell quantized-KV cost, then 64k as time allows, on the
#    same build (with the patches' switches off it computes as stock llama.cpp)        -> c32/, c64/
# The device tool returns at most 8 files, so everything is packed into $OUT/run.tar.gz at the end.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
FINAL="${OUT:-/tmp/spillway-hc-out}"
STAGE=/tmp/spillway-hc-stage
START=$(date +%s)
BUDGET=${HC_RUN_BUDGET_S:-575}
left() { echo $((BUDGET - ($(date +%s) - START))); }
rm -rf "$STAGE" && mkdir -p "$STAGE/hybrid" "$STAGE/c32" "$STAGE/c64" "$FINAL"
export SPILLWAY_LLAMA_PATCHED=1 SPILLWAY_BENCH_TIERS=0
SPILLWAY_BENCH_REPS=2 SPILLWAY_BENCH_BUDGET_S=${HC_HYBRID_BUDGET_S:-390} OUT="$STAGE/hybrid" \
  bash "$ROOT/bench/gpu/entry.sh" all "$ROOT/bench/matrices/hybrid-glm-12g.json5" 2>&1 | tail -6
# The GLM file (30 GiB of tmpfs, i.e. RAM) is not needed any more; the context parts use the 30B.
rm -f /dev/shm/spillway-models/glm-4.7-flash-*.gguf
part() { # OUTSUB MATRIX ONLY
  local budget
  budget=$(($(left) - 15))
  ((budget > 60)) || { echo "no time left for $1"; return; }
  SPILLWAY_BENCH_ONLY="$3" SPILLWAY_BENCH_BUDGET_S=$budget OUT="$STAGE/$1" \
    bash "$ROOT/bench/gpu/entry.sh" matrix "$ROOT/bench/matrices/$2" 2>&1 | tail -4
}
part c32 context-12g.json5 "${HC_32K_ONLY:-all-vram,spillway}"
part c64 context-12g-64k.json5 "${HC_64K_ONLY:-default,spillway}"
tar -C "$STAGE" -czf "$FINAL/run.tar.gz" . && echo "packed $(du -h "$FINAL/run.tar.gz" | cut -f1)"
echo "done in $(($(date +%s) - START)) s"

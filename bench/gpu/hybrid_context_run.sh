#!/usr/bin/env bash
# One device call for two issues on one patched llama.cpp build (the GPU machine, repository root,
# after bench/prepare.sh here; carry bench/.pack):
#   bash bench/gpu/hybrid_context_run.sh
# 1. issue 22: the GLM-4.7-Flash shape's hybrid matrix (bench/matrices/hybrid-glm-12g.json5); builds
#    the patched llama.cpp (runtimes/llama.cpp/build.sh) and synthesizes the model   -> hybrid/
# 2. issue 21: bench/gpu/context_run.sh's 32k and 64k parts on the same build (with the patches'
#    switches off it computes as stock llama.cpp), without its overhead step          -> ctx/c32, ctx/c64
# The device tool returns at most 8 files, so everything is packed into $OUT/run.tar.gz at the end.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
FINAL="${OUT:-/tmp/spillway-hc-out}"
STAGE=/tmp/spillway-hc-stage
START=$(date +%s)
BUDGET=${HC_RUN_BUDGET_S:-575}
rm -rf "$STAGE" && mkdir -p "$STAGE/hybrid" "$STAGE/ctx" "$FINAL"
export SPILLWAY_LLAMA_PATCHED=1 SPILLWAY_BENCH_TIERS=0
SPILLWAY_BENCH_REPS=2 SPILLWAY_BENCH_BUDGET_S=${HC_HYBRID_BUDGET_S:-390} OUT="$STAGE/hybrid" \
  bash "$ROOT/bench/gpu/entry.sh" all "$ROOT/bench/matrices/hybrid-glm-12g.json5" 2>&1 | tail -6
# The GLM file (30 GiB of tmpfs, i.e. RAM) is not needed any more; the context parts use the 30B.
rm -f /dev/shm/spillway-models/glm-4.7-flash-*.gguf
CONTEXT_RUN_OVERHEAD=0 CONTEXT_RUN_BUDGET_S=$((BUDGET - ($(date +%s) - START) - 15)) \
  CONTEXT_RUN_64K_ONLY="${HC_64K_ONLY:-default,spillway}" OUT="$STAGE/ctx" bash "$ROOT/bench/gpu/context_run.sh"
tar -C "$STAGE" -czf "$FINAL/run.tar.gz" . && echo "packed $(du -h "$FINAL/run.tar.gz" | cut -f1)"
echo "done in $(($(date +%s) - START)) s"

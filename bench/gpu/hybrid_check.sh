#!/usr/bin/env bash
# The logits check of the hybrid MoE experts on the GPU, and the stock baseline at the same batch
# size (the GPU machine, repository root, after bench/prepare.sh here; carry bench/.pack):
#   bash bench/gpu/hybrid_check.sh
# For each shape of bench/matrices/hybrid-both-12g.json5, llama-perplexity over the same text:
#   ref          everything in VRAM (-ngl 99), writes the reference logits
#   stock-ub1    -ncmoe 36 -lm none -ub 1: stock one-token kernels, experts in pinned memory
#   hybrid-ub1   the same with LLAMA_MOE_HYBRID_GPU_FRACTION=0.375: every token takes the split
#   zerocopy-ub1 the same with share 1.0: every host expert read by the GPU (no CPU part)
# KL divergence of each against ref. Written to $OUT/hybrid-check.tsv (a line per case, as it ends),
# logs to $OUT/logs.tar.gz.
# HYBRID_CHECK_MODELS (default "glm47flash moe30b"), HYBRID_CHECK_CASES (default "stock-ub1
# hybrid-ub1 zerocopy-ub1"; ref always runs first), HYBRID_CHECK_QUICK=1: build without the
# FlashAttention kernels (build.sh --no-flash-attn, about half the build; every case then runs
# without flash attention, the reference too).
# Why a script of its own: the harness's checks of 2026-12-06 ran hybrid methods with -lm mmap, where
# the split is never built (fixed in bench/harness/llama.ts); this measures the split itself in one
# short device call.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
OUT="${OUT:-/tmp/spillway-hybrid-check}"
WORK=/tmp/spillway-bench
LOGS="$WORK/check-logs"
mkdir -p "$OUT" "$LOGS"
export SPILLWAY_LLAMA_PATCHED=1
MATRIX="$ROOT/bench/matrices/hybrid-both-12g.json5"
MODELS=${HYBRID_CHECK_MODELS:-glm47flash moe30b}
CASES=${HYBRID_CHECK_CASES:-stock-ub1 hybrid-ub1 zerocopy-ub1}
[[ ${HYBRID_CHECK_QUICK:-0} == 1 ]] && export SPILLWAY_LLAMA_BUILD_FLAGS=--no-flash-attn
SPILLWAY_BENCH_ONLY_MODELS=${MODELS// /,} SPILLWAY_BENCH_BUDGET_S=400 OUT="$WORK/build-out" \
  bash "$ROOT/bench/gpu/entry.sh" build "$MATRIX" 2>&1 | tail -3
BIN="$WORK/llama.cpp-hybrid/build/bin"
# Any text serves: reference and candidate read the same tokens (the weights are synthetic).
TEXT="$WORK/hybrid-check.txt"
python3 -c "
import random
random.seed(7)
words = 'the of and to in is that for on with as by at from it be this are was an or which not have'.split()
print(' '.join(random.choice(words) + str(random.randrange(100)) for _ in range(6000)))" >"$TEXT"
printf 'model\tcase\tmeanKLD\tsameTopPct\texit\n' >"$OUT/hybrid-check.tsv"
ppl() { # MODEL_ID GGUF CASE [ENV=V ...] -- FLAGS...
  local id=$1 gguf=$2 case=$3
  shift 3
  local envs=()
  while [[ $1 != -- ]]; do envs+=("$1"); shift; done
  shift
  local log="$LOGS/$id-$case.log" mode=(--kl-divergence)
  [[ $case == ref ]] && mode=()
  env "${envs[@]}" timeout -k 5 120 "$BIN/llama-perplexity" -m "$gguf" -f "$TEXT" -c 128 --chunks 4 -t 16 "$@" \
    --kl-divergence-base "$WORK/hybrid-check-$id.kld" "${mode[@]}" >"$log" 2>&1
  local rc=$?
  local kld top
  kld=$(grep -E '^Mean +KLD:' "$log" | awk '{print $3}')
  top=$(grep -E '^Same top p:' "$log" | awk '{print $4}')
  printf '%s\t%s\t%s\t%s\t%s\n' "$id" "$case" "${kld:--}" "${top:--}" "$rc" | tee -a "$OUT/hybrid-check.tsv"
}
declare -A FILE=([glm47flash]=glm-4.7-flash-Q8_0 [moe30b]=qwen3moe-30b-a3b-Q8_0)
for id in $MODELS; do
  [[ -n ${FILE[$id]:-} ]] || { echo "unknown model $id (glm47flash, moe30b)"; continue; }
  gguf=$(ls "/dev/shm/spillway-models/${FILE[$id]}.gguf" "$WORK/models/${FILE[$id]}.gguf" 2>/dev/null | head -1)
  [[ -n $gguf ]] || { echo "no model file for $id"; continue; }
  ppl "$id" "$gguf" ref -- -ngl 99
  for c in $CASES; do
    case $c in
      stock-ub1) ppl "$id" "$gguf" "$c" -- -ngl 99 -ncmoe 36 -lm none -ub 1 ;;
      hybrid-ub1) ppl "$id" "$gguf" "$c" LLAMA_MOE_HYBRID_GPU_FRACTION=0.375 -- -ngl 99 -ncmoe 36 -lm none -ub 1 ;;
      zerocopy-ub1) ppl "$id" "$gguf" "$c" LLAMA_MOE_HYBRID_GPU_FRACTION=1.0 -- -ngl 99 -ncmoe 36 -lm none -ub 1 ;;
      *) echo "unknown case $c" ;;
    esac
  done
done
tar -C "$LOGS" -czf "$OUT/logs.tar.gz" .
echo "done in $SECONDS s"

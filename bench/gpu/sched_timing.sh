#!/usr/bin/env bash
# Where a hybrid decode token's host time goes (issue 22), without a profiler: llama-bench decode runs
# (no prefill) of the patched build bench/gpu/entry.sh left on this machine with GGML_SCHED_TIMING=1
# (patch 0005), one per configuration, each writing the scheduler's per-graph figures and the run's
# tokens/s to OUT/sched-timing.tsv. Fixed flags (-ngl 99 -ncmoe N -lm none -ub 2048): no ballast needed.
# Usage, after `entry.sh build` on the same warm machine:
#   bash bench/gpu/sched_timing.sh MODEL.gguf [NCMOE] [CONFIG...]
# A CONFIG is NAME=VAR=VALUE,VAR=VALUE (environment for that run; NAME alone: none; THREADS=n is
# llama-bench's -t for that run instead, default nproc). Default: stock,
# the copy mode at 3 of 8 with and without the launch thread and serial, 2 of 8, and 8 of 8 (GPU only).
# Environment: SPILLWAY_BENCH_WORK (default /tmp/spillway-bench), OUT (default $WORK/out).
set -uo pipefail
WORK="${SPILLWAY_BENCH_WORK:-/tmp/spillway-bench}"
OUTDIR="${OUT:-$WORK/out}"
MODEL="$1"
NCMOE="${2:-36}"
shift $(($# >= 2 ? 2 : $#))
BIN="$WORK/llama.cpp-hybrid/build/bin/llama-bench"
COPY="LLAMA_MOE_HYBRID_GPU_READ=copy"
configs=("$@")
((${#configs[@]})) || configs=(stock "copy-0.375=LLAMA_MOE_HYBRID_GPU_FRACTION=0.375,$COPY"
  "copy-0.375-nothread=LLAMA_MOE_HYBRID_GPU_FRACTION=0.375,$COPY,GGML_SCHED_LAUNCH_THREAD=0"
  "copy-0.375-serial=LLAMA_MOE_HYBRID_GPU_FRACTION=0.375,$COPY,GGML_SCHED_NO_OVERLAP=1"
  "copy-0.25=LLAMA_MOE_HYBRID_GPU_FRACTION=0.25,$COPY" "copy-1.0=LLAMA_MOE_HYBRID_GPU_FRACTION=1.0,$COPY")
mkdir -p "$OUTDIR"
result="$OUTDIR/sched-timing.tsv"
[[ -x "$BIN" && -s "$MODEL" ]] || { echo "sched_timing: missing $BIN or $MODEL" >&2; exit 1; }
printf 'config\tthreads\tdecode_tps\ttiming\n' >"$result"
cores="$(nproc)"
for c in "${configs[@]}"; do
  name="${c%%=*}"
  vars=()
  [[ "$c" == *=* ]] && IFS=, read -ra vars <<<"${c#*=}"
  threads="$cores"
  envs=()
  for v in "${vars[@]}"; do
    if [[ "$v" == THREADS=* ]]; then threads="${v#THREADS=}"; else envs+=("$v"); fi
  done
  log="$WORK/sched-timing-$name.log"
  env GGML_SCHED_TIMING=1 "${envs[@]}" timeout -k 5 120 "$BIN" -m "$MODEL" -p 0 -n 64 -r 1 -t "$threads" -o json \
    -ngl 99 -ncmoe "$NCMOE" -lm none -ub 2048 >"$log.json" 2>"$log"
  tps=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["avg_ts"])' "$log.json" 2>/dev/null || echo null)
  timing=$(grep '^ggml_sched_timing:' "$log" | tr '\n' ' ')
  printf '%s\t%s\t%s\t%s\n' "$name" "$threads" "$tps" "${timing:-none}" >>"$result"
done
cat "$result"

#!/usr/bin/env bash
# Where a hybrid decode token's host time goes (issue 22), without a profiler: llama-bench decode runs
# (no prefill) of the patched build bench/gpu/entry.sh left on this machine with GGML_SCHED_TIMING=1
# (patch 0005), one per configuration, each writing the scheduler's per-graph figures and the run's
# tokens/s to OUT/sched-timing.tsv. Fixed flags (-ngl 99 -ncmoe N -lm none -ub 2048 unless a CONFIG says
# otherwise): no ballast needed.
# Usage, after `entry.sh build` on the same warm machine:
#   bash bench/gpu/sched_timing.sh MODEL.gguf [NCMOE] [CONFIG...]
# A CONFIG is NAME=VAR=VALUE,VAR=VALUE (environment for that run; NAME alone: none). Keys that set
# llama-bench's flags for that run instead of the environment: THREADS=n (-t, default nproc), UB=n
# (-ub, default 2048), LAST=L (the experts of the LAST NCMOE of L layers stay on the CPU, through -ot,
# the end llama.cpp's fit spills from, instead of -ncmoe's first NCMOE). Default: stock,
# the copy mode at 3 of 8 with and without the launch thread and serial, 2 of 8, and 8 of 8 (GPU only).
# Environment: SPILLWAY_BENCH_WORK (default /tmp/spillway-bench), OUT (default $WORK/out),
# SPILLWAY_TIMING_TOKENS (tokens per run, default 64), SPILLWAY_TIMING_REPS (llama-bench -r, default 1).
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
cores="$(nproc)"
tokens="${SPILLWAY_TIMING_TOKENS:-64}"
reps="${SPILLWAY_TIMING_REPS:-1}"
# -ot pattern keeping the experts of layers FIRST..LAST-1 on the CPU.
experts_on_cpu() {
  local first=$1 last=$2 ids=() i
  for ((i = first; i < last; i++)); do ids+=("$i"); done
  local IFS='|'
  printf 'blk\\.(%s)\\.ffn_(up|down|gate|gate_up)_exps=CPU' "${ids[*]}"
}
# One CONFIG into name, threads, envs and flags; returns 1 (with the reason on stderr) when invalid.
parse_config() {
  local c=$1 v ub=2048 layers="" vars=()
  name="${c%%=*}"
  [[ "$c" == *=* ]] && IFS=, read -ra vars <<<"${c#*=}"
  threads="$cores"
  envs=()
  for v in "${vars[@]}"; do
    case "$v" in
      THREADS=*) threads="${v#THREADS=}" ;;
      UB=*) ub="${v#UB=}" ;;
      LAST=*) layers="${v#LAST=}" ;;
      *) envs+=("$v") ;;
    esac
  done
  for v in "THREADS=$threads" "UB=$ub" ${layers:+"LAST=$layers"}; do
    [[ "${v#*=}" =~ ^[1-9][0-9]*$ ]] || { echo "sched_timing: $name: $v is not a positive whole number" >&2; return 1; }
  done
  if [[ -n "$layers" ]]; then
    ((layers >= NCMOE)) || { echo "sched_timing: $name: LAST=$layers is fewer layers than NCMOE $NCMOE" >&2; return 1; }
    flags=(-ngl 99 -ot "$(experts_on_cpu $((layers - NCMOE)) "$layers")")
  else
    flags=(-ngl 99 -ncmoe "$NCMOE")
  fi
  flags+=(-lm none -ub "$ub")
}
# Every config is checked before the first run, so a typo does not cost the runs before it.
for c in "${configs[@]}"; do parse_config "$c" || exit 2; done
[[ -x "$BIN" && -s "$MODEL" ]] || { echo "sched_timing: missing $BIN or $MODEL" >&2; exit 1; }
mkdir -p "$OUTDIR"
result="$OUTDIR/sched-timing.tsv"
printf 'config\tthreads\tdecode_tps\ttiming\tflags\n' >"$result"
for c in "${configs[@]}"; do
  parse_config "$c"
  log="$WORK/sched-timing-$name.log"
  env GGML_SCHED_TIMING=1 "${envs[@]}" timeout -k 5 120 "$BIN" -m "$MODEL" -p 0 -n "$tokens" -r "$reps" -t "$threads" -o json \
    "${flags[@]}" >"$log.json" 2>"$log"
  tps=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["avg_ts"])' "$log.json" 2>/dev/null || echo null)
  timing=$(grep '^ggml_sched_timing:' "$log" | tr '\n' ' ')
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$threads" "$tps" "${timing:-none}" "${flags[*]}" >>"$result"
done
cat "$result"

#!/usr/bin/env bash
# Where a hybrid decode token's GPU time goes (issue 22): Nsight Systems traces of llama-bench decode
# (no prefill) with the patched build that bench/gpu/entry.sh left on this machine, one per mode,
# each summarized by trace_summary.py into OUT/trace.json (window, GPU busy time, host-to-device
# copies and their rate, the kernels that took the time) with the run's own tokens/s.
# Fixed flags (-ngl 99 -ncmoe N -lm none), so no ballast is needed: the placement does not depend on
# free VRAM. Usage, after entry.sh on the same warm machine:
#   bash bench/gpu/hybrid_trace.sh MODEL.gguf [NCMOE] [SECONDS]
# Environment: SPILLWAY_BENCH_WORK (default /tmp/spillway-bench), OUT (default $WORK/out),
# SPILLWAY_TRACE_MODES (default "copy-0.375 inplace-0.375 inplace-1.0").
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
WORK="${SPILLWAY_BENCH_WORK:-/tmp/spillway-bench}"
OUTDIR="${OUT:-$WORK/out}"
MODEL="$1"
NCMOE="${2:-36}"
BUDGET="${3:-170}"
END=$(($(date +%s) + BUDGET))
BIN="$WORK/llama.cpp-hybrid/build/bin"
TMP="$WORK/trace"
mkdir -p "$TMP" "$OUTDIR"
NSYS=$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -n1)
result="$OUTDIR/trace.json"
if [[ -z "$NSYS" || ! -x "$BIN/llama-bench" || ! -s "$MODEL" ]]; then
  # json.dumps: the paths may hold any character.
  python3 -c 'import json,sys; print(json.dumps({"error": "missing: nsys=%s bench=%s model=%s" % tuple(sys.argv[1:])}))' \
    "${NSYS:-none}" "$BIN/llama-bench" "$MODEL" >"$result"
  exit 0
fi
echo "{" >"$result"
first=1
for mode in ${SPILLWAY_TRACE_MODES:-copy-0.375 inplace-0.375 inplace-1.0}; do
  left=$((END - $(date +%s)))
  ((left > 45)) || { echo "trace: no time left for $mode" >&2; break; }
  read_mode="${mode%%-*}"
  share="${mode#*-}"
  rm -f "$TMP/$mode".*
  # -p 0 -n 48: decode only; the summary skips the load and the first half second.
  env LLAMA_MOE_HYBRID_GPU_FRACTION="$share" LLAMA_MOE_HYBRID_GPU_READ="$read_mode" \
    timeout -k 5 $((left - 10)) "$NSYS" profile -t cuda -s none --cpuctxsw=none -o "$TMP/$mode" --export=sqlite \
    "$BIN/llama-bench" -m "$MODEL" -p 0 -n 48 -r 1 -t "$(nproc)" -o json -ngl 99 -ncmoe "$NCMOE" -lm none -ub 2048 \
    >"$TMP/$mode.bench.json" 2>"$TMP/$mode.log"
  rc=$?
  # nsys may print its own lines around llama-bench's JSON: take the array itself.
  tps=$(python3 -c 'import json,sys; t=open(sys.argv[1]).read(); print(json.loads(t[t.index("["):t.rindex("]")+1])[0]["avg_ts"])' "$TMP/$mode.bench.json" 2>/dev/null || echo null)
  summary=$(python3 "$ROOT/bench/gpu/trace_summary.py" "$TMP/$mode.sqlite" 2>>"$TMP/$mode.log" || echo '{"error": "no summary"}')
  ((first)) || echo "," >>"$result"
  first=0
  printf '"%s": {"rc": %s, "decodeTps": %s, "trace": %s}\n' "$mode" "$rc" "${tps:-null}" "$summary" >>"$result"
done
echo "}" >>"$result"
tail -n 3 "$TMP"/*.log >"$OUTDIR/trace.log" 2>/dev/null
cat "$result"

#!/usr/bin/env bash
# Issue 22: is the CPU part of a hybrid (or stock -ncmoe) decode token bound by the memory system, or
# by llama.cpp's kernel and its synchronization? In the scheduler's timers (bench/results/
# 2026-12-07-hybrid-threads) llama.cpp's CPU splits read the 30B's experts at ~74 GB/s where the
# machine's probe read 150. This builds ggml's CPU backend from the llama.cpp source (CPU only, a
# minute on 16 cores), compiles bench/gpu/cpu_experts.c against it and reads one token's experts
# five ways (ggml per block, ggml per token, a plain row loop with ggml's vec_dot, the same rows as
# four spaced streams, a plain sum), for
# the 30B-A3B and GLM-4.7-Flash expert shapes, in pinned (llama.cpp's -lm none), default and
# 4 KiB-page memory, beside spillway's CPU read probe (tuned and plain loops). A source with patch
# 0006 (runtimes/llama.cpp/patches) also runs ggml with GGML_CPU_MATVEC_STREAMS=4 ("-streams" labels).
#
# Usage (repository root): bash bench/gpu/cpu_experts.sh OUTDIR [--source DIR] [--ggml-lib DIR] [--quick]
#   --source DIR    llama.cpp source (default $SPILLWAY_BENCH_WORK/llama.cpp, unpacked by entry.sh)
#   --ggml-lib DIR  a built folder holding libggml-cpu.so and libggml-base.so (no build; the
#                   headers come from --source)
#   --quick         a small run for tests: 2 threads, 2 blocks, 3 tokens, malloc memory, with --check
# Environment: CPU_EXPERTS_THREADS (default 16), CPU_EXPERTS_BLOCKS (default 36: -ncmoe 36's CPU blocks).
# Writes OUTDIR/cpu_experts.jsonl (one JSON object per configuration and method, a "config" label
# each) and OUTDIR/cpu_experts.log. Exit 1 when ggml's output differs from the reference, 2 on bad
# usage, 3 when a step fails.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
WORK="${SPILLWAY_BENCH_WORK:-/tmp/spillway-bench}"
OUTDIR=""
SOURCE="$WORK/llama.cpp"
LIB=""
QUICK=0
while (($#)); do
  case "$1" in
    --source) SOURCE="${2:?--source needs a folder}"; shift ;;
    --ggml-lib) LIB="${2:?--ggml-lib needs a folder}"; shift ;;
    --quick) QUICK=1 ;;
    -*) echo "cpu_experts.sh: unknown option $1" >&2; exit 2 ;;
    *) [[ -z "$OUTDIR" ]] || { echo "cpu_experts.sh: one OUTDIR only" >&2; exit 2; }; OUTDIR="$1" ;;
  esac
  shift
done
[[ -n "$OUTDIR" ]] || { echo "usage: cpu_experts.sh OUTDIR [--source DIR] [--ggml-lib DIR] [--quick]" >&2; exit 2; }
[[ -f "$SOURCE/ggml/include/ggml-cpu.h" ]] || { echo "cpu_experts.sh: $SOURCE is not a llama.cpp source (no ggml/include/ggml-cpu.h)" >&2; exit 2; }
THREADS="${CPU_EXPERTS_THREADS:-16}"
BLOCKS="${CPU_EXPERTS_BLOCKS:-36}"
[[ "$THREADS" =~ ^[1-9][0-9]*$ && "$BLOCKS" =~ ^[1-9][0-9]*$ ]] || { echo "cpu_experts.sh: CPU_EXPERTS_THREADS and CPU_EXPERTS_BLOCKS must be whole numbers" >&2; exit 2; }
mkdir -p "$OUTDIR"
LOG="$OUTDIR/cpu_experts.log"
JSONL="$OUTDIR/cpu_experts.jsonl"
: >"$JSONL"
: >"$LOG"

if [[ -z "$LIB" ]]; then
  # The CPU backend alone, out of the source tree (the source may be shared with a CUDA build).
  BUILD="$WORK/cpu-experts-build"
  gen=()
  command -v ninja >/dev/null && gen=(-G Ninja)
  echo "cpu_experts: building ggml-cpu from $SOURCE in $BUILD" | tee -a "$LOG" >&2
  cmake -S "$SOURCE" -B "$BUILD" "${gen[@]}" -DGGML_CUDA=OFF -DGGML_NATIVE=ON -DCMAKE_BUILD_TYPE=Release \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_SERVER=OFF \
    -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF >>"$LOG" 2>&1 \
    && cmake --build "$BUILD" -j "$(nproc)" --target ggml-cpu >>"$LOG" 2>&1 \
    || { echo "cpu_experts: the ggml-cpu build failed (see $LOG)" >&2; tail -n 20 "$LOG" >&2; exit 3; }
  LIB="$BUILD/bin"
fi
[[ -e "$LIB/libggml-cpu.so" && -e "$LIB/libggml-base.so" ]] || { echo "cpu_experts.sh: $LIB lacks libggml-cpu.so or libggml-base.so" >&2; exit 2; }

BIN_DIR="$(mktemp -d)"
trap 'rm -rf "$BIN_DIR"' EXIT
TOOL="$BIN_DIR/cpu_experts"
gcc -O2 -march=native -fopenmp -Wall -o "$TOOL" "$ROOT/bench/gpu/cpu_experts.c" -I"$SOURCE/ggml/include" \
  -L"$LIB" -lggml-cpu -lggml-base -lm -ldl -Wl,-rpath,"$LIB" >>"$LOG" 2>&1 \
  || { echo "cpu_experts: compiling cpu_experts.c failed (see $LOG)" >&2; tail -n 20 "$LOG" >&2; exit 3; }

# run LABEL ARGS...: one configuration; its JSON lines get the label.
FAILED=0
run() {
  local label="$1" rc
  shift
  echo "cpu_experts: $label: $*" | tee -a "$LOG" >&2
  "$TOOL" --label "$label" "$@" >>"$JSONL" 2>>"$LOG"
  rc=$?
  if ((rc == 1)); then FAILED=1; echo "cpu_experts: $label: ggml's output differs from the reference" >&2
  elif ((rc != 0)); then echo "cpu_experts: $label: exit $rc (see $LOG)" >&2; [[ "$label" == *pinned* ]] || FAILED=3; fi
}

# A source with spillway's patch 0006 has GGML_CPU_MATVEC_STREAMS: its configurations run twice, stock
# and with the switch on (the "-streams" ones).
STREAMS=0
grep -q GGML_CPU_MATVEC_STREAMS "$SOURCE/ggml/src/ggml-cpu/ggml-cpu.c" && STREAMS=1
run_streams() { # LABEL ARGS...: as run, with GGML_CPU_MATVEC_STREAMS=4, when the source has it
  ((STREAMS)) || return 0
  local label="$1"
  shift
  GGML_CPU_MATVEC_STREAMS=4 run "$label-streams" "$@"
}

S30=(--embd 2048 --ff 768 --experts 128 --used 8)
SGLM=(--embd 2048 --ff 1536 --experts 64 --used 4)
if ((QUICK)); then
  run quick-30b "${S30[@]}" --threads 2 --blocks 2 --tokens 3 --memory malloc --check
  run_streams quick-30b "${S30[@]}" --threads 2 --blocks 2 --tokens 3 --memory malloc --check
else
  T15=$((THREADS > 1 ? THREADS - 1 : 1))
  run "30b-t$THREADS-pinned" "${S30[@]}" --threads "$THREADS" --blocks "$BLOCKS" --memory pinned --check
  run "30b-t$THREADS-malloc" "${S30[@]}" --threads "$THREADS" --blocks "$BLOCKS" --memory malloc
  run "30b-t$THREADS-nohuge" "${S30[@]}" --threads "$THREADS" --blocks "$BLOCKS" --memory nohuge
  run "30b-t$T15-pinned" "${S30[@]}" --threads "$T15" --blocks "$BLOCKS" --memory pinned
  run "glm-t$THREADS-pinned" "${SGLM[@]}" --threads "$THREADS" --blocks "$BLOCKS" --memory pinned --check
  run_streams "30b-t$THREADS-pinned" "${S30[@]}" --threads "$THREADS" --blocks "$BLOCKS" --memory pinned --check --methods ggml-blocks,ggml-token
  run_streams "30b-t$T15-pinned" "${S30[@]}" --threads "$T15" --blocks "$BLOCKS" --memory pinned --methods ggml-blocks,ggml-token
  run_streams "glm-t$THREADS-pinned" "${SGLM[@]}" --threads "$THREADS" --blocks "$BLOCKS" --memory pinned --check --methods ggml-blocks,ggml-token
  # The machine's read rate by spillway's own probe loops (engine/hardware/measure/cpu_bw.c), 4 GiB.
  gcc -O3 -march=native -pthread -o "$BIN_DIR/cpu_bw" "$ROOT/engine/hardware/measure/cpu_bw.c" >>"$LOG" 2>&1 || FAILED=3
  for mode in tuned simple; do
    "$BIN_DIR/cpu_bw" "$THREADS" 4294967296 3 "$mode" >>"$BIN_DIR/bw.json" 2>>"$LOG" \
      && tail -n 1 "$BIN_DIR/bw.json" | sed "s/^{/{\"config\":\"probe-t$THREADS\",/" >>"$JSONL"
  done
fi
echo "cpu_experts: $(wc -l <"$JSONL") results in $JSONL" >&2
exit "$FAILED"

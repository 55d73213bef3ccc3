#!/usr/bin/env bash
# The GPU machine's one entry: builds llama.cpp (CUDA, sm_90) and the shim, unpacks node, then runs
# a benchmark matrix with the bundled harness (bench/.pack/harness.mjs), which synthesizes missing
# models, holds VRAM with a ballast and writes results.json, results.md and logs into $OUT.
#
# Usage (repository root, after bench/prepare.sh here; carry bench/.pack):
#   bash bench/gpu/entry.sh all    [MATRIX]   build + synth + matrix in one invocation
#   bash bench/gpu/entry.sh build  [MATRIX]   llama.cpp + shim + node (+ the matrix's models)
#   bash bench/gpu/entry.sh synth  [MATRIX]   synthesize the matrix's models only
#   bash bench/gpu/entry.sh matrix [MATRIX]   run the matrix (builds/synths what is missing)
#   bash bench/gpu/entry.sh probe             machine details + a ballast check
#   bash bench/gpu/entry.sh cpu-experts       ggml's CPU expert kernel vs the machine's read rate
# Phases reuse what an earlier call left on a warm machine ($WORK, models), checked by stamps.
# Environment: SPILLWAY_BENCH_WORK (default /tmp/spillway-bench), SPILLWAY_BENCH_MODELS (default
# /dev/shm/spillway-models when /dev/shm has room, else $WORK/models), SPILLWAY_BENCH_BUDGET_S
# (seconds this invocation may use in all, default 585: the device tool stops a command at 600),
# SPILLWAY_BENCH_ONLY (comma-separated method ids to run), SPILLWAY_BENCH_ONLY_MODELS (model ids),
# SPILLWAY_LLAMA_BUILD_FLAGS (extra runtimes/llama.cpp/build.sh options for the patched build),
# SPILLWAY_BENCH_CONCURRENT=1 (the concurrent probe first, ~45 s: concurrent.json, cpu_ram.json), SPILLWAY_BENCH_REPS (llama-bench -r
# override; `all` defaults to 1 to stay inside the device tool's 10 minutes), OUT (results folder, default $WORK/out).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
PACK="$ROOT/bench/.pack"
WORK="${SPILLWAY_BENCH_WORK:-/tmp/spillway-bench}"
OUTDIR="${OUT:-$WORK/out}"
PHASE="${1:-all}"
MATRIX="${2:-$ROOT/bench/matrices/moe30b-12g.json5}"
START=$(date +%s)
BUDGET="${SPILLWAY_BENCH_BUDGET_S:-585}"
# A re-invocation for one step (__fn, below) inherits the parent's deadline.
DEADLINE="${SPILLWAY_BENCH_DEADLINE:-$((START + BUDGET))}"
export SPILLWAY_BENCH_DEADLINE="$DEADLINE"
# Only 8 files come back from $OUT: step logs go to $LOGS and travel as one logs.tar.gz.
LOGS="$WORK/logs"
mkdir -p "$WORK" "$OUTDIR" "$LOGS"
LOG="$OUTDIR/entry.log"
PHASES="$OUTDIR/phases.tsv"
[[ -f "$PHASES" ]] || printf 'phase\trc\tseconds\n' >"$PHASES"

log() { echo "[entry $(($(date +%s) - START))s] $*" | tee -a "$LOG" >&2; }

# Every step runs under `timeout` (its own process group, killed with -k after the grace period);
# the EXIT trap ends any step still running, by the pids this script started.
CHILD=""
SYNTH_PID=""
cleanup() {
  local p
  for p in "$CHILD" "$SYNTH_PID"; do
    if [[ -n "$p" ]] && kill -0 "$p" 2>/dev/null; then
      kill -TERM "$p" 2>/dev/null
      sleep 2
      kill -KILL "$p" 2>/dev/null
    fi
  done
}
trap cleanup EXIT
trap 'log "signal: stopping"; exit 130' INT TERM

# step NAME SECONDS CMD...: time-boxed, logged, recorded in phases.tsv; returns the command's rc.
step() {
  local name="$1" secs="$2"
  shift 2
  local left=$((DEADLINE - $(date +%s)))
  ((secs > left)) && secs=$left
  if ((secs <= 5)); then
    log "$name: skipped, no time left"
    printf '%s\t%s\t%s\n' "$name" "skipped" 0 >>"$PHASES"
    return 124
  fi
  log "$name: start (limit ${secs}s)"
  local t0 rc
  t0=$(date +%s.%N)
  # `timeout` runs programs, not shell functions: re-enter this script for the function.
  timeout -k 10 "$secs" bash "$ROOT/bench/gpu/entry.sh" __fn "$@" >>"$LOGS/$name.log" 2>&1 &
  CHILD=$!
  wait "$CHILD"
  rc=$?
  CHILD=""
  local dt
  dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  printf '%s\t%s\t%s\n' "$name" "$rc" "$dt" >>"$PHASES"
  log "$name: rc=$rc in ${dt}s"
  if ((rc != 0)); then tail -n 30 "$LOGS/$name.log" >&2; fi
  return "$rc"
}

unxz_to() { # src dst: xz may be missing on the image; python's lzma is always there
  if command -v xz >/dev/null; then xz -dc "$1" >"$2"; else python3 -c 'import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],"wb"))' "$1" "$2"; fi
}

NODE="$WORK/node"
LLAMA_SRC="$WORK/llama.cpp"
LLAMA_BIN="$LLAMA_SRC/build/bin"
# What the harness runs: llama-bench, the fit choice, the logits check, and the server (issue 7).
LLAMA_TARGETS=(llama-bench llama-fit-params llama-perplexity llama-server)
# SPILLWAY_LLAMA_PATCHED=1: llama.cpp with spillway's patch set (hybrid MoE experts), built by
# runtimes/llama.cpp/build.sh from the same source; with the patches' switches off it runs as stock.
if [[ "${SPILLWAY_LLAMA_PATCHED:-0}" == 1 ]]; then
  LLAMA_TARGETS=(llama-bench llama-fit-params llama-perplexity)
  LLAMA_BIN="$WORK/llama.cpp-hybrid/build/bin"
fi

need_pack() {
  for f in node.xz llama.cpp.tar.xz harness.mjs; do
    [[ -s "$PACK/$f" ]] || { log "missing $PACK/$f: run bench/prepare.sh and carry bench/.pack"; exit 2; }
  done
}

build_node() {
  local stamp
  stamp=$(stat -c %s "$PACK/node.xz")
  if [[ -x "$NODE" && "$(cat "$NODE.stamp" 2>/dev/null)" == "$stamp" ]]; then return 0; fi
  unxz_to "$PACK/node.xz" "$NODE.part" && chmod +x "$NODE.part" && mv "$NODE.part" "$NODE" && echo "$stamp" >"$NODE.stamp"
  "$NODE" --version
}

# The pack's llama.cpp source, unpacked into $LLAMA_SRC unless it is there already (by the pack's hash).
unpack_llama() {
  local stamp
  stamp=$(sha1sum "$PACK/llama.cpp.tar.xz" | cut -c1-16)
  # .stamp: the stock build's own marker (unpacked and built here); never remove that build.
  [[ "$(cat "$LLAMA_SRC/.unpacked" 2>/dev/null)" == "$stamp" || "$(cat "$LLAMA_SRC/.stamp" 2>/dev/null)" == "$stamp" ]] && return 0
  rm -rf "$LLAMA_SRC" && mkdir -p "$WORK"
  unxz_to "$PACK/llama.cpp.tar.xz" "$WORK/llama.cpp.tar" && tar -xf "$WORK/llama.cpp.tar" -C "$WORK" && rm -f "$WORK/llama.cpp.tar" || return 1
  echo "$stamp" >"$LLAMA_SRC/.unpacked"
}

build_llama() {
  local stamp have=1
  stamp=$(sha1sum "$PACK/llama.cpp.tar.xz" | cut -c1-16)
  for t in "${LLAMA_TARGETS[@]}"; do [[ -x "$LLAMA_BIN/$t" ]] || have=0; done
  if ((have)) && [[ "$(cat "$LLAMA_SRC/.stamp" 2>/dev/null)" == "$stamp" ]]; then
    log "llama.cpp: built already ($stamp)"
    return 0
  fi
  if [[ "${SPILLWAY_LLAMA_PATCHED:-0}" == 1 ]]; then
    unpack_llama || return 1
    bash "$ROOT/runtimes/llama.cpp/build.sh" --source "$LLAMA_SRC" --dir "$WORK/llama.cpp-hybrid" \
      --targets "${LLAMA_TARGETS[*]}" --cuda-arch 90 --jobs 18 ${SPILLWAY_LLAMA_BUILD_FLAGS:-}
    return $?
  fi
  if [[ "$(cat "$LLAMA_SRC/.stamp" 2>/dev/null)" != "$stamp" ]]; then
    rm -rf "$LLAMA_SRC"
    mkdir -p "$WORK"
    unxz_to "$PACK/llama.cpp.tar.xz" "$WORK/llama.cpp.tar" && tar -xf "$WORK/llama.cpp.tar" -C "$WORK" && rm -f "$WORK/llama.cpp.tar" || return 1
  fi
  cd "$LLAMA_SRC" || return 1
  # -DLLAMA_USE_PREBUILT_UI=OFF: no download attempt for the web UI (no network there).
  # -DGGML_CUDA_COMPRESSION_MODE=none: no fatbin compression (default "size"): the same kernels,
  # built faster, which the one-invocation budget needs.
  cmake -S . -B build -G Ninja -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_NATIVE=ON \
    -DGGML_CUDA_COMPRESSION_MODE=none \
    -DCMAKE_BUILD_TYPE=Release -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_BUILD_SERVER=ON -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_CURL=OFF \
    -DLLAMA_OPENSSL=OFF >/dev/null || return 1
  cmake --build build -j 18 --target "${LLAMA_TARGETS[@]}" || return 1
  echo "$stamp" >"$LLAMA_SRC/.stamp"
  cd "$ROOT" || return 1
}

build_shim() {
  if [[ -f "$ROOT/shim/Makefile" ]]; then
    make -C "$ROOT/shim" -j 8
  else
    echo "shim/Makefile not present: the shim methods will be skipped"
  fi
}

harness() { # subcommand args...
  "$NODE" "$PACK/harness.mjs" "$@" --llama-bin "$LLAMA_BIN" --work "$WORK" --out "$OUTDIR" \
    --root "$ROOT" --deadline "$DEADLINE"
}

# synth_in_background MATRIX: synthesis (memory bound, one core) overlaps the llama.cpp build (all
# cores), which saves its 15 s in the one-invocation budget; the matrix then reuses the file.
synth_in_background() {
  local t0
  t0=$(date +%s)
  log "synth: start in the background (limit 300s)"
  (
    timeout -k 10 300 bash "$ROOT/bench/gpu/entry.sh" __fn harness synth --matrix "$1" >>"$LOGS/synth.log" 2>&1
    rc=$?
    printf '%s\t%s\t%s\n' "synth (background)" "$rc" "$(($(date +%s) - t0))" >>"$PHASES"
  ) &
  SYNTH_PID=$!
}

wait_synth() {
  [[ -n "$SYNTH_PID" ]] || return 0
  wait "$SYNTH_PID"
  SYNTH_PID=""
  log "synth: done ($(tail -n 1 "$PHASES" | cut -f2-))"
}

phase_build() {
  need_pack
  step build-node 60 build_node || return 1
  [[ -n "${1:-}" ]] && synth_in_background "$1"
  step build-shim 120 build_shim || log "shim build failed: shim methods will report it"
  step build-llama 420 build_llama || return 1
  wait_synth
}

phase_probe() {
  need_pack
  step build-node 60 build_node || return 1
  step probe 120 harness probe
}

if [[ "$PHASE" == __fn ]]; then
  trap - EXIT
  shift
  "$@"
  exit $?
fi

log "phase $PHASE, matrix $MATRIX, work $WORK, out $OUTDIR, budget ${BUDGET}s"
case "$PHASE" in
  build) phase_build "${2:-}" ;;   # with a MATRIX: its models synthesized alongside
  probe) phase_probe ;;
  cpu-experts)
    # ggml's CPU expert kernel against the machine's read rate (bench/gpu/cpu_experts.sh), ~3 min:
    # ggml's CPU backend alone, built from the pack's source with spillway's patches (0006 adds the
    # four-stream switch the tool also measures).
    need_pack
    step unpack-llama 60 unpack_llama || exit 1
    step build-ggml-cpu 240 bash "$ROOT/runtimes/llama.cpp/build.sh" --cpu-only --targets ggml-cpu \
      --source "$LLAMA_SRC" --dir "$WORK/cpu-experts-ggml" --jobs 18 || exit 1
    step cpu-experts $((DEADLINE - $(date +%s) - 5)) bash "$ROOT/bench/gpu/cpu_experts.sh" "$OUTDIR" \
      --source "$WORK/cpu-experts-ggml/src" --ggml-lib "$WORK/cpu-experts-ggml/build/bin"
    ;;
  synth)
    need_pack
    step build-node 60 build_node || exit 1
    step synth 400 harness synth --matrix "$MATRIX"
    ;;
  matrix | all)
    phase_build "$MATRIX" || exit 1
    # Measure the memory tiers first (no ballast yet): `spillway plan --hardware probe` then plans
    # with the measured bandwidths and the free VRAM probed under the ballast.
    export XDG_CACHE_HOME="$WORK/cache"
    if [[ "${SPILLWAY_BENCH_TIERS:-1}" == 1 ]]; then
      # `all` pins 1 GiB per registration trial (seconds, not the half minute 4 GiB trials take).
      [[ "$PHASE" == all ]] && export SPILLWAY_TIERS_PIN_BYTES="${SPILLWAY_TIERS_PIN_BYTES:-1G}"
      step tiers 120 bash "$ROOT/bench/gpu/tiers.sh" "$LOGS/tiers" && cp "$LOGS/tiers/tiers.json" "$OUTDIR/tiers.json" \
        && cp "$LOGS/tiers/tiers-vs-reference.md" "$OUTDIR/tiers-vs-reference.md"
    fi
    if [[ "${SPILLWAY_BENCH_CONCURRENT:-0}" == 1 ]]; then
      # The concurrent tier figure alone and the CPU's two loops (~45 s, no ballast yet):
      # OUT/concurrent.json, OUT/cpu_ram.json.
      step concurrent 90 harness concurrent
    fi
    # The harness itself synthesizes missing models and time-boxes each method within the deadline.
    reps=()
    # `all` builds too: one llama-bench repetition per method keeps build + matrix inside 10 minutes.
    [[ "$PHASE" == all && -z "${SPILLWAY_BENCH_REPS:-}" ]] && SPILLWAY_BENCH_REPS=1
    [[ -n "${SPILLWAY_BENCH_REPS:-}" ]] && reps=(--repetitions "$SPILLWAY_BENCH_REPS")
    step matrix $((DEADLINE - $(date +%s) - 5)) harness matrix --matrix "$MATRIX" "${reps[@]}"
    ;;
  *)
    echo "usage: $0 all|build|synth|matrix|probe|cpu-experts [MATRIX]" >&2
    exit 2
    ;;
esac
rc=$?
tar -C "$WORK" -czf "$OUTDIR/logs.tar.gz" logs 2>/dev/null
log "done rc=$rc in $(($(date +%s) - START))s"
exit $rc

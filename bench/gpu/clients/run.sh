#!/usr/bin/env bash
# The real-client matrix (issue 16 item 6), on the GPU machine, in one invocation:
#   bash bench/gpu/clients/run.sh            (repository root; results into $OUT or /tmp/spillway-clients/out)
# Builds the shim (make, gcc), then for each client (PyTorch default and expandable segments, JAX
# default and XLA_PYTHON_CLIENT_PREALLOCATE=false, CuPy default and async pools, a Triton kernel, numba-cuda)
# computes the same integer checksum over GIB chunks of 1 GiB:
#   bare   no shim, no ballast: the reference checksum and time
#   spill  under the shim (LD_PRELOAD + the SPILLWAY_* defaults `spillway run --` sets) with the ballast
#          holding all but KEEP GiB of VRAM: working set >= 1.7x free VRAM
#   fit    under the shim, no ballast: everything fits, the shim's overhead
# and writes results.json, results.md, logs.tar.gz into $OUT. A CPU (numpy) checksum runs alongside.
# Environment: CLIENTS_GIB (default 21), CLIENTS_KEEP_GIB (12), CLIENTS_BUDGET_S (330: the whole run),
# CLIENTS_ONLY (comma-separated client names), CLIENTS_RUN_S (75: one run's limit), CLIENTS_LLAMA_BIN and
# CLIENTS_LLAMA_MODEL (the llama.cpp row, llama_client.py), CLIENTS_HOST_LIMIT
# (48G: SPILLWAY_HOST_LIMIT of the shim runs, leaving the 128 GiB machine room for the ballast and Python).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
HERE="$ROOT/bench/gpu/clients"
WORK="${CLIENTS_WORK:-/tmp/spillway-clients}"
OUTDIR="${OUT:-$WORK/out}"
GIB="${CLIENTS_GIB:-21}"
KEEP="${CLIENTS_KEEP_GIB:-12}"
RUN_S="${CLIENTS_RUN_S:-75}"
START=$(date +%s)
DEADLINE=$((START + ${CLIENTS_BUDGET_S:-330}))
LOGS="$WORK/logs"
RUNS="$WORK/runs.jsonl"
mkdir -p "$WORK" "$OUTDIR" "$LOGS"
: >"$RUNS"
log() { echo "[clients $(($(date +%s) - START))s] $*" | tee -a "$OUTDIR/run.log" >&2; }

BALLAST=""
CPU=""
cleanup() {
  [[ -n "$BALLAST" ]] && kill -TERM "$BALLAST" 2>/dev/null && wait "$BALLAST" 2>/dev/null
  [[ -n "$CPU" ]] && kill -TERM "$CPU" 2>/dev/null
  return 0
}
trap cleanup EXIT

# name|script and arguments|extra environment (space-separated K=V)
CLIENTS=(
  "torch-default|torch_client.py $GIB|"
  "torch-expandable|torch_client.py $GIB|PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True"
  "jax-default|jax_client.py $GIB|TF_CPP_MIN_LOG_LEVEL=0"
  "jax-noprealloc|jax_client.py $GIB|XLA_PYTHON_CLIENT_PREALLOCATE=false TF_CPP_MIN_LOG_LEVEL=0"
  "cupy-default|cupy_client.py $GIB default|"
  "cupy-async|cupy_client.py $GIB async|"
  "triton|torch_client.py $GIB triton|"
  "numba|numba_client.py $GIB|"
)
# llama.cpp's own VMM pool: with CLIENTS_LLAMA_BIN (llama-perplexity's folder) and CLIENTS_LLAMA_MODEL (a
# GGUF larger than the free VRAM; its size is that row's working set).
if [[ -n "${CLIENTS_LLAMA_BIN:-}" && -f "${CLIENTS_LLAMA_MODEL:-}" ]]; then
  CLIENTS+=("llama-vmm|llama_client.py|CLIENTS_WORK=$WORK")
fi

make -s -C "$ROOT/shim" BUILD="$WORK/shim" >"$LOGS/build.log" 2>&1 || { log "shim build failed"; cat "$LOGS/build.log" >&2; }
LIB="$WORK/shim/libspillway_shim.so"
# What `spillway run --` puts in the environment (shim/build.ts shimEnv with the recipe defaults), plus
# a host limit that leaves the machine room and the stats records in the work folder.
SHIM_ENV=(LD_PRELOAD="$LIB" SPILLWAY_RESERVE=1G SPILLWAY_MIN_SPILL=32M SPILLWAY_BACKING=auto SPILLWAY_REPORT=vram+host
  SPILLWAY_HOST_LIMIT="${CLIENTS_HOST_LIMIT:-48G}" SPILLWAY_STATS_DIR="$WORK" SPILLWAY_LOG=info)

python3 - "$GIB" >"$WORK/cpu.json" 2>"$LOGS/cpu.log" <<PY &
import json, sys, time
sys.path.insert(0, "$HERE")
from _common import expected_checksum
t = time.time()
print(json.dumps({"checksum": str(expected_checksum(int(sys.argv[1]))), "seconds": round(time.time() - t, 1)}))
PY
CPU=$!

python3 - >"$WORK/machine.json" 2>/dev/null <<'PY'
import json, subprocess
q = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
v = {}
for m in ("torch", "jax", "jaxlib", "cupy", "triton", "numba", "numba_cuda"):
    try:
        v[m] = __import__(m).__version__
    except Exception as e:
        v[m] = "not installed there (%s)" % type(e).__name__
print(json.dumps({"gpu": q, "versions": v}))
PY

# one_run CLIENT PHASE: run a client once, append a line to runs.jsonl
one_run() {
  local spec="$1" phase="$2" name cmd extra
  IFS='|' read -r name cmd extra <<<"$spec"
  if [[ -n "${CLIENTS_ONLY:-}" && ",$CLIENTS_ONLY," != *",$name,"* ]]; then return; fi
  local left=$((DEADLINE - $(date +%s)))
  if ((left < 20)); then
    echo "{\"client\":\"$name\",\"phase\":\"$phase\",\"rc\":null,\"skipped\":\"out of time\"}" >>"$RUNS"
    return
  fi
  local lim=$((left < RUN_S ? left : RUN_S))
  local envs=()
  [[ -n "$extra" ]] && read -r -a envs <<<"$extra"
  [[ "$phase" != bare ]] && envs+=("${SHIM_ENV[@]}")
  # The JAX runs under the shim trace every call (which allocator XLA uses, and how much it asks).
  [[ "$phase" == spill && "$name" == jax-* ]] && envs+=(SPILLWAY_LOG=debug)
  local logf="$LOGS/$name-$phase.log" t0 t1 rc
  t0=$(date +%s.%N)
  (cd "$HERE" && env PYTHONUNBUFFERED=1 "${envs[@]}" timeout -k 5 "$lim" python3 $cmd) >"$logf" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  local res
  res=$(grep '^RESULT ' "$logf" | tail -1 | cut -c8-)
  [[ -z "$res" ]] && res=null
  local tailtxt
  tailtxt=$(grep -v '^spillway\[.*debug' "$logf" | tail -c 1500 | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')
  echo "{\"client\":\"$name\",\"phase\":\"$phase\",\"rc\":$rc,\"wall_s\":$(python3 -c "print(round($t1-$t0,3))"),\"result\":$res,\"tail\":$tailtxt}" >>"$RUNS"
  log "$name $phase: rc $rc $(grep -o '"checksum": "[0-9]*"' "$logf" | head -1)"
}

log "phase bare (no shim, no ballast)"
for c in "${CLIENTS[@]}"; do one_run "$c" bare; done

log "ballast: holding all but $KEEP GiB"
python3 "$ROOT/bench/gpu/ballast.py" "$KEEP" >"$LOGS/ballast.log" 2>&1 &
BALLAST=$!
for _ in $(seq 1 120); do
  grep -q -E '^(READY|ERROR)' "$LOGS/ballast.log" && break
  kill -0 "$BALLAST" 2>/dev/null || break
  sleep 0.5
done
log "ballast: $(head -c 300 "$LOGS/ballast.log")"
if grep -q '^READY' "$LOGS/ballast.log"; then
  for c in "${CLIENTS[@]}"; do one_run "$c" spill; done
fi
kill -TERM "$BALLAST" 2>/dev/null
wait "$BALLAST" 2>/dev/null
BALLAST=""

log "phase fit (shim, no ballast)"
for c in "${CLIENTS[@]}"; do one_run "$c" fit; done

wait "$CPU" 2>/dev/null
CPU=""
python3 "$HERE/results.py" "$WORK" "$OUTDIR" "$GIB" "$KEEP" || log "results.py failed"
tar -C "$WORK" -czf "$OUTDIR/logs.tar.gz" logs runs.jsonl cpu.json machine.json 2>/dev/null
log "done"

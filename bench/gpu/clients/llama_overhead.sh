#!/usr/bin/env bash
# The shim's overhead on llama.cpp when everything fits (issue 16: "when everything fits in VRAM, the
# shim's overhead on each client stays under 1%"): llama-bench -ngl 99 (weights through cudaMalloc,
# compute buffers through llama.cpp's VMM pool), no ballast, without and with the shim in the
# environment run.sh gives its clients, alternating, REPS runs each; writes llama-overhead.json.
#   bash bench/gpu/clients/llama_overhead.sh LLAMA_BIN MODEL OUTDIR [REPS]
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
BIN="${1:?llama bin folder}" MODEL="${2:?model}" OUTDIR="${3:?out dir}" REPS="${4:-2}"
WORK="${CLIENTS_WORK:-/tmp/spillway-clients}"
mkdir -p "$OUTDIR" "$WORK"
make -s -C "$ROOT/shim" BUILD="$WORK/shim" >/dev/null 2>&1 || { echo "shim build failed" >&2; exit 1; }
SHIM_ENV=(LD_PRELOAD="$WORK/shim/libspillway_shim.so" SPILLWAY_RESERVE=1G SPILLWAY_MIN_SPILL=32M SPILLWAY_BACKING=auto
  SPILLWAY_REPORT=vram+host SPILLWAY_HOST_LIMIT=48G SPILLWAY_STATS_DIR="$WORK")
ARGS=(-m "$MODEL" -ngl 99 -p 512 -n 128 -r 3 -t 16 -o json)
: >"$WORK/overhead.jsonl"
for i in $(seq 1 "$REPS"); do
  for phase in bare shim; do
    envs=()
    [[ $phase == shim ]] && envs=("${SHIM_ENV[@]}")
    out=$(env "${envs[@]}" timeout -k 5 120 "$BIN/llama-bench" "${ARGS[@]}" 2>"$WORK/overhead-$phase-$i.log")
    echo "{\"phase\":\"$phase\",\"round\":$i,\"rc\":$?,\"bench\":${out:-null}}" >>"$WORK/overhead.jsonl"
  done
done
python3 - "$WORK/overhead.jsonl" "$OUTDIR/llama-overhead.json" "${ARGS[*]}" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def tps(phase, n_gen):
    v = [t["avg_ts"] for r in rows if r["phase"] == phase and r["bench"] for t in r["bench"] if (t["n_gen"] > 0) == n_gen]
    return v
out = {"args": sys.argv[3], "runs": rows, "summary": {}}
for name, g in (("prefill", False), ("decode", True)):
    b, s = tps("bare", g), tps("shim", g)
    if b and s:
        out["summary"][name] = {"bare_tps": b, "shim_tps": s, "overhead_pct": round(100 * (max(b) / max(s) - 1), 2)}
json.dump(out, open(sys.argv[2], "w"), indent=1)
print(json.dumps(out["summary"]))
PY

#!/usr/bin/env bash
# GPU machine (one GPU is enough), issue 19: what llama.cpp's RPC backend costs per token, against
# spillway's multi-device cost model. Builds rpc-server + llama-bench with CUDA and RPC from the
# bundled llama.cpp source, synthesizes Llama 3.1 8B Q4_0 (random weights), starts an rpc-server
# exposing the same GPU on 127.0.0.1, and runs llama-bench three ways:
#   direct  all blocks on CUDA0
#   rpc     all blocks on RPC0 (the same GPU through the loopback rpc-server)
#   split   half the blocks on RPC0, half on CUDA0 (one hidden-state hand-off per token)
# then `spillway plan` of the same split (node described with the measured link) for the prediction.
# Results: $OUT/rpc_split.json (llama-bench JSON per mode + the plan), logs beside it.
#
# Usage (repository root, npm ci done): OUT=/some/dir scripts/gpu_rpc_split.sh
# Takes about 10-15 minutes (most of it the CUDA build of two targets).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${OUT:?set OUT to a results folder}"
mkdir -p "$OUT"
WORK="$(mktemp -d /tmp/spillway-gpu-rpc.XXXXXX)"
RPC_PID=""
cleanup() { [[ -n "$RPC_PID" ]] && kill "$RPC_PID" 2>/dev/null || true; rm -rf "$WORK/src"; }
trap cleanup EXIT

BUNDLE="$ROOT/node_modules/node-llama-cpp/llama/gitRelease.bundle"
git clone --quiet "$BUNDLE" "$WORK/src"
cmake -S "$WORK/src" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON -DGGML_RPC=ON \
  -DCMAKE_CUDA_ARCHITECTURES=native -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
  -DLLAMA_OPENSSL=OFF > "$OUT/configure.log" 2>&1
start=$(date +%s)
cmake --build "$WORK/build" -j "$(nproc)" --target ggml-rpc-server llama-bench > "$OUT/build.log" 2>&1
echo "build seconds: $(( $(date +%s) - start ))" | tee "$OUT/build_seconds.txt"
BIN="$WORK/build/bin"

MODEL="$WORK/llama8b-q4_0.gguf"
(cd "$ROOT" && npx tsx cli.ts synth llama-8b -q Q4_0 -o "$MODEL") > "$OUT/synth.log" 2>&1

PORT=50052
"$BIN/ggml-rpc-server" -H 127.0.0.1 -p "$PORT" -d CUDA0 > "$OUT/rpc-server.log" 2>&1 &
RPC_PID=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.2; done

# The link as spillway measures it (round trip, GB/s each way) and the devices the server reports.
(cd "$ROOT" && npx tsx cli.ts bench --rpc "127.0.0.1:$PORT" --json) > "$OUT/bench_rpc.json" 2> "$OUT/bench_rpc.log"

bench() { # name, extra args...
  local name=$1; shift
  "$BIN/llama-bench" -m "$MODEL" -p 512 -n 128 -r 3 -fa 1 -o json "$@" > "$OUT/bench_$name.json" 2> "$OUT/bench_$name.log"
}
bench direct -ngl 99
bench rpc --rpc "127.0.0.1:$PORT" -ngl 99 -ts 1/0
bench split --rpc "127.0.0.1:$PORT" -ngl 99 -ts 1/1

# spillway's prediction for the same split: the node described with the measured link.
LINK=$(node -e 'const r=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"))[0]; console.log(Math.min(r.link.uploadGBps.median,r.link.downloadGBps.median), r.link.rttMs.median, r.node.devices[0].totalBytes, r.node.devices[0].freeBytes)' "$OUT/bench_rpc.json")
read -r GBPS RTT TOTAL FREE <<<"$LINK"
cat > "$WORK/split.json5" <<EOF
{
  model: { path: "$MODEL" },
  runtime: "llama.cpp",
  context: 4096, ubatch: 512,
  workload: { promptTokens: 512, generatedTokens: 128 },
  hardware: { nodes: [{ rpc: "127.0.0.1:$PORT", linkGBps: $GBPS, rttMs: $RTT, devices: [{ kind: "gpu", memoryBytes: $TOTAL, freeBytes: $(( FREE / 2 )) }] }] },
}
EOF
(cd "$ROOT" && npx tsx cli.ts plan "$WORK/split.json5" --json) > "$OUT/plan_split.json" 2> "$OUT/plan_split.log"

node -e '
const fs = require("fs"); const out = process.argv[1];
const tps = (f) => { const rows = JSON.parse(fs.readFileSync(`${out}/bench_${f}.json`, "utf8"));
  return Object.fromEntries(rows.map((r) => [r.n_gen > 0 ? "decodeTps" : "prefillTps", r.avg_ts])); };
const plan = JSON.parse(fs.readFileSync(`${out}/plan_split.json`, "utf8"));
const split = plan.candidates.filter((c) => c.strategy === "split").map((c) => ({ id: c.id, predicted: c.predicted, devices: c.devices }));
const r = { measured: { direct: tps("direct"), rpc: tps("rpc"), split: tps("split") }, planned: { chosen: plan.chosen, split } };
fs.writeFileSync(`${out}/rpc_split.json`, JSON.stringify(r, null, 2)); console.log(JSON.stringify(r.measured));
' "$OUT"

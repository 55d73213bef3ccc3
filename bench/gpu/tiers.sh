#!/usr/bin/env bash
# Memory-tier measurements on the GPU machine (issue 8): runs `spillway bench --json --force` from the
# bundled CLI and writes, into OUTDIR:
#   tiers.json                the bench report (HardwareProfile with source "bench", min/median/max)
#   tiers.log                 progress and the table (stderr of the bench)
#   tiers-machine.txt         GPU, driver, CPU, RAM, kernel
#   tiers-vs-reference.md     each figure next to the reference in shared/gpu/NOTES.md, with the deviation
#
# Usage (repository root): bash bench/gpu/tiers.sh OUTDIR
# Environment:
#   NODE             node binary (default: $SPILLWAY_BENCH_WORK/node as unpacked by entry.sh, else `node`)
#   SPILLWAY_BUNDLE  bundled CLI (default bench/.pack/spillway.mjs)
# The bundle loads koffi (CUDA driver through FFI): bench/.pack/node_modules/koffi and
# bench/.pack/node_modules/@koromix/koffi-linux-x64 must travel with it (about 3 MB).
# Needs gcc on the machine (the CPU and disk helpers are built at first use).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
OUTDIR="${1:?usage: tiers.sh OUTDIR}"
mkdir -p "$OUTDIR"
WORK="${SPILLWAY_BENCH_WORK:-/tmp/spillway-bench}"
NODE="${NODE:-}"
if [[ -z "$NODE" ]]; then
  if [[ -x "$WORK/node" ]]; then NODE="$WORK/node"; else NODE="$(command -v node || true)"; fi
fi
BUNDLE="${SPILLWAY_BUNDLE:-$ROOT/bench/.pack/spillway.mjs}"
[[ -x "$NODE" ]] || { echo "tiers: no node binary (set NODE, or run entry.sh build first)" >&2; exit 2; }
[[ -f "$BUNDLE" ]] || { echo "tiers: $BUNDLE not found (run bench/prepare.sh, or set SPILLWAY_BUNDLE)" >&2; exit 2; }

{
  echo "date: $(date -u +%FT%TZ)"
  echo "kernel: $(uname -r)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,memory.free,pcie.link.gen.max,pcie.link.width.max --format=csv 2>&1
  grep -m1 'NVRM version' /proc/driver/nvidia/version 2>/dev/null
  lscpu 2>/dev/null | grep -E '^(Model name|CPU\(s\)|Socket\(s\)|NUMA node\(s\)|L3 cache)'
  free -g | head -2
  echo "disk target: $ROOT ($(df -h "$ROOT" | tail -1))"
} >"$OUTDIR/tiers-machine.txt" 2>&1

# The cache goes to OUTDIR unless the caller names one (entry.sh shares it with the planner).
# Pinning trials of 4 GiB by default, one registration each, as in the reference ("registering 4 GiB
# took 161 ms"); SPILLWAY_TIERS_PIN_BYTES changes it (entry.sh all: 1G, for time).
XDG_CACHE_HOME="${XDG_CACHE_HOME:-$OUTDIR/cache}" "$NODE" "$BUNDLE" bench --json --force --target "$ROOT" \
  --pin-bytes "${SPILLWAY_TIERS_PIN_BYTES:-4G}" ${SPILLWAY_BENCH_ARGS:-} \
  >"$OUTDIR/tiers.json" 2>"$OUTDIR/tiers.log"
rc=$?
cat "$OUTDIR/tiers.log" >&2
if ((rc != 0)); then
  echo "tiers: bench failed (rc=$rc)" >&2
  exit "$rc"
fi

# Reference points measured on one H200 (shared/gpu/NOTES.md), GB/s; registration in ms per 4 GiB.
"$NODE" -e '
const fs = require("node:fs");
const r = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
const m = r.profile.measured ?? {};
const ref = [
  ["h2dGBps", "pinned host-to-device memcpy", 55.4, 1],
  ["d2hGBps", "device-to-host memcpy", 55.3, 1],
  ["zeroCopyGBps", "kernel reading cudaHostAlloc-mapped memory (zero-copy)", 51.3, 1],
  ["registeredZeroCopyGBps", "kernel reading malloc+cuMemHostRegister memory", 51.2, 1],
  ["vramGBps", "VRAM read", 4485, 1],
  ["cpuRamGBps", "16 CPU threads summing RAM (tuned loop: per-thread first touch, 8 accumulators)", 69, 1],
  ["cpuRamSimpleGBps", "16 CPU threads summing RAM (plain loop: one accumulator, one filling thread)", 69, 1],
  ["hostRegisterMsPerGiB", "registering 4 GiB (ms; trials of " + (process.argv[3] || "4G") + ")", 161, 4],
];
const rows = ["| figure | measured median (min..max) | reference | deviation | within 10% |", "| --- | --- | --- | --- | --- |"];
for (const [k, label, refv, scale] of ref) {
  const x = m[k];
  if (!x) { rows.push(`| ${label} | not measured | ${refv} | | no |`); continue; }
  const med = x.median * scale, dev = (med - refv) / refv * 100;
  rows.push(`| ${label} | ${med.toFixed(1)} (${(x.min * scale).toFixed(1)}..${(x.max * scale).toFixed(1)}) ${scale === 1 ? x.unit : "ms"} | ${refv} | ${dev >= 0 ? "+" : ""}${dev.toFixed(1)}% | ${Math.abs(dev) <= 10 ? "yes" : "no"} |`);
}
const g = r.profile.gpu;
const head = `# Memory tiers vs reference\n\nmachine: ${r.key}\nmeasured: ${r.measuredAt}\nGPU: ${g ? `${g.name}, PCIe gen ${g.pcie.gen} x${g.pcie.width}, driver ${g.driver}` : "none"}\n\n`;
fs.writeFileSync(process.argv[2], head + rows.join("\n") + "\n");
console.log(rows.join("\n"));
' "$OUTDIR/tiers.json" "$OUTDIR/tiers-vs-reference.md" "${SPILLWAY_TIERS_PIN_BYTES:-4G}"

// The CPU and disk helpers really run and measure; the no-GPU path says so; the bench result is
// cached per machine and reused; the chart renders to a valid PNG.
import { test } from "node:test";
import { join } from "node:path";
import { measureCpuRam } from "../engine/hardware/measure/cpu.ts";
import { measureDiskRead } from "../engine/hardware/measure/disk.ts";
import { benchCommand } from "../commands/bench.ts";
import { formatBenchTable, runBench } from "../engine/hardware/measure/run.ts";
import { autotuneChartSvg, renderPng } from "../engine/autotune/chart.ts";
import type { AutotuneEntry } from "../engine/autotune/outcome_cache.ts";
import { FfiLoadError, HardwareProbeError } from "../core/errors.ts";
import { withTempDir } from "./_tmp.ts";
import { assert, assertEquals, assertGreater, assertMatch, assertRejects, assertStringIncludes } from "./_assert.ts";

/** Each test in its own temporary folder, removed when it ends. */
const inTempDir = (fn: (dir: string) => Promise<void>) => () => withTempDir("hwbench-cpu-", fn);

test("CPU RAM helper builds with gcc, runs all threads, reports > 0 GB/s per repeat", inTempDir(async (dir) => {
  const r = await measureCpuRam({ cacheDir: dir, threads: 2, bytes: 32 << 20, repeats: 3 });
  assertEquals(r.threads, 2);
  assertEquals(r.bytes, 32 << 20);
  assertGreater(r.ramGBps.min, 0);
  assert(r.ramGBps.min <= r.ramGBps.median && r.ramGBps.median <= r.ramGBps.max);
  assertEquals(r.ramGBps.unit, "GB/s");
  // The plain loop (reference-style) is measured too, with its own repeats.
  assertGreater(r.simpleGBps!.min, 0);
  assert(r.simpleGBps!.min <= r.simpleGBps!.median && r.simpleGBps!.median <= r.simpleGBps!.max);
  const none = await measureCpuRam({ cacheDir: dir, threads: 1, bytes: 1 << 20, repeats: 1, simple: false });
  assertEquals(none.simpleGBps, undefined);
}));

test("CPU RAM helper rejects an unknown loop mode with its name", inTempDir(async (dir) => {
  const { buildHelper } = await import("../engine/hardware/measure/native.ts");
  const { runHelper } = await import("../engine/hardware/measure/cpu.ts");
  const exe = buildHelper("cpu_bw", dir, ["-pthread"]);
  const e = await assertRejects(() => runHelper(exe, ["1", "1048576", "1", "fast"]), HardwareProbeError);
  assertStringIncludes(e.message, "mode must be tuned or simple, not 'fast'");
}));

test("disk helper: scratch file in a directory is read and removed; a file is read in place", inTempDir(async (dir) => {
  const r = await measureDiskRead({ cacheDir: dir, target: dir, bytes: 8 << 20, block: 1 << 20, repeats: 2 });
  assertGreater(r.readGBps.min, 0);
  assertEquals(r.scratch, true);
  assertEquals(r.bytes, 8 << 20);
  const { readdirSync, writeFileSync } = await import("node:fs");
  assert(!readdirSync(dir).some((f) => f.startsWith(".spillway-bench-")), "scratch file removed");
  const f = join(dir, "model.bin");
  writeFileSync(f, new Uint8Array(3 << 20).fill(7));
  const inPlace = await measureDiskRead({ cacheDir: dir, target: f, bytes: 64 << 20, block: 1 << 20, repeats: 1 });
  assertEquals(inPlace.scratch, false);
  assertEquals(inPlace.bytes, 3 << 20, "never more than the file holds");
  await assertRejects(() => measureDiskRead({ cacheDir: dir, target: join(dir, "missing") }), HardwareProbeError, "missing");
}));

test("no GPU: the bench says so, measures CPU and disk, caches the profile, and reuses it", inTempDir(async (dir) => {
  const cacheDir = join(dir, "cache");
  const noCuda = () => Promise.reject(new FfiLoadError("libcuda.so.1", "cannot open shared object file"));
  const err: string[] = [];
  const r = await runBench({ cacheDir, loadCuda: noCuda, bytes: 16 << 20, repeats: 2, stderr: (t) => err.push(t) });
  assertEquals(r.cached, false);
  assertEquals(r.profile.gpu, null);
  assertEquals(r.profile.source, "bench");
  assertEquals(r.ids.gpuName, "none");
  assertStringIncludes(err.join(""), "no GPU: the CUDA driver could not be loaded");
  assert(r.profile.notes!.some((n) => n.includes("no GPU measured") && n.includes("libcuda.so.1")));
  assertEquals(r.profile.host.ramGBps, r.profile.measured!.cpuRamGBps.median);
  assertGreater(r.profile.measured!.cpuRamSimpleGBps.median, 0);
  assertEquals(r.profile.disk.readGBps, r.profile.measured!.diskReadGBps.median);
  const table = formatBenchTable(r);
  assertMatch(table, /GPU: none \(the CUDA driver could not be loaded/);
  assertMatch(table, /CPU reading RAM, all cores\s+[0-9.]+\s+[0-9.]+\s+[0-9.]+\s+GB\/s/);
  // Second run: from the cache, nothing measured.
  const again = await runBench({ cacheDir, loadCuda: noCuda, stderr: (t) => err.push(t) });
  assertEquals(again.cached, true);
  assertEquals(again.measuredAt, r.measuredAt);
  // The command: JSON on stdout, table on stderr, exit 0.
  const out: string[] = [];
  const code = await benchCommand({ cacheDir, loadCuda: noCuda, json: true, stdout: (t) => out.push(t), stderr: () => {} });
  assertEquals(code, 0);
  assertEquals(JSON.parse(out.join("")).profile.gpu, null);
  // A failure is reported with exit code 1 (disk target missing).
  const bad: string[] = [];
  assertEquals(await benchCommand({ cacheDir, force: true, skip: ["gpu", "cpu"], target: join(dir, "nope"), stderr: (t) => bad.push(t) }), 1);
  assertStringIncludes(bad.join(""), "disk benchmark target");
}));

function entry(): AutotuneEntry {
  const row = (id: string, p: [number, number], m: [number, number] | null) => ({
    id, label: id, strategy: "experts_cpu", argv: [], env: {},
    predicted: { prefillTps: p[0], decodeTps: p[1], totalSeconds: 1 },
    measured: m && { prefillTps: m[0], decodeTps: m[1], totalSeconds: 1 },
    calibrated: { prefillTps: p[0] * 0.9, decodeTps: p[1] * 0.9, totalSeconds: 1 },
  });
  return {
    key: "k", measuredAt: "2026-01-01T00:00:00Z",
    model: { path: "/m/moe<&>.gguf", architecture: "qwen3moe", quantization: "Q8_0", bytes: 1 },
    hardware: { name: "h200-12gib-free", source: "bench" },
    workload: { objective: "chat", promptTokens: 512, generatedTokens: 512 },
    predictedChoice: "ncmoe-34", chosen: "ncmoe-35",
    settings: {} as AutotuneEntry["settings"],
    rows: [row("ncmoe-34", [1163, 36], [521, 36.3]), row("ncmoe-35", [1100, 35], [610, 40.8]), row("zero-copy", [1117, 31.9], null)],
  };
}

test("chart: SVG names every candidate and value; PNG is a valid image", () => {
  const svg = autotuneChartSvg(entry());
  for (const s of ["ncmoe-34", "ncmoe-35 (chosen)", "zero-copy", "predicted", "measured", "calibrated", "521", "40.8", "moe&lt;&amp;&gt;.gguf"]) {
    assertStringIncludes(svg, s);
  }
  const png = renderPng(svg);
  assertEquals([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], "PNG signature");
  const dv = new DataView(png.buffer, png.byteOffset);
  assertEquals(new TextDecoder().decode(png.subarray(12, 16)), "IHDR");
  const width = dv.getUint32(16);
  const height = dv.getUint32(20);
  assertMatch(svg, new RegExp(`width="${width / 2}" height="${height / 2}"`), "rendered at 2x the SVG size");
  assertGreater(png.length, 5000, "not an empty image");
});

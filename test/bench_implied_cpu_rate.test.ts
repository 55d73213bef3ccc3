// Issue 22: bench/harness/implied_cpu_rate.ts, the CPU rate at which the cost model predicts a stock
// row's measured decode, beside the machine's probe (docs/planner.md, "Known limit: the CPU rate").
import { test } from "node:test";
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { HardwareProfile } from "../core/types.ts";
import { BASE_PROFILE_FILE, impliedCpuRates, impliedCpuRateTable } from "../bench/harness/implied_cpu_rate.ts";
import { modelInfoFromShape } from "../engine/planner/from_shape.ts";
import { evaluate } from "../engine/planner/candidates.ts";
import { planContext } from "../engine/planner/plan.ts";
import { assert, assertAlmostEquals, assertEquals, assertThrows } from "./_assert.ts";
import { withTempDir } from "./_tmp.ts";

const base = JSON.parse(readFileSync(BASE_PROFILE_FILE, "utf8")).profile as HardwareProfile;

test("implied CPU rate: the launch run's 30B stock row implies its probe's rate; the t15 run's, a quarter less", () => {
  const launch = impliedCpuRates("bench/results/2026-12-07-hybrid-launch", base).find((r) => r.shape === "qwen3moe-30b-a3b")!;
  assertEquals([launch.id, launch.cpuMoeLayers, launch.ubatch, launch.probe], ["stock-pinned", 36, 2048, "concurrent"]);
  assertAlmostEquals(launch.probeGBps!, 123.1, 0.1);
  assertAlmostEquals(launch.impliedGBps / launch.probeGBps!, 1.0, 0.03);
  const t15 = impliedCpuRates("bench/results/2026-12-07-hybrid-t15", base).filter((r) => r.shape === "qwen3moe-30b-a3b");
  assertEquals(t15.map((r) => r.id).sort(), ["stock-pinned", "stock-pinned-call1"]);
  for (const r of t15) assert(r.impliedGBps / r.probeGBps! < 0.8, `${r.id}: ${r.impliedGBps} of ${r.probeGBps}`);
});

test("implied CPU rate: the model predicts the row's decode at the implied rate, and rows at other threads, with -ot or patched switches are left out", () => {
  const rows = impliedCpuRates("bench/results/2026-12-07-hybrid-t15", base);
  // that run's rows: hybrid (patched env), -t 15 stock, -ot fit placements, mmap: none may appear
  assert(rows.every((r) => r.id.startsWith("stock-pinned") && !r.id.includes("t15")), rows.map((r) => r.id).join(", "));
  const r = rows.find((x) => x.id === "stock-pinned-call1")!;
  const hw: HardwareProfile = structuredClone(base);
  hw.host.ramGBps = r.impliedGBps;
  hw.gpu!.freeVramBytes = hw.gpu!.vramBytes;
  hw.gpu!.vramGBps = 3350; // the H100's spec-sheet rate, as the tool takes it
  const model = modelInfoFromShape("qwen3moe-30b-a3b", "Q8_0");
  hw.host.availableRamBytes = 2 * model.tensorBytes;
  const ctx = planContext(model, hw, {
    runtime: { name: "llama.cpp" }, context: 4096 + 128, batch: 2048, threads: 16,
    workload: { objective: "custom", promptTokens: 4096, generatedTokens: 128 },
    placement: { auto: true, kv: "auto", experts: "auto", cpuLayers: [] },
  }, { routing: { reach: 0.45 } });
  const predicted = evaluate(ctx, { kind: "experts_cpu", cpuMoeLayers: 36, loadMode: "none", ubatch: 2048 }).prediction.decodeTps;
  assertAlmostEquals(predicted, r.decodeTps, 0.01);
});

test("implied CPU rate: tiers.json gives the tuned and plain loops; no probe file gives nulls; a bad probe file is named", () => withTempDir("implied-", (dir) => {
  const all3 = impliedCpuRates("bench/results/2026-11-22-h200-all-3", base);
  assert(all3.length >= 2);
  assertEquals(all3[0]!.probe, "tiers");
  assertAlmostEquals(all3[0]!.probeGBps!, 92.654, 0.01);
  assertAlmostEquals(all3[0]!.probeSimpleGBps!, 84.157, 0.01);
  copyFileSync("bench/results/2026-12-07-hybrid-t15/results.json", join(dir, "results.json"));
  const bare = impliedCpuRates(dir, base);
  assert(bare.length > 0 && bare.every((r) => r.probe === null && r.probeGBps === null));
  assert(impliedCpuRateTable(bare).includes("| - | - | - |"));
  writeFileSync(join(dir, "concurrent.json"), JSON.stringify({ cpuAloneGBps: { median: -1 } }));
  assertThrows(() => impliedCpuRates(dir, base), Error, join(dir, "concurrent.json"));
  writeFileSync(join(dir, "tiers.json"), "{");
  assertThrows(() => impliedCpuRates(dir, base), Error, `${join(dir, "tiers.json")}: not JSON`);
  writeFileSync(join(dir, "tiers.json"), "{}");
  assertThrows(() => impliedCpuRates(dir, base), Error, `${join(dir, "tiers.json")}: no profile.host`);
}));

test("implied CPU rate: the plain loop comes from cpu_bw.txt beside concurrent.json; a bad line is named with its number", () => withTempDir("implied-", (dir) => {
  const ub = impliedCpuRates("bench/results/2026-12-07-hybrid-ub", base);
  assertEquals(ub.map((r) => [r.id, r.probe]), [["stock-pinned", "concurrent"]]);
  assertAlmostEquals(ub[0]!.probeSimpleGBps!, 83.35, 0.01); // median of the simple line, not the tuned one
  copyFileSync("bench/results/2026-12-07-hybrid-ub/results.json", join(dir, "results.json"));
  writeFileSync(join(dir, "cpu_bw.txt"), '{"mode":"simple","bytes":4096,"gbps":[80,90]}\nnot json\n');
  assertThrows(() => impliedCpuRates(dir, base), Error, `${join(dir, "cpu_bw.txt")}:2`);
  writeFileSync(join(dir, "cpu_bw.txt"), '{"mode":"simple","bytes":4096,"gbps":[80,90]}\n{"mode":"tuned","bytes":4096,"gbps":[120]}\n');
  assertEquals(impliedCpuRates(dir, base)[0]!.probeSimpleGBps, 85);
}));

test("implied CPU rate: cpu_ram.json (the harness's concurrent command) gives the plain loop before cpu_bw.txt; a bad one is named", () => withTempDir("implied-", (dir) => {
  copyFileSync("bench/results/2026-12-07-hybrid-ub/results.json", join(dir, "results.json"));
  writeFileSync(join(dir, "cpu_bw.txt"), '{"mode":"simple","bytes":4096,"gbps":[80]}\n');
  writeFileSync(join(dir, "cpu_ram.json"), JSON.stringify({ ramGBps: { min: 100, median: 101, max: 102 }, simpleGBps: { min: 82, median: 83, max: 84 }, threads: 16, bytes: 1 }));
  assertEquals(impliedCpuRates(dir, base)[0]!.probeSimpleGBps, 83);
  writeFileSync(join(dir, "cpu_ram.json"), JSON.stringify({ simpleGBps: { median: "fast" } }));
  assertThrows(() => impliedCpuRates(dir, base), Error, `${join(dir, "cpu_ram.json")}: simpleGBps.median`);
}));

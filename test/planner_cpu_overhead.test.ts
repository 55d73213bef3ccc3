// CPU fixed costs and their calibration (issue 14 item 3): on a machine without GPU the cost model
// has per-pass, per-block and thread-synchronisation costs and CPU matmul throughput (not only
// bandwidth), so a small model is overhead bound; measured runs record how much those fixed costs
// must be scaled on this machine (keyed by machine, runtime and threads) and later plans use that.
import { test } from "node:test";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assert, assertAlmostEquals, assertEquals, assertGreater, assertLess, assertMatch } from "./_assert.ts";
import type { HardwareProfile } from "../core/types.ts";
import { modelInfoFromShape } from "../engine/planner/from_shape.ts";
import { plan, type PlanRecipe } from "../engine/planner/plan.ts";
import { DEFAULT_CONSTANTS } from "../engine/planner/cost.ts";
import { calibratedConstants, calibrationScales, fitScale, recordRun } from "../engine/planner/calibration.ts";

/** This machine's kind: 2 cores, no GPU, the probe's assumed figures. */
const twoCores: HardwareProfile = {
  name: "probe", source: "probe", gpu: null,
  host: { ramBytes: 24 * 2 ** 30, availableRamBytes: 23 * 2 ** 30, ramGBps: 12, cpuCores: 2, cpuGflops: 200 },
  disk: { readGBps: 2 },
};

function recipe(over: Partial<PlanRecipe> = {}): PlanRecipe {
  return {
    runtime: { name: "node-llama-cpp" }, context: 256, batch: 256, ubatch: 256,
    workload: { objective: "custom", promptTokens: 16, generatedTokens: 16 },
    placement: { auto: true, kv: "auto", experts: "auto", cpuLayers: [] }, ...over,
  };
}

const tiny = (layers: number) => {
  const m = modelInfoFromShape("tiny-moe", "q8_0");
  if (layers === 2) return m;
  // The same blocks repeated: what scales with the block count is visible.
  const extra = m.tensors.filter((t) => t.layer === 1);
  for (let l = 2; l < layers; l++) m.tensors.push(...extra.map((t) => ({ ...t, name: t.name.replace("blk.1.", `blk.${l}.`), layer: l })));
  return { ...m, layerCount: layers };
};

test("tiny model on 2 cores, 1 thread: overhead bound (~0.55 ms per token, ~0.6 ms per 16-token prompt), not 1000 t/s", () => {
  const p = plan(tiny(2), twoCores, recipe({ threads: 1 }));
  // Was 992 t/s decode and 15580 t/s prefill with 2 threads against 91 and 2269 measured (issue 14).
  const msPerToken = 1000 / p.predicted.decodeTps;
  assertGreater(msPerToken, 0.3);
  assertLess(msPerToken, 0.7);
  const promptMs = (16 / p.predicted.prefillTps) * 1000;
  assertGreater(promptMs, 0.4);
  assertLess(promptMs, 1.5);
});

test("fixed costs scale with blocks, and each extra thread adds synchronisation a tiny model cannot pay back", () => {
  const d = (layers: number, threads: number, scale = 1) =>
    1 / plan(tiny(layers), twoCores, recipe({ threads }), { constants: { ...DEFAULT_CONSTANTS, overheadScale: { decode: scale, prefill: scale } } }).predicted.decodeTps;
  // The fixed part of a token: the prediction minus the same prediction without fixed costs.
  const fixedMs = (layers: number, threads: number) => (d(layers, threads) - d(layers, threads, 0)) * 1000;
  const k = DEFAULT_CONSTANTS;
  assertAlmostEquals(fixedMs(2, 1), k.cpuTokenOverheadMs + 2 * k.cpuLayerOverheadMs, 0.01);
  // Per block per token: cpuLayerOverheadMs, plus a barrier per op for each extra thread and a wake-up.
  assertAlmostEquals(fixedMs(32, 1) - fixedMs(2, 1), 30 * k.cpuLayerOverheadMs, 0.02);
  assertAlmostEquals(fixedMs(32, 2) - fixedMs(2, 2), 30 * (k.cpuLayerOverheadMs + k.cpuThreadSyncMs), 0.03);
  assertAlmostEquals(fixedMs(2, 2) - fixedMs(2, 1), k.cpuThreadWakeMs + 2 * k.cpuThreadSyncMs, 0.01);
  // So the tiny model is predicted several times faster on one thread than on two.
  assertGreater(d(2, 2), 3 * d(2, 1));
});

test("CPU prefill of a large model is compute bound and scales with threads (matmul throughput, not only bandwidth)", () => {
  const m = modelInfoFromShape("llama-3.1-8b", "q8_0");
  const pre = (threads: number) => plan(m, twoCores, recipe({ threads, context: 4096, batch: 512, ubatch: 512, workload: { objective: "custom", promptTokens: 512, generatedTokens: 16 } })).predicted.prefillTps;
  // ~16 GFLOP per token at 2 x 100 GFLOP/s x 0.65 x width efficiency: ~8 t/s with both cores.
  assertGreater(pre(2), 5);
  assertLess(pre(2), 12);
  assertAlmostEquals(pre(2) / pre(1), 2, 0.1);
  // Decode of 8.5 GB per token at 12 GB/s stays bandwidth bound: ~1.4 t/s.
  const dec = plan(m, twoCores, recipe({ threads: 2, context: 4096 })).predicted.decodeTps;
  assertGreater(dec, 1);
  assertLess(dec, 1.6);
});

test("fitScale: the fixed-cost scale that reproduces a measurement, bytes-and-FLOPs left alone", () => {
  // predicted 1 ms = 0.2 ms work + 0.8 ms overhead; measured 2.2 ms -> overhead x2.5.
  assertAlmostEquals(fitScale(2.2e-3, 1e-3, 0.2e-3, 1), 2.5, 1e-9);
  // A prediction already made at x2 that is right stays at x2.
  assertAlmostEquals(fitScale(1e-3, 1e-3, 0.2e-3, 2), 2, 1e-9);
  // Absurd measurements are clamped.
  assertEquals(fitScale(1e3, 1e-3, 0, 1), 50);
});

test("recordRun: records per machine, runtime and threads; later plans use the median; the file is private", () => {
  const dir = mkdtempSync(join(tmpdir(), "spillway-cal-"));
  try {
    const path = join(dir, "calibration.json");
    const model = tiny(2);
    const r = recipe({ threads: 1 });
    const p0 = plan(model, twoCores, r);
    const measured = { decodeTps: p0.predicted.decodeTps / 2, prefillTps: p0.predicted.prefillTps / 3 };
    const { record, lines } = recordRun({ recipe: r, model, hardware: twoCores, plan: p0 }, measured, { path });
    assertMatch(lines[0]!, /^check {5}decode predicted \d+ t\/s, measured \d+ t\/s \(\+100%\); prefill predicted \d+ t\/s, measured \d+ t\/s \(\+200%\)$/);
    assertMatch(lines[1]!, /calibrated fixed costs for node-llama-cpp with 1 thread on this machine: decode x\d/);
    assert(record);
    assertEquals((statSync(path).mode & 0o777).toString(8), "600");
    // The calibrated plan predicts what was measured (the model is all fixed cost here).
    const cal = calibratedConstants(DEFAULT_CONSTANTS, { hardware: twoCores, runtime: "node-llama-cpp", threads: 1 }, path);
    assertMatch(cal.note!, /calibrated from 1 measured node-llama-cpp run on this machine/);
    const p1 = plan(model, twoCores, r, { constants: cal.constants });
    assertAlmostEquals(p1.predicted.decodeTps / measured.decodeTps, 1, 0.03);
    assertAlmostEquals(p1.predicted.prefillTps / measured.prefillTps, 1, 0.05);
    // Other threads or runtimes are not calibrated by it.
    assertEquals(calibrationScales({ hardware: twoCores, runtime: "node-llama-cpp", threads: 2 }, path), null);
    assertEquals(calibrationScales({ hardware: twoCores, runtime: "llama.cpp", threads: 1 }, path), null);
    // A second run made with the calibrated constants converges on the measurements' median.
    recordRun({ recipe: r, model, hardware: twoCores, plan: p1, constants: cal.constants }, { decodeTps: measured.decodeTps, prefillTps: measured.prefillTps }, { path });
    assertEquals(calibrationScales({ hardware: twoCores, runtime: "node-llama-cpp", threads: 1 }, path)!.runs, 2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

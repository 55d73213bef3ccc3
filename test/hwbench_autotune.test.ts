// autotune: which candidates get trials, the measured best for the workload wins, the outcome is
// cached and reused, and calibration fits the cost model to measurements.
import { test } from "node:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { autotune, autotunedConstants, pickMeasuredBest, selectTrialCandidates, workloadSeconds } from "../engine/autotune/autotune.ts";
import { fitConstants } from "../engine/autotune/calibrate.ts";
import { modelInfoFromShape } from "../engine/planner/from_shape.ts";
import { getProfile } from "../engine/hardware/profiles.ts";
import { plan as makePlan, type PlanRecipe } from "../engine/planner/plan.ts";
import { DEFAULT_CONSTANTS } from "../engine/planner/cost.ts";
import type { AutotuneRow } from "../engine/autotune/outcome_cache.ts";
import type { Candidate, Plan } from "../core/types.ts";
import { PlanError } from "../core/errors.ts";
import { assert, assertAlmostEquals, assertEquals, assertLess, assertNotEquals, assertRejects } from "./_assert.ts";

const recipe: PlanRecipe & { runtime: { name: "llama.cpp"; binary: string } } = {
  runtime: { name: "llama.cpp", binary: "/opt/llama/bin/llama-server" },
  context: 4096,
  batch: 2048,
  workload: { objective: "chat", promptTokens: 512, generatedTokens: 256 },
  placement: { auto: true, kv: "auto", experts: "auto", cpuLayers: [] },
};
const model = modelInfoFromShape("qwen3moe-30b-a3b", "q8_0", "/models/moe.gguf");
const hardware = getProfile("h200-12gib-free")!;
const basePlan = makePlan(model, hardware, recipe);

function flag(argv: string[], f: string): string | undefined {
  const i = argv.indexOf(f);
  return i >= 0 ? argv[i + 1] : undefined;
}
/** The plan candidate a llama-bench argv describes. */
function candidateOf(p: Plan, argv: string[]): Candidate {
  const c = p.candidates.find((c) =>
    String(c.settings.gpuLayers) === flag(argv, "-ngl") && String(c.settings.cpuMoeLayers) === flag(argv, "-ncmoe") &&
    String(c.settings.ubatch) === flag(argv, "-ub") && c.settings.loadMode === flag(argv, "-lm") &&
    (c.settings.kvOnHost ? "1" : "0") === flag(argv, "-nkvo")
  );
  if (!c) throw new Error(`no candidate for ${argv.join(" ")}`);
  return c;
}

test("trial candidates: fitting only, best of each strategy first, then by prediction", () => {
  const picked = selectTrialCandidates(basePlan, 4);
  assertEquals(picked.length, 4);
  assert(picked.every((c) => c.fits));
  const strategies = new Set(picked.map((c) => c.strategy));
  const available = new Set(basePlan.candidates.filter((c) => c.fits).map((c) => c.strategy));
  assertEquals(strategies.size, Math.min(4, available.size), "one per strategy before any second of a strategy");
  assertEquals(picked[0].id, basePlan.chosen, "the predicted best is always tried");
  for (let i = 1; i < picked.length; i++) assert(picked[i - 1].predicted.totalSeconds <= picked[i].predicted.totalSeconds);
  const all = selectTrialCandidates(basePlan, 100);
  assertEquals(all.length, basePlan.candidates.filter((c) => c.fits).length);
});

test("measured best is the shortest request for the workload; failed trials are skipped", () => {
  const w = { promptTokens: 4096, generatedTokens: 128 };
  // Prefill-heavy: 4096/6000 + 128/39 = 3.97 s beats 4096/600 + 128/41 = 9.95 s despite slower decode.
  assertAlmostEquals(workloadSeconds(w, { prefillTps: 6000, decodeTps: 39 }), 3.965, 1e-3);
  const row = (id: string, tps: [number, number] | null): AutotuneRow => ({
    id, label: id, strategy: "experts_cpu", predicted: { prefillTps: 1, decodeTps: 1, totalSeconds: 1 }, argv: [], env: {},
    measured: tps ? { prefillTps: tps[0], decodeTps: tps[1], totalSeconds: workloadSeconds(w, { prefillTps: tps[0], decodeTps: tps[1] }) } : null,
  });
  assertEquals(pickMeasuredBest([row("mmap", [600, 41]), row("pinned", [6000, 39]), row("broken", null)])!.id, "pinned");
  assertEquals(pickMeasuredBest([row("broken", null)]), null);
});

test("autotune chooses the measured best, reports both, caches, and starts from the cache", async () => {
  const dir = mkdtempSync(join(tmpdir(), "hwbench-autotune-"));
  try {
    const cacheFile = join(dir, "autotune.json");
    const picked = selectTrialCandidates(basePlan, 3);
    // The "machine": the predicted second-best is really 30% faster at decode than predicted; the rest 20% slower.
    const winner = picked[1];
    const calls: string[][] = [];
    const runTrial = (argv: string[]) => {
      calls.push(argv);
      const c = candidateOf(basePlan, argv);
      const f = c.id === winner.id ? 1.3 : 0.8;
      return Promise.resolve({ prefillTps: c.predicted.prefillTps * f, decodeTps: c.predicted.decodeTps * f, wallSeconds: 2 });
    };
    const err: string[] = [];
    const r = await autotune(basePlan, recipe, { top: 3, trialSeconds: 4, cacheFile, runTrial, outDir: join(dir, "out"), stderr: (t) => err.push(t) });
    assertEquals(calls.length, 3);
    assertEquals(calls[0][0], "/opt/llama/bin/llama-bench", "llama-bench next to the recipe's binary");
    assertEquals(flag(calls[0], "-o"), "json");
    assertEquals(r.fromCache, false);
    assertEquals(r.entry.predictedChoice, basePlan.chosen);
    assertEquals(r.entry.chosen, winner.id);
    assertEquals(r.plan.chosen, winner.id);
    assertEquals(r.plan.settings, winner.settings);
    assertEquals(Object.keys(r.plan.measured!).length, 3);
    assertAlmostEquals(r.plan.measured![winner.id].decodeTps, winner.predicted.decodeTps * 1.3, 0.01 * winner.predicted.decodeTps);
    assert(r.plan.reason.startsWith("Autotuned"), r.plan.reason);
    assert(r.plan.reason.includes(`had predicted ${basePlan.chosen}`));
    assert(r.files.some((f) => f.endsWith("autotune.png")) && r.files.some((f) => f.endsWith("autotune.md")));
    assertEquals(r.entry.calibration, undefined, "no model/hardware given: no calibration");
    // Next run: from the cache, no trials.
    const again = await autotune(basePlan, recipe, { cacheFile, runTrial, stderr: (t) => err.push(t) });
    assertEquals(again.fromCache, true);
    assertEquals(calls.length, 3);
    assertEquals(again.plan.chosen, winner.id);
    // --force trials again.
    await autotune(basePlan, recipe, { top: 3, cacheFile, runTrial, force: true, stderr: () => {} });
    assertEquals(calls.length, 6);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("autotune: every trial failing is a PlanError listing why; other runtimes are refused", async () => {
  const fail = () => Promise.reject(new Error("CUDA error: out of memory"));
  const e = await assertRejects(() => autotune(basePlan, recipe, { top: 2, cacheFile: null, runTrial: fail, stderr: () => {} }), PlanError, "every trial failed");
  assert(e.message.includes("out of memory"));
  await assertRejects(() => autotune({ ...basePlan, runtime: "vllm" }, recipe, { cacheFile: null }), PlanError, "needs runtime llama.cpp");
});

test("calibration: constants fitted to trials recover the machine's speeds", async () => {
  // The "machine" behaves like the cost model with other constants: the fit must get close to it.
  const truth = { ...DEFAULT_CONSTANTS, vramEfficiency: 0.55, zeroCopyEfficiency: 0.6, gpuPrefillEfficiency: 0.12, cpuEfficiency: 0.65 };
  const truthPlan = makePlan(model, hardware, recipe, { constants: truth });
  const runTrial = (argv: string[]) => {
    const c = truthPlan.candidates.find((t) => t.id === candidateOf(basePlan, argv).id)!;
    return Promise.resolve({ prefillTps: c.predicted.prefillTps, decodeTps: c.predicted.decodeTps, wallSeconds: 1 });
  };
  const dir = mkdtempSync(join(tmpdir(), "hwbench-cal-"));
  const cacheFile = join(dir, "autotune.json");
  const r = await autotune(basePlan, recipe, { top: 4, cacheFile, runTrial, model, hardware, stderr: () => {} });
  const cal = r.entry.calibration!;
  // Stored for the next plans on this hardware.
  const k = autotunedConstants(hardware.name, DEFAULT_CONSTANTS, cacheFile)!;
  assertEquals(k.vramEfficiency, cal.constants.vramEfficiency);
  assertEquals(k.opOffloadMinBatch, DEFAULT_CONSTANTS.opOffloadMinBatch);
  assertEquals(autotunedConstants("other-machine", DEFAULT_CONSTANTS, cacheFile), null);
  rmSync(dir, { recursive: true, force: true });
  assertLess(cal.lossAfter, cal.lossBefore * 0.25, `loss ${cal.lossBefore} -> ${cal.lossAfter}`);
  for (const row of r.entry.rows) {
    const m = row.measured!;
    const before = Math.abs(Math.log(row.predicted.decodeTps / m.decodeTps)) + Math.abs(Math.log(row.predicted.prefillTps / m.prefillTps));
    const after = Math.abs(Math.log(row.calibrated!.decodeTps / m.decodeTps)) + Math.abs(Math.log(row.calibrated!.prefillTps / m.prefillTps));
    assert(after <= before + 0.02, `${row.id}: error ${before.toFixed(3)} -> ${after.toFixed(3)}`);
    assert(row.heldOut !== undefined, "leave-one-out prediction present");
  }
  assertNotEquals(Object.keys(cal.changed).length, 0);
});

test("fitConstants: exact recovery of a one-parameter model, bounds respected, other fields kept", () => {
  const start = { a: 1, b: 2, label: "x" };
  const predict = (k: typeof start) => new Map([["c1", { prefillTps: 100 * k.a, decodeTps: 10 * k.a }], ["c2", { prefillTps: 50 * k.a, decodeTps: 5 }]]);
  const measured = { c1: { prefillTps: 150, decodeTps: 15 }, c2: { prefillTps: 75, decodeTps: 5 } };
  const f = fitConstants(start, ["a", "b"], measured, predict, { regularization: 0 });
  assertAlmostEquals(f.constants.a, 1.5, 0.02);
  assertEquals(f.constants.b, 2, "b does not affect predictions: stays");
  assertEquals(f.constants.label, "x");
  assertLess(f.lossAfter, 1e-3);
  const capped = fitConstants(start, ["a"], measured, predict, { upper: { a: 1.2 }, regularization: 0 });
  assertAlmostEquals(capped.constants.a, 1.2, 1e-9);
});

test("autotune: a hybrid candidate's trial runs the patched llama-bench with the hybrid switches (as a launch does), or is not tried when that build is missing", async () => {
  // The reference machine with the concurrent probe's figures (shared/gpu/NOTES.md): the plan weighs hybrid.
  const m = (median: number) => ({ min: median, median, max: median, unit: "GB/s" });
  const hw = { ...hardware, measured: { ...(hardware.measured ?? {}), concurrentCpuAloneGBps: m(84.5), concurrentGpuAloneGBps: m(51.4), concurrentCpuGBps: m(78.2), concurrentGpuGBps: m(51.05) } };
  const stockRecipe = { ...recipe, runtime: { name: "llama.cpp" as const } };
  const p = makePlan(model, hw, stockRecipe);
  const hybrid = selectTrialCandidates(p, 4).find((c) => c.strategy === "hybrid");
  assert(hybrid, `no hybrid candidate among the trials of ${p.candidates.map((c) => c.id).join(", ")}`);
  const calls: { argv: string[]; env: Record<string, string> }[] = [];
  const runTrial = (argv: string[], env: Record<string, string>) => {
    calls.push({ argv, env });
    return Promise.resolve({ prefillTps: 1000, decodeTps: 40, wallSeconds: 2 });
  };
  const r = await autotune(p, stockRecipe, { top: 4, cacheFile: null, runTrial, hybridLlamaBench: "/opt/patched/llama-bench", stderr: () => {} });
  const h = calls.find((c) => c.argv[0] === "/opt/patched/llama-bench");
  assert(h, `no trial ran the patched llama-bench: ${calls.map((c) => c.argv[0]).join(", ")}`);
  assertEquals(h.env.LLAMA_MOE_HYBRID_GPU_FRACTION, String(hybrid.settings.hybridGpuFraction));
  assertEquals(flag(h.argv, "-t"), String(hybrid.settings.threads));
  for (const c of calls.filter((c) => c !== h)) {
    assertEquals([c.argv[0], c.env.LLAMA_MOE_HYBRID_GPU_FRACTION], ["llama-bench", undefined]);
  }
  assertEquals(r.entry.rows.find((x) => x.id === hybrid.id)!.env.LLAMA_MOE_HYBRID_GPU_FRACTION, String(hybrid.settings.hybridGpuFraction));
  // No patched build: the hybrid candidate gets no trial (a stock llama-bench would measure stock
  // under its name); its row says how to build, and the other trials still choose.
  calls.length = 0;
  const none = await autotune(p, stockRecipe, { top: 4, cacheFile: null, runTrial, hybridLlamaBench: null, stderr: () => {} });
  assertEquals(calls.some((c) => "LLAMA_MOE_HYBRID_GPU_FRACTION" in c.env), false);
  const row = none.entry.rows.find((x) => x.id === hybrid.id)!;
  assertEquals(row.measured, null);
  assert(row.error?.includes("patched llama-bench is not built") && row.error.includes("build.sh"), row.error);
  assertNotEquals(none.entry.chosen, hybrid.id);
  // A recipe naming its binary: the llama-bench beside it, as `spillway run` launches that binary.
  calls.length = 0;
  await autotune(p, recipe, { top: 4, cacheFile: null, runTrial, stderr: () => {} });
  assertEquals(calls.find((c) => "LLAMA_MOE_HYBRID_GPU_FRACTION" in c.env)!.argv[0], "/opt/llama/bin/llama-bench");
  calls.length = 0;
  await autotune(p, { ...recipe, runtime: { name: "llama.cpp", binary: "llama-server" } }, { top: 4, cacheFile: null, runTrial, stderr: () => {} });
  assertEquals(calls.find((c) => "LLAMA_MOE_HYBRID_GPU_FRACTION" in c.env)!.argv[0], "llama-bench");
  // A llama-bench given for the trials (the bench harness gives its patched build's): every trial runs it.
  calls.length = 0;
  await autotune(p, stockRecipe, { top: 4, cacheFile: null, runTrial, llamaBench: "/work/patched/llama-bench", stderr: () => {} });
  assertEquals(new Set(calls.map((c) => c.argv[0])), new Set(["/work/patched/llama-bench"]));
  assert(calls.some((c) => "LLAMA_MOE_HYBRID_GPU_FRACTION" in c.env));
});

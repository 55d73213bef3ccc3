// Issue 22, "repacked CPU weights" (the first explanation; Q8_0 experts on x86 are not repacked, see
// docs/planner.md): with a GPU, llama.cpp's CPU part of decode is measured faster with mmap'd weights
// than with pinned host buffers (-lm none) (bench/results/2026-11-22-h200-all-3: llama.cpp's default,
// mmap, 41.23 t/s against 37.20-37.99 for -lm none), while pinned weights prefill ~5x faster
// (per-micro-batch copies from pinned memory). The cost model's `cpuRepackSpeedup` and the planner's
// per-workload choice (engine/planner/cost.ts, candidates.ts loadModeTradeSentence).
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { assert, assertAlmostEquals, assertEquals, assertGreater, assertNotMatch, assertStringIncludes } from "./_assert.ts";
import type { HardwareProfile } from "../core/types.ts";
import { getProfile } from "../engine/hardware/profiles.ts";
import { type CandidateSpec, evaluate, layoutFor } from "../engine/planner/candidates.ts";
import { DEFAULT_CONSTANTS, predict } from "../engine/planner/cost.ts";
import { modelInfoFromShape } from "../engine/planner/from_shape.ts";
import { plan, planContext, type PlanRecipe } from "../engine/planner/plan.ts";
import type { RecipeRuntimeName } from "../engine/recipe/types.ts";

const GiB = 2 ** 30;
const model = modelInfoFromShape("qwen3-30b-a3b", "q8_0", "qwen3moe-30b-a3b-q8_0.gguf");
const FACTOR = DEFAULT_CONSTANTS.cpuRepackSpeedup;

function recipe(promptTokens: number, generatedTokens: number, runtime: RecipeRuntimeName = "llama.cpp"): PlanRecipe {
  return {
    runtime: { name: runtime },
    context: Math.max(4352, promptTokens + generatedTokens),
    batch: 2048,
    threads: 16,
    workload: { objective: "custom", promptTokens, generatedTokens },
    placement: { auto: true, kv: "auto", experts: "auto", cpuLayers: [] },
  };
}

/** The profile the 2026-11-22 H200 runs measured (tiers.json), 12 GiB free: the machine of the measurement. */
function benchProfile(): HardwareProfile {
  const hw = JSON.parse(readFileSync(new URL("../bench/results/2026-11-22-h200-planned/tiers.json", import.meta.url), "utf8")).profile as HardwareProfile;
  hw.gpu!.freeVramBytes = 12 * GiB;
  hw.host.availableRamBytes = 120 * GiB;
  return hw;
}

/** The reference machine's profile with an ARM host CPU (a Grace-Hopper-like box). */
function armProfile(): HardwareProfile {
  const hw = getProfile("h200-12gib-free")!;
  hw.host.cpuName = "NVIDIA Grace (Neoverse-V2), 72 cores";
  return hw;
}

const experts = (cpuMoeLayers: number, loadMode: "mmap" | "none", ubatch = 2048): CandidateSpec => ({ kind: "experts_cpu", cpuMoeLayers, loadMode, ubatch });

/** Pinned CPU-part seconds per token over mmap's, and the rest of the token time of both. */
function cpuPartRatio(hw: HardwareProfile, runtime: RecipeRuntimeName, mmapSpec: CandidateSpec, noneSpec: CandidateSpec): { ratio: number; restMmap: number; restNone: number } {
  const ctx = planContext(model, hw, recipe(4096, 64, runtime), { routing: { reach: 0.45 } });
  const m = evaluate(ctx, mmapSpec).prediction;
  const n = evaluate(ctx, noneSpec).prediction;
  return { ratio: n.decode.host_cpu / m.decode.host_cpu, restMmap: 1 / m.decodeTps - m.decode.host_cpu, restNone: 1 / n.decodeTps - n.decode.host_cpu };
}

test("repack_decode_factor: at the same placement an mmap experts-on-CPU candidate decodes faster than the pinned one by the factor (CPU part only)", () => {
  assert(FACTOR >= 1.05 && FACTOR <= 1.15, `cpuRepackSpeedup ${FACTOR}`);
  const hw = benchProfile();
  const ctx = planContext(model, hw, recipe(4096, 64), { routing: { reach: 0.45 } });
  for (const n of [34, 35, 36]) {
    const m = evaluate(ctx, experts(n, "mmap"));
    const p = evaluate(ctx, experts(n, "none"));
    // The CPU part is divided by the factor; the GPU part, KV and overheads are the same.
    assertAlmostEquals(p.prediction.decode.host_cpu / m.prediction.decode.host_cpu, FACTOR, 1e-6);
    for (const k of ["vram", "host_mapped", "stream", "kv", "overhead"] as const) assertEquals(m.prediction.decode[k], p.prediction.decode[k], k);
    assertGreater(m.prediction.decodeTps, p.prediction.decodeTps * 1.03);
    // Prefill is the other way round: pinned copies per micro-batch are several times faster.
    assertGreater(p.prediction.prefillTps, m.prediction.prefillTps * 3);
  }
  // The measured case: llama.cpp's default (experts of 34 blocks, mmap, ub 512) decoded 41.23 t/s,
  // spillway's -ncmoe 35 -lm none -ub 2048 37.99: 1.085x. The model now predicts about that ratio.
  const dflt = evaluate(ctx, experts(34, "mmap", 512)).prediction.decodeTps;
  const pinned = evaluate(ctx, experts(35, "none", 2048)).prediction.decodeTps;
  const ratio = dflt / pinned;
  assert(ratio > 1.06 && ratio < 1.11, `predicted mmap-34 / pinned-35 decode ${ratio.toFixed(3)} (measured 41.23 / 37.99 = 1.085)`);
});

test("repack_per_workload: decode-heavy picks mmap'd (repacked) CPU weights, prefill-heavy pinned ones, and the reason names the trade", () => {
  for (const hw of [getProfile("h200-12gib-free")!, benchProfile()]) {
    const decodeHeavy = plan(model, hw, recipe(128, 4096));
    const dc = decodeHeavy.candidates.find((c) => c.id === decodeHeavy.chosen)!;
    assertEquals([dc.strategy, dc.settings.loadMode], ["experts_cpu", "mmap"], `${hw.name}: ${decodeHeavy.chosen}`);
    assertStringIncludes(decodeHeavy.reason, "mmap'd CPU weights: decode");
    assertStringIncludes(decodeHeavy.reason, "pinned ones would prefill");

    const prefillHeavy = plan(model, hw, recipe(4096, 128));
    const pc = prefillHeavy.candidates.find((c) => c.id === prefillHeavy.chosen)!;
    assertEquals([pc.strategy, pc.settings.loadMode], ["experts_cpu", "none"], `${hw.name}: ${prefillHeavy.chosen}`);
    assertStringIncludes(prefillHeavy.reason, "Pinned CPU weights: prefill");
    assertStringIncludes(prefillHeavy.reason, "mmap'd ones would decode");
  }
});

test("repack_only_where_repacked: no factor on an ARM host, without a GPU, or for a runtime that does not repack", () => {
  // Control: the x86 reference machine with llama.cpp and node-llama-cpp gets it.
  for (const rt of ["llama.cpp", "node-llama-cpp"] as const) {
    assertAlmostEquals(cpuPartRatio(getProfile("h200-12gib-free")!, rt, experts(35, "mmap"), experts(35, "none")).ratio, FACTOR, 1e-6, rt);
  }
  // Whole blocks on the CPU (-ngl): the same factor on the blocks' CPU weights.
  const ngl = (loadMode: "mmap" | "none"): CandidateSpec => ({ kind: "layers_cpu", gpuLayers: 16, loadMode, ubatch: 2048 });
  const layers = cpuPartRatio(getProfile("h200-12gib-free")!, "llama.cpp", ngl("mmap"), ngl("none"));
  assertAlmostEquals(layers.ratio, FACTOR, 0.005);

  // ARM host: not x86, no repack modelled.
  const arm = cpuPartRatio(armProfile(), "llama.cpp", experts(35, "mmap"), experts(35, "none"));
  assertEquals(arm.ratio, 1);
  assertEquals(arm.restMmap, arm.restNone);
  // Ollama (llama.cpp inside, not its repacking loader path as modelled here): none either.
  assertEquals(cpuPartRatio(getProfile("h200-12gib-free")!, "ollama", ngl("mmap"), ngl("none")).ratio, 1);

  // No GPU: no pinned buffers, both load modes repack (the CPU-only constants were fitted to such runs).
  const cpu = getProfile("cpu-only")!;
  const ctx = planContext(model, cpu, recipe(512, 512), {});
  const layout = layoutFor(ctx, { kind: "cpu_only", ubatch: 512 });
  const w = { objective: "custom" as const, promptTokens: 512, generatedTokens: 512 };
  const m = predict(ctx.summary, layout, cpu, { ubatch: 512, loadMode: "mmap", runtime: "llama.cpp", threads: 8 }, w);
  const n = predict(ctx.summary, layout, cpu, { ubatch: 512, loadMode: "none", runtime: "llama.cpp", threads: 8 }, w);
  assertEquals(m.decodeTps, n.decodeTps);

  // On the ARM host a decode-heavy plan has nothing to gain from mmap: pinned, and no trade sentence.
  const p = plan(model, armProfile(), recipe(128, 2048));
  assertEquals(p.candidates.find((c) => c.id === p.chosen)!.settings.loadMode, "none");
  assertNotMatch(p.reason, /repack/);
});

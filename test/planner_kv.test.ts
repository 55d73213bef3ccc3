// Issue 21: the KV cache's type (f16, q8_0, q4_0) and location decided with the weights' placement.
import { test } from "node:test";
import { assert, assertEquals, assertGreater, assertLess, assertMatch, assertNotMatch } from "./_assert.ts";
import { getProfile } from "../engine/hardware/profiles.ts";
import { modelInfoFromShape } from "../engine/planner/from_shape.ts";
import { plan, type PlanRecipe } from "../engine/planner/plan.ts";
import { allowedKvTypes, KV_QUALITY_MARGIN, kvBytesFactor, type KvType, kvTypeOf } from "../engine/planner/kv_choice.ts";
import { DEFAULT_CONSTANTS } from "../engine/planner/cost.ts";
import type { Candidate, Plan } from "../core/types.ts";

function recipe(context: number, over: Partial<PlanRecipe> = {}): PlanRecipe {
  return {
    runtime: { name: "llama.cpp" },
    context,
    batch: 2048,
    // A long prompt filling the context, as a long-context request does.
    workload: { objective: "custom", promptTokens: context - 256, generatedTokens: 256 },
    placement: { auto: true, kv: "auto", experts: "auto", cpuLayers: [] },
    ...over,
  };
}

const qwen = modelInfoFromShape("qwen3-30b-a3b", "q8_0");
const h200at12 = getProfile("h200-12gib-free")!;
const chosenOf = (p: Plan): Candidate => p.candidates.find((c) => c.id === p.chosen)!;
const f16Only = { kvCache: { types: ["f16"] as KvType[] } };

test("kv_bytes_factor: ggml block sizes (q8_0 34 B, q4_0 18 B per 32 elements)", () => {
  assertEquals(kvBytesFactor("f16"), 1);
  assertEquals(kvBytesFactor("q8_0"), 34 / 64);
  assertEquals(kvBytesFactor("q4_0"), 18 / 64);
});

test("kv_longer_context_moves_experts_to_cpu: at 12 GiB free and f16 only, each longer context keeps experts of more blocks on the CPU", () => {
  let last = -1;
  for (const ctx of [4096, 16384, 32768, 65536]) {
    const p = plan(qwen, h200at12, recipe(ctx, f16Only));
    const c = chosenOf(p);
    assertEquals(kvTypeOf(c), "f16");
    assertEquals(c.strategy, "experts_cpu", `${ctx}: ${c.id}`);
    assertGreater(c.settings.cpuMoeLayers, last, `${ctx}: ${c.id}`);
    // The KV cache in the plan grows with the context (F16: 2 bytes per element).
    assertEquals(c.placements.find((x) => x.class === "kv_cache")!.bytes, ctx * qwen.kvBytesPerToken);
    last = c.settings.cpuMoeLayers;
  }
});

test("kv_quantized_only_where_f16_does_not_fit_well: at 32k f16 KV is kept (measured: quantized attention costs more than the experts it frees), at 128k q8_0 is chosen and its saved VRAM keeps experts on the GPU", () => {
  const short = plan(qwen, h200at12, recipe(4096));
  assertEquals(kvTypeOf(chosenOf(short)), "f16", short.chosen);
  assertMatch(short.reason, /KV f16 kept: the best q8_0 placement .* under the 3% needed/);
  // bench/results/2026-12-06-context (H100, 32k): q8_0 KV at -ncmoe 37 decoded 39.57 t/s, f16 KV
  // at -ncmoe 39 46.99: the cost model now predicts f16 first there.
  const mid = plan(qwen, h200at12, recipe(32768));
  assertEquals(kvTypeOf(chosenOf(mid)), "f16", mid.chosen);
  const q8mid = plan(qwen, h200at12, recipe(32768, { kvCache: { types: ["q8_0"] } }));
  assertLess(chosenOf(q8mid).predicted.decodeTps, chosenOf(mid).predicted.decodeTps);
  const p = plan(qwen, h200at12, recipe(131072));
  const c = chosenOf(p);
  const f = chosenOf(plan(qwen, h200at12, recipe(131072, f16Only)));
  assertEquals(kvTypeOf(c), "q8_0", p.chosen);
  assertMatch(p.chosen, /\+kv-q8_0$/);
  assertEquals(c.settings.flashAttention, true);
  assertGreater(c.predicted.decodeTps, f.predicted.decodeTps);
  // The KV cache at q8_0 is 17/32 of f16's.
  assertEquals(c.placements.find((x) => x.class === "kv_cache")!.bytes, 131072 * qwen.kvBytesPerToken * (34 / 64));
  assertMatch(p.reason, /KV q8_0 \(saves [0-9.]+ GiB against f16/);
  // The choice is the cost model's: no fitting candidate is faster once quality margins are added.
  const ranked = (x: Candidate): number => x.predicted.totalSeconds * (1 + KV_QUALITY_MARGIN[kvTypeOf(x)]);
  for (const x of p.candidates.filter((y) => y.fits)) assert(ranked(c) <= ranked(x) * 1.001, `${x.id} ranks before ${c.id}`);
});

test("kv_quantized_decode_costs_per_cell: decode attention over a quantized cache in VRAM costs quantizedKvDecodeNsPerCellLayer per cached token and layer, whatever the type", () => {
  const big = getProfile("h200-12gib-free")!;
  const hw = { ...big, gpu: { ...big.gpu!, freeVramBytes: 100 * 2 ** 30 } };
  const ns = DEFAULT_CONSTANTS.quantizedKvDecodeNsPerCellLayer;
  for (const t of ["q8_0", "q4_0"] as const) {
    const q = plan(qwen, hw, recipe(32768, { kvCache: { types: [t] } })).candidates.find((c) => c.id === `all-vram-ub2048+kv-${t}`)!;
    const f = plan(qwen, hw, recipe(32768, f16Only)).candidates.find((c) => c.id === "all-vram-ub2048")!;
    const cells = 32768 - 256 + 128;
    // Same placement: the token time differs by the quantized attention less f16's cache reads.
    const f16Kv = 1 / f.predicted.decodeTps - 1 / q.predicted.decodeTps + (cells * qwen.layerCount * ns) / 1e9;
    assert(f16Kv > 0 && f16Kv < (cells * qwen.layerCount * ns) / 1e9 / 2, `${t}: f16 cache read ${f16Kv}`);
  }
});

test("kv_q4_0_never_unless_allowed: no q4_0 candidate under the default, and q4_0 wins at 128k only when the recipe lists it", () => {
  const models = [qwen, modelInfoFromShape("glm-4.7-flash", "q8_0"), modelInfoFromShape("llama-3.1-8b", "q8_0")];
  for (const hw of ["h200-12gib-free", "rtx-5070-12gb", "rtx-4090-24gb"]) {
    for (const m of models) {
      for (const ctx of [4096, 32768, 131072]) {
        let p: Plan;
        try {
          p = plan(m, getProfile(hw)!, recipe(ctx));
        } catch {
          continue; // nothing fits this context on this machine
        }
        for (const c of p.candidates) assertNotMatch(`${c.id} ${c.settings.kvType ?? ""}`, /q4_0/, `${hw} ${m.architecture} ${ctx}`);
      }
    }
  }
  const asked = plan(qwen, h200at12, recipe(131072, { kvCache: { types: ["f16", "q8_0", "q4_0"] } }));
  assertEquals(kvTypeOf(chosenOf(asked)), "q4_0", asked.chosen);
  const dflt = plan(qwen, h200at12, recipe(131072));
  assertEquals(kvTypeOf(chosenOf(dflt)), "q8_0", dflt.chosen);
});

test("kv_losing_variants_pruned: quantized candidates that lose to f16 are not listed, so the fastest listed one is the choice", () => {
  for (const ctx of [4096, 16384, 32768, 65536]) {
    const p = plan(qwen, h200at12, recipe(ctx));
    const fits = p.candidates.filter((c) => c.fits);
    const fastest = [...fits].sort((a, b) => a.predicted.totalSeconds - b.predicted.totalSeconds)[0];
    assertEquals(fastest.id, p.chosen, `${ctx}`);
    const bestF16 = fits.find((c) => kvTypeOf(c) === "f16");
    for (const c of p.candidates.filter((x) => kvTypeOf(x) !== "f16")) {
      assert(c.fits, c.id);
      if (bestF16) assertLess(c.predicted.totalSeconds * 1.03, bestF16.predicted.totalSeconds, `${ctx} ${c.id}`);
    }
  }
  // At 4k no q8_0 candidate gains 3%: none is listed, though the reason names the best one.
  const short = plan(qwen, h200at12, recipe(4096));
  assertEquals(short.candidates.filter((c) => kvTypeOf(c) !== "f16"), []);
});

test("kv_head_size_must_be_a_block_multiple: a 16-wide head gets no quantized cache (llama.cpp refuses it), and says so when asked", () => {
  const tiny = modelInfoFromShape("tiny-llama", "q8_0");
  const dflt = plan(tiny, h200at12, recipe(512, { workload: { objective: "custom", promptTokens: 256, generatedTokens: 64 } }));
  for (const c of dflt.candidates) assertEquals(kvTypeOf(c), "f16", c.id);
  assertEquals(dflt.notes ?? [], []);
  const asked = plan(tiny, h200at12, recipe(512, { workload: { objective: "custom", promptTokens: 256, generatedTokens: 64 }, kvCache: { types: ["q8_0"] } }));
  for (const c of asked.candidates) assertEquals(kvTypeOf(c), "f16", c.id);
  assertMatch((asked.notes ?? []).join("\n"), /kvCache\.types: q8_0 blocks of 32 elements do not divide the model's cache rows \(K 16, V 16\), which llama\.cpp refuses; planned with f16/);
});

test("kv_cpu_only_default_f16: without a GPU the default is f16 only (CPU flash attention with q8_0 prefilled 3.5-4x slower), an explicit list is honored", () => {
  const m = modelInfoFromShape("llama-3.1-8b", "q8_0");
  assertEquals(allowedKvTypes({ runtime: { name: "llama.cpp" } }, m, false).types, ["f16"]);
  assertEquals(allowedKvTypes({ runtime: { name: "llama.cpp" } }, m, true).types, ["f16", "q8_0"]);
  assertEquals(allowedKvTypes({ runtime: { name: "llama.cpp" }, kvCache: { types: ["f16", "q8_0"] } }, m, false).types, ["f16", "q8_0"]);
  const hw = { ...h200at12, gpu: null };
  const asked = plan(m, hw, recipe(16384, { kvCache: { types: ["q8_0"] } }));
  assertEquals(kvTypeOf(chosenOf(asked)), "q8_0");
});

test("kv_only_quantized_types: a recipe allowing only q8_0 gets no f16 candidate", () => {
  const p = plan(qwen, h200at12, recipe(4096, { kvCache: { types: ["q8_0"] } }));
  assert(p.candidates.length > 0);
  assertMatch(p.reason, /KV q8_0 \(saves 180\.0 MiB against f16; the recipe's kvCache\.types does not allow f16\)/);
  for (const c of p.candidates) assertEquals(kvTypeOf(c), "q8_0", c.id);
});

test("kv_runtime_without_quantized_kv: vLLM plans f16 and says why when the recipe asked for q8_0", () => {
  const quiet = plan(qwen, h200at12, recipe(8192, { runtime: { name: "vllm" } }));
  for (const c of quiet.candidates) assertEquals(c.settings.kvType, undefined, c.id);
  assertEquals(quiet.notes ?? [], []);
  const asked = plan(qwen, h200at12, recipe(8192, { runtime: { name: "vllm" }, kvCache: { types: ["q8_0"] } }));
  for (const c of asked.candidates) assertEquals(c.settings.kvType, undefined, c.id);
  assertMatch((asked.notes ?? []).join("\n"), /kvCache\.types: runtime vllm has no q8_0 KV cache .* planned with f16/);
});

test("kv_quantized_prefill_pays_the_conversion: same placement, q8_0 prefill is slower at long context than f16 when both are in VRAM", () => {
  // Everything in VRAM on an 80 GB card: the two KV types differ only by decode attention (per
  // quantized cell, slower: bench/results/2026-12-06-context) and the F16 conversion flash-attention
  // prefill makes per micro-batch (more).
  const big = getProfile("h200-12gib-free")!;
  const hw = { ...big, gpu: { ...big.gpu!, freeVramBytes: 100 * 2 ** 30 } };
  const f = plan(qwen, hw, recipe(32768, f16Only)).candidates.find((c) => c.id === "all-vram-ub2048")!;
  const q = plan(qwen, hw, recipe(32768, { kvCache: { types: ["q8_0"] } })).candidates.find((c) => c.id === "all-vram-ub2048+kv-q8_0")!;
  assertLess(q.predicted.prefillTps, f.predicted.prefillTps);
  assertLess(q.predicted.decodeTps, f.predicted.decodeTps);
});

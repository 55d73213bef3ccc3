// Issue 22: the plan predicts a hybrid split only for the MoE blocks the patched llama.cpp splits
// (engine/runtimes/llamacpp_hybrid_blocks.ts restates the part of patch 0003's guard that a GGUF
// header shows); other blocks run the stock path there, so a plan that counted them would predict a
// gain the runtime never gives.
import { test } from "node:test";
import { assert, assertEquals, assertGreater, assertStringIncludes } from "./_assert.ts";
import type { HardwareProfile, Measured, ModelInfo, TensorInfo } from "../core/types.ts";
import { getProfile } from "../engine/hardware/profiles.ts";
import { modelInfoFromShape } from "../engine/planner/from_shape.ts";
import { plan, type PlanRecipe } from "../engine/planner/plan.ts";
import { hybridExpertBlocks } from "../engine/runtimes/llamacpp_hybrid_blocks.ts";
import { blockRanges } from "../engine/planner/hybrid.ts";
import { hybridBlocksFor } from "../engine/planner/capabilities.ts";

const qwen = modelInfoFromShape("qwen3-30b-a3b", "q8_0", "qwen3moe-30b-a3b-q8_0.gguf");
const glm = modelInfoFromShape("glm-4.7-flash", "q8_0", "glm-4.7-flash-q8_0.gguf");

/** `model` with each routed-expert tensor of the blocks `which` selects renamed or joined by others. */
function edit(model: ModelInfo, which: (block: number) => boolean, change: (t: TensorInfo) => TensorInfo[]): ModelInfo {
  const tensors = model.tensors.flatMap((t) => {
    const m = /^blk\.(\d+)\.ffn_(gate|up|down)_exps\.weight$/.exec(t.name);
    return m && which(Number(m[1])) ? change(t) : [t];
  });
  return { ...model, tensors };
}

/** `model` with the gate and up experts of the blocks `which` selects merged into one tensor of both. */
function mergeGateUp(model: ModelInfo, which: (block: number) => boolean): ModelInfo {
  return edit(model, which, (t) =>
    t.name.includes("_gate_exps")
      ? [{ ...t, name: t.name.replace("_gate_exps", "_gate_up_exps"), shape: [t.shape[0], 2 * t.shape[1], t.shape[2]], bytes: 2 * t.bytes }]
      : t.name.includes("_up_exps") ? [] : [t]);
}

const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

test("hybrid blocks: every MoE block of plain gated experts (qwen3moe, deepseek2 with its leading dense block)", () => {
  assertEquals(hybridExpertBlocks(qwen), { blocks: range(0, 47), excluded: [] });
  // GLM-4.7-Flash: block 0 is dense (no routed experts), 1-46 MoE.
  assertEquals(hybridExpertBlocks(glm), { blocks: range(1, 46), excluded: [] });
  // A dense model has no MoE block at all.
  assertEquals(hybridExpertBlocks(modelInfoFromShape("llama-8b", "q8_0")), { blocks: [], excluded: [] });
});

test("hybrid blocks: merged gate+up, missing gate, biases, scales, clamps and other activations are left to the stock path, with the reason", () => {
  // Merged gate and up (ffn_gate_up_exps) in blocks 10-19.
  const merged = mergeGateUp(qwen, (b) => b >= 10 && b < 20);
  const mb = hybridExpertBlocks(merged);
  assertEquals(mb.blocks, [...range(0, 9), ...range(20, 47)]);
  assertEquals(mb.excluded, [{ blocks: range(10, 19), reason: "gate and up experts merged in one tensor (ffn_gate_up_exps)" }]);
  // Ungated experts (up and down only).
  const ungated = edit(qwen, () => true, (t) => (t.name.includes("_gate_exps") ? [] : [t]));
  assertEquals(hybridExpertBlocks(ungated).excluded[0].reason, "experts without separate gate, up and down matrices");
  // Biases on the down experts of even blocks; per-expert scales on block 47.
  const biased = edit(qwen, (b) => b % 2 === 0, (t) => (t.name.includes("_down_exps") ? [t, { ...t, name: t.name.replace(".weight", ".bias"), shape: [t.shape[1], t.shape[2]], bytes: 1 }] : [t]));
  const bb = hybridExpertBlocks(biased);
  assertEquals(bb.blocks, range(0, 47).filter((b) => b % 2 === 1));
  assertEquals(bb.excluded[0].reason, "expert biases");
  const scaled = edit(qwen, (b) => b === 47, (t) => [t, { ...t, name: t.name.replace(".weight", ".scale"), shape: [128], bytes: 512 }]);
  assertEquals(hybridExpertBlocks(scaled).excluded, [{ blocks: [47], reason: "per-expert scales" }]);
  // A SwiGLU clamp: one number for every block, or one per block (0: none).
  assertEquals(hybridExpertBlocks({ ...qwen, metadata: { ...qwen.metadata, "qwen3moe.swiglu_clamp_exp": 7 } }).blocks, []);
  const perBlock = range(0, 47).map((b) => (b < 40 ? 0 : 10));
  const cb = hybridExpertBlocks({ ...qwen, metadata: { ...qwen.metadata, "qwen3moe.swiglu_clamp_exp": perBlock } });
  assertEquals(cb.blocks, range(0, 39));
  assertEquals(cb.excluded, [{ blocks: range(40, 47), reason: "a SwiGLU clamp on the experts (qwen3moe.swiglu_clamp_exp)" }]);
  // Architectures whose experts use another activation, or weigh before the FFN.
  for (const [arch, words] of [["gpt-oss", "SwiGLU-OAI"], ["llama4", "before the experts"], ["nemotron_h_moe", "squared ReLU"]]) {
    const r = hybridExpertBlocks({ ...qwen, architecture: arch });
    assertEquals(r.blocks, [], arch);
    assertStringIncludes(r.excluded[0].reason, words);
  }
  // Safetensors: the split is llama.cpp's.
  assertEquals(hybridExpertBlocks({ ...qwen, format: "safetensors" }).blocks, []);
});

test("hybrid blocks through the adapter contract: llama.cpp's adapter says, a runtime without the split has none", () => {
  assertEquals(hybridBlocksFor("llama.cpp", glm), hybridExpertBlocks(glm));
  assertEquals(hybridBlocksFor("vllm", glm), { blocks: [], excluded: [] });
});

test("blockRanges: consecutive blocks as ranges", () => {
  assertEquals(blockRanges([0, 1, 2, 5, 7, 8]), "0-2, 5, 7-8");
  assertEquals(blockRanges([3]), "3");
  assertEquals(blockRanges([]), "");
});

const m = (median: number): Measured => ({ min: median, median, max: median, unit: "GB/s" });
/** The reference machine at 12 GiB free with the concurrent figure of shared/gpu/NOTES.md. */
function measured(): HardwareProfile {
  const base = getProfile("h200-12gib-free")!;
  return {
    ...base,
    measured: { ...(base.measured ?? {}), concurrentCpuAloneGBps: m(84.5), concurrentGpuAloneGBps: m(51.4), concurrentCpuGBps: m(78.2), concurrentGpuGBps: m(51.05) },
  };
}
const chat: PlanRecipe = {
  runtime: { name: "llama.cpp" },
  context: 1024,
  batch: 2048,
  threads: 16,
  workload: { objective: "custom", promptTokens: 512, generatedTokens: 512 },
  placement: { auto: true, kv: "auto", experts: "auto", cpuLayers: [] },
};

test("plan: the split's prediction counts only the blocks the patched build splits, and the plan says which stay on the CPU", () => {
  const full = plan(qwen, measured(), chat);
  const chosen = full.candidates.find((c) => c.id === full.chosen)!;
  assertEquals(chosen.strategy, "hybrid");
  // Merged gate+up in blocks 0-17: the split runs only in the rest of the host blocks.
  const merged = mergeGateUp(qwen, (b) => b < 18);
  const part = plan(merged, measured(), chat);
  const same = part.candidates.find((c) => c.id === chosen.id);
  assert(same !== undefined, `no ${chosen.id} among ${part.candidates.map((c) => c.id).join(", ")}`);
  // The same placement and base: a smaller gain, as only part of the host experts is split.
  const stockId = `ncmoe-${chosen.settings.cpuMoeLayers}-none-ub${chosen.settings.ubatch}`;
  const stock = part.candidates.find((c) => c.id === stockId)!;
  assertGreater(chosen.predicted.decodeTps, same!.predicted.decodeTps);
  assertGreater(same!.predicted.decodeTps, stock.predicted.decodeTps);
  assertStringIncludes(same!.label, "the experts of blocks 0-17 stay on the CPU alone (gate and up experts merged in one tensor (ffn_gate_up_exps))");
  assert(!chosen.label.includes("stay on the CPU alone"), chosen.label);
});

test("plan: no hybrid candidate for a model whose experts the patched build never splits, and a note says why", () => {
  const p = plan({ ...qwen, architecture: "gpt-oss" }, measured(), chat);
  assert(!p.candidates.some((c) => c.strategy === "hybrid"), p.chosen);
  assert(p.notes!.some((n) => n === "hybrid experts not considered: the runtime splits no block of this model (gpt-oss experts use the SwiGLU-OAI activation)"), JSON.stringify(p.notes));
});

// Issue 14 item 1: MLA models (tiny-mla, GLM-4.7-Flash) aborted in node-llama-cpp on AMX CPUs
// (GGML_ASSERT(*cur_backend_id != -1)): the AMX extra buffer of the `sapphirerapids` CPU variant
// takes attn_k_b / attn_v_b but cannot run their permuted multiplications. The fix loads the CPU
// backend without the AMX variant for such models. On an AMX CPU the run tests fail without the fix
// (the worker aborts); on any CPU they check that the AMX variant was left out for MLA models only.
import { test } from "node:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assert, assertEquals } from "./_assert.ts";
import { getShape, shapeTensors } from "../engine/model/shapes.ts";
import { synthesize, type SynthQuant } from "../engine/model/synth.ts";
import { AMX_CPU_VARIANTS, needsNoAmxBackend, prebuiltCpuBinsDir, variantsBuiltWithAmx } from "../engine/runtimes/node_llama_cpp_cpu.ts";
import { startNodeLlamaCppWorker } from "../engine/runtimes/node_llama_cpp_process.ts";

test("the AMX variant list matches the installed prebuilt CPU backends", async () => {
  const bins = await prebuiltCpuBinsDir();
  if (bins === null || !existsSync(bins)) return; // not linux-x64
  assertEquals(variantsBuiltWithAmx(bins), [...AMX_CPU_VARIANTS].sort());
});

test("MLA shapes keep llama.cpp's deepseek2 layout and are the ones run without AMX", () => {
  const glm = getShape("glm-4.7-flash")!;
  const dims = (id: string, name: string): number[] => shapeTensors(getShape(id)!).find((t) => t.name === name)!.dims;
  // llama_model_deepseek2: attn_k_b {qk_nope, kv_lora_rank, n_head}, attn_v_b {kv_lora_rank, v_head, n_head}.
  assertEquals(dims("glm-4.7-flash", "blk.0.attn_k_b.weight"), [192, 512, 20]);
  assertEquals(dims("glm-4.7-flash", "blk.0.attn_v_b.weight"), [512, 256, 20]);
  assertEquals(dims("tiny-mla", "blk.1.attn_k_b.weight"), [32, 64, 4]);
  assert(needsNoAmxBackend(shapeTensors(glm).map((t) => t.name)));
  assert(needsNoAmxBackend(shapeTensors(getShape("tiny-mla")!).map((t) => t.name)));
  assert(!needsNoAmxBackend(shapeTensors(getShape("tiny-moe")!).map((t) => t.name)));
  assert(!needsNoAmxBackend(shapeTensors(getShape("tiny-llama")!).map((t) => t.name)));
});

async function generate(shape: string, quant: SynthQuant) {
  const dir = mkdtempSync(join(tmpdir(), "spillway-amx-"));
  try {
    const out = join(dir, `${shape}.gguf`);
    await synthesize({ shape, quant, out, vocabSize: 300, seed: 7 });
    // A 256-token batch: prefill multiplies the permuted q_nope (the node that had no backend).
    const w = startNodeLlamaCppWorker({
      modelPath: out, gpu: false, gpuLayers: 0, threads: 2, contextSize: 256, batchSize: 256,
      useMmap: true, promptTokens: 32, genTokens: 4, prompt: "Hello, world",
    });
    return await w.result;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

for (const quant of ["Q8_0", "F16"] as const) {
  test(`tiny-mla ${quant} generates in node-llama-cpp with the CPU backend chosen without AMX`, async () => {
    const r = await generate("tiny-mla", quant);
    assertEquals(r.genTokens, 4);
    assertEquals(r.promptTokens, 32);
    if ((await prebuiltCpuBinsDir()) === null) return; // not the linux-x64 prebuilt: no variants to choose
    assertEquals(r.cpuVariantsExcluded, [...AMX_CPU_VARIANTS], "the AMX variant was left out");
    assert(r.cpuVariant !== null && !AMX_CPU_VARIANTS.includes(r.cpuVariant), `ran on ${r.cpuVariant}`);
  });
}

test("tiny-moe keeps ggml's own CPU variant choice (AMX where the CPU has it)", async () => {
  const r = await generate("tiny-moe", "Q8_0");
  assertEquals(r.genTokens, 4);
  assertEquals(r.cpuVariantsExcluded, []);
});

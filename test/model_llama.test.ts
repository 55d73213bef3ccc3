// Synthetic GGUF files load and generate tokens in llama.cpp (node-llama-cpp's prebuilt CPU build).
// Each shape runs in its own node-llama-cpp worker process (engine/runtimes/node_llama_cpp_process.ts):
// a native abort in llama.cpp fails that shape's test by name instead of ending the test runner.
import { test } from "node:test";
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { assertEquals } from "./_assert.ts";
import { readGgufHeader } from "../engine/model/gguf.ts";
import { synthesize, type SynthQuant } from "../engine/model/synth.ts";
import { startNodeLlamaCppWorker } from "../engine/runtimes/node_llama_cpp_process.ts";

const cases: [string, SynthQuant][] = [["tiny-llama", "Q4_0"], ["tiny-moe", "Q8_0"], ["tiny-mla", "F16"], ["tiny-mla", "Q8_0"], ["tiny-mla", "Q4_0"]];

for (const [shape, quant] of cases) {
  test(`tiny synthetic ${shape} ${quant} generates tokens in llama.cpp`, async () => {
    const dir = mkdtempSync(join(tmpdir(), "spillway-llama-"));
    try {
      const out = join(dir, `${shape}.gguf`);
      await synthesize({ shape, quant, out, vocabSize: 300, seed: 7 });
      const arch = String(readGgufHeader(out).metadata.get("general.architecture")?.value);
      assertEquals(readGgufHeader(out).metadata.get(`${arch}.context_length`)?.value, 512, `${shape}: context length in the metadata`);
      const text = "Hello, world";
      const w = startNodeLlamaCppWorker({
        modelPath: out, gpu: false, gpuLayers: 0, threads: Math.min(cpus().length || 2, 4), contextSize: 64, batchSize: 64,
        useMmap: true, promptTokens: text.length, genTokens: 6, prompt: text,
      });
      const r = await w.result;
      // Byte-level vocabulary without merges: one token per byte (a longer tokenization would raise the count).
      assertEquals(r.promptTokens, text.length, `${shape}: prompt tokens`);
      assertEquals(r.genTokens, 6, `${shape} ${quant}: tokens generated`);
      assertEquals(r.backend, "cpu");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

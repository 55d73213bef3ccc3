// Synthetic GGUF files load and generate tokens in llama.cpp (node-llama-cpp's prebuilt CPU build).
import { test } from "node:test";
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { getLlama, LlamaLogLevel } from "node-llama-cpp";
import { assert, assertEquals } from "./_assert.ts";
import { synthesize, type SynthQuant } from "../engine/model/synth.ts";

test("tiny synthetic llama / qwen3moe / deepseek2-MLA files generate tokens in llama.cpp", async () => {
  const dir = mkdtempSync(join(tmpdir(), "spillway-llama-"));
  // build "never": use the prebuilt @node-llama-cpp/linux-x64 binaries, never compile.
  const llama = await getLlama({ gpu: false, build: "never", maxThreads: cpus().length || 2, logLevel: LlamaLogLevel.error });
  try {
    const cases: [string, SynthQuant][] = [["tiny-llama", "Q4_0"], ["tiny-moe", "Q8_0"], ["tiny-mla", "F16"]];
    for (const [shape, quant] of cases) {
      const out = join(dir, `${shape}.gguf`);
      await synthesize({ shape, quant, out, vocabSize: 300, seed: 7 });
      const model = await llama.loadModel({ modelPath: out });
      try {
        assertEquals(model.trainContextSize, 512, `${shape}: context length from the metadata`);
        const ctx = await model.createContext({ contextSize: 64 });
        try {
          const prompt = model.tokenize("Hello, world");
          // Byte-level vocabulary without merges: one token per byte.
          assertEquals(prompt.length, "Hello, world".length, `${shape}: prompt tokens`);
          const generated: number[] = [];
          for await (const t of ctx.getSequence().evaluate(prompt, { temperature: 0 })) {
            generated.push(t);
            if (generated.length >= 6) break;
          }
          assertEquals(generated.length, 6, `${shape} ${quant}: tokens generated`);
          for (const t of generated) assert(t >= 0 && t < 300, `${shape}: token ${t} out of vocabulary`);
        } finally {
          await ctx.dispose();
        }
      } finally {
        await model.dispose();
      }
    }
  } finally {
    await llama.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
});

// Plan and run spillway's demo recipe through the public API (mod.ts), from any of the runtimes:
//   bun examples/demo.ts
//   deno run -A examples/demo.ts
//   npx tsx examples/demo.ts
// Loads the recipe, makes its tiny synthetic model on first use, reads the model's headers,
// resolves the hardware, plans, and launches the plan (node-llama-cpp in process on a CPU-only
// machine), then prints the measured speeds.
import { existsSync } from "node:fs";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { launch, loadRecipe, plan, readModel, resolveHardware, synthesize } from "../mod.ts";

const recipe = await loadRecipe(fileURLToPath(new URL("../recipes/demo.json5", import.meta.url)));
if (!existsSync(recipe.model.path) && recipe.model.synth && recipe.model.shape) {
  console.log(`synthesizing ${recipe.model.shape} -> ${recipe.model.path}`);
  await synthesize({ shape: recipe.model.shape, quant: "Q8_0", out: recipe.model.path });
}
const model = await readModel(recipe.model.path);
const hardware = await resolveHardware(recipe.hardware);
const p = plan(model, hardware, recipe);
console.log(`plan: ${p.chosen} on ${p.hardware.name}\n${p.reason}`);

const handle = launch(p, { prompt: recipe.runtime.prompt });
const status = await handle.exited;
const r = await handle.result;
if (r) {
  console.log(`prompt   ${r.promptTokens} tokens: ${r.promptTps.toFixed(1)} t/s`);
  console.log(`generate ${r.genTokens} tokens: ${r.genTps.toFixed(1)} t/s (${r.backend})`);
}
process.exit(status);

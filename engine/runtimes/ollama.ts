/**
 * Ollama adapter: `ollama serve` with OLLAMA_* environment, plus the per-model options Ollama takes
 * in a request or a Modelfile (num_gpu = layers on the GPU, num_ctx, num_batch, num_thread,
 * use_mmap). Ollama sizes its offload from NVML/CUDA free memory; under the shim that report
 * includes the host spill space (SPILLWAY_REPORT), so it offloads what the plan says fits.
 *
 * @module
 */
import type { LaunchSpec, Plan } from "../../core/types.ts";
import { type AdapterOptions, type RunRecipe, type RuntimeAdapter, withRecipe } from "./adapter.ts";
import { runtimeCapabilities } from "./capabilities.ts";
import { shimEnvironment } from "./shim_path.ts";

/** What Ollama can express. */
export const ollamaCapabilities = runtimeCapabilities({
  strategies: ["all_vram", "layers_cpu", "zero_copy"],
  formats: ["gguf"],
  gpuLayers: true,
  threads: true,
});

/** How to get Ollama. */
export const ollamaHint =
  "Install Ollama (https://ollama.com/download, on Linux `curl -fsSL https://ollama.com/install.sh | sh`) so that `ollama` is on PATH, " +
  "or set `binary` in the recipe to its path.";

/** Per-model options of an Ollama request (`options` of /api/generate) for the plan. */
export interface OllamaOptions {
  num_gpu: number;
  num_ctx: number;
  num_batch: number;
  num_thread: number;
  use_mmap: boolean;
}

/** The plan's settings as Ollama request options. */
export function ollamaRequestOptions(plan: Plan): OllamaOptions {
  const s = plan.settings;
  return {
    num_gpu: s.gpuLayers,
    num_ctx: s.contextLength,
    num_batch: s.batch,
    num_thread: s.threads,
    use_mmap: s.loadMode === "mmap",
  };
}

/** A Modelfile creating an Ollama model from the plan's GGUF with the plan's options baked in. */
export function ollamaModelfile(plan: Plan): string {
  const o = ollamaRequestOptions(plan);
  const lines = [`FROM ${plan.model.path}`];
  for (const [k, v] of Object.entries(o)) lines.push(`PARAMETER ${k} ${v}`);
  return lines.join("\n") + "\n";
}

/** Plan -> `ollama serve` launch (server-wide settings in the environment). */
export function ollamaLaunchSpec(plan: Plan, recipe: RunRecipe | null, options?: AdapterOptions): LaunchSpec {
  const s = plan.settings;
  const env: Record<string, string> = {
    OLLAMA_CONTEXT_LENGTH: String(s.contextLength),
    OLLAMA_NUM_PARALLEL: "1",
    OLLAMA_MAX_LOADED_MODELS: "1",
    ...shimEnvironment(s.shim, options),
  };
  const spec = withRecipe([recipe?.binary ?? "ollama", "serve"], env, recipe);
  // With the shim, the shim keeps the VRAM reserve; Ollama must not hold back a second one.
  if (s.shim !== null) spec.env.OLLAMA_GPU_OVERHEAD = "0";
  return spec;
}

/** The Ollama adapter. */
export const ollamaAdapter: RuntimeAdapter = {
  name: "ollama",
  capabilities: ollamaCapabilities,
  binaryHint: { binary: "ollama", hint: ollamaHint },
  toLaunchSpec: ollamaLaunchSpec,
};

/**
 * vLLM adapter: `vllm serve` with --gpu-memory-utilization, --cpu-offload-gb (weights offloaded by
 * vLLM itself), --kv-offloading-size/--kv-offloading-backend native (KV cache in host memory, GiB)
 * and --max-model-len.
 *
 * @module
 */
import type { LaunchSpec, Plan } from "../../core/types.ts";
import { type AdapterOptions, type RunRecipe, type RuntimeAdapter, withRecipe } from "./adapter.ts";
import { runtimeCapabilities } from "./capabilities.ts";
import { shimEnvironment } from "./shim_path.ts";

const GIB = 1024 ** 3;

/** What vLLM can express. */
export const vllmCapabilities = runtimeCapabilities({
  strategies: ["all_vram", "native_offload", "kv_host", "zero_copy", "combined"],
  formats: ["safetensors", "gguf"],
  kvOnHost: true,
  nativeOffload: true,
});

/** How to get vLLM. */
export const vllmHint =
  "Install vLLM into the active Python environment (`pip install vllm`, or `uv pip install vllm`) so that `vllm` is on PATH, " +
  "or set `binary` in the recipe to its path.";

/** GiB with at most 3 decimals, as vLLM's float GiB flags take them. */
function gib(bytes: number): string {
  return String(Math.round((bytes / GIB) * 1000) / 1000);
}

/** Bytes of KV cache the plan puts in host memory. */
function kvHostBytes(plan: Plan): number {
  const chosen = plan.candidates.find((c) => c.id === plan.chosen);
  const kv = (chosen?.placements ?? []).filter((p) => p.class === "kv_cache" && p.tier !== "vram");
  return kv.reduce((sum, p) => sum + p.bytes, 0);
}

/** vLLM serves a directory of safetensors shards; a shard path means its directory. */
function modelArg(plan: Plan, recipe: RunRecipe | null): string {
  if (recipe?.modelRef) return recipe.modelRef;
  const p = plan.model.path;
  return p.endsWith(".safetensors") ? p.slice(0, Math.max(p.lastIndexOf("/"), 0)) || "." : p;
}

/** Plan -> `vllm serve` launch. */
export function vllmLaunchSpec(plan: Plan, recipe: RunRecipe | null, options?: AdapterOptions): LaunchSpec {
  const s = plan.settings;
  const argv = [recipe?.binary ?? "vllm", "serve", modelArg(plan, recipe)];
  argv.push("--max-model-len", String(s.contextLength));
  if (s.gpuMemoryUtilization !== undefined) argv.push("--gpu-memory-utilization", String(s.gpuMemoryUtilization));
  if ((s.cpuOffloadBytes ?? 0) > 0) argv.push("--cpu-offload-gb", gib(s.cpuOffloadBytes!));
  if (s.kvOnHost) {
    const kv = kvHostBytes(plan);
    if (kv > 0) argv.push("--kv-offloading-backend", "native", "--kv-offloading-size", gib(kv));
  }
  argv.push("--max-num-batched-tokens", String(s.batch));
  // Parallelism over several GPUs (issue 19, engine/planner/multi_device.ts).
  if ((s.tensorParallel ?? 1) > 1) argv.push("--tensor-parallel-size", String(s.tensorParallel));
  if ((s.pipelineParallel ?? 1) > 1) argv.push("--pipeline-parallel-size", String(s.pipelineParallel));
  return withRecipe(argv, shimEnvironment(s.shim, options), recipe);
}

/** The vLLM adapter. */
export const vllmAdapter: RuntimeAdapter = {
  name: "vllm",
  capabilities: vllmCapabilities,
  binaryHint: { binary: "vllm", hint: vllmHint },
  toLaunchSpec: vllmLaunchSpec,
};

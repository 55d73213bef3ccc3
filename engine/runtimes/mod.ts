/**
 * Runtime adapters by name.
 *
 * @example
 * ```ts
 * import { adapterFor } from "./mod.ts";
 * const spec = adapterFor("llama.cpp").toLaunchSpec(plan, { program: "server" });
 * ```
 *
 * @module
 */
import { RecipeSchemaError } from "../../core/errors.ts";
import type { RuntimeAdapter, RuntimeName, WrappedCommand } from "./adapter.ts";
import { commandAdapter } from "./command_adapter.ts";
import { llamaCppAdapter } from "./llamacpp.ts";
import { nodeLlamaCppAdapter } from "./node_llama_cpp.ts";
import { ollamaAdapter } from "./ollama.ts";
import { transformersAdapter } from "./transformers.ts";
import { vllmAdapter } from "./vllm.ts";

export type { AdapterOptions, BenchCounts, HybridBlocks, PlanBuild, RunRecipe, RuntimeAdapter, RuntimeName, WrappedCommand, WrappedPlanInputs } from "./adapter.ts";
export type { RuntimeCapabilities, Strategy } from "./capabilities.ts";
export { canExpress } from "./capabilities.ts";
export { intArgOf, llamaBenchArgs, llamaCommonArgs, llamaProgramOf, mergeUserArgs, modelArgOf } from "./llamacpp.ts";
export type { LlamaProgram } from "./llamacpp.ts";
export { ollamaModelfile, ollamaRequestOptions } from "./ollama.ts";
export { nodeLlamaCppRun, runNodeLlamaCpp } from "./node_llama_cpp.ts";
export type { GenerationResult, NodeLlamaCppRun } from "./node_llama_cpp.ts";

/** Every adapter, by canonical runtime name. */
export const ADAPTERS: Readonly<Record<RuntimeName, RuntimeAdapter>> = {
  "llama.cpp": llamaCppAdapter,
  vllm: vllmAdapter,
  ollama: ollamaAdapter,
  transformers: transformersAdapter,
  "node-llama-cpp": nodeLlamaCppAdapter,
  command: commandAdapter,
};

const ALIASES: Record<string, RuntimeName> = {
  "llama.cpp": "llama.cpp",
  llamacpp: "llama.cpp",
  "llama-cpp": "llama.cpp",
  llama_cpp: "llama.cpp",
  vllm: "vllm",
  ollama: "ollama",
  transformers: "transformers",
  pytorch: "transformers",
  "node-llama-cpp": "node-llama-cpp",
  node_llama_cpp: "node-llama-cpp",
  nodellamacpp: "node-llama-cpp",
  command: "command",
};

/** Canonical runtime name for a name or alias (case-insensitive), or null. */
export function runtimeName(name: string): RuntimeName | null {
  return ALIASES[name.toLowerCase()] ?? null;
}

/** The adapter of `runtime` (a canonical name or an alias); throws naming the known ones. */
export function adapterFor(runtime: string, file = "runtime"): RuntimeAdapter {
  const name = runtimeName(runtime);
  if (name === null) {
    throw new RecipeSchemaError(file, "runtime", `unknown runtime '${runtime}'; known: ${Object.keys(ADAPTERS).join(", ")}`);
  }
  return ADAPTERS[name];
}

/**
 * The adapter whose runtime `argv` runs (`spillway run -- llama-server -m m.gguf`), with the command
 * read back into plan inputs; null when no adapter plans it (it then runs as a plain command).
 */
export function wrappedCommandOf(argv: readonly string[]): { adapter: RuntimeAdapter; wrapped: WrappedCommand } | null {
  for (const adapter of Object.values(ADAPTERS)) {
    const wrapped = adapter.fromCommandLine?.(argv) ?? null;
    if (wrapped) return { adapter, wrapped };
  }
  return null;
}

/**
 * llama.cpp adapter: llama-server / llama-cli / llama-completion / llama-bench argv from a plan.
 * Flag names are those of the llama.cpp shipped with node-llama-cpp 3.22 (common/arg.cpp,
 * tools/llama-bench): `-lm none|mmap` is the load mode (there is no `--no-mmap` any more), and
 * `-fit off` keeps llama.cpp from re-fitting what the plan already decided.
 *
 * @module
 */
import type { LaunchSpec, Plan, RuntimeSettings } from "../types.ts";
import type { AdapterOptions, RunRecipe, RuntimeAdapter } from "./adapter.ts";
import type { RuntimeCapabilities } from "./capabilities.ts";
import { shimEnvironment } from "./shim_path.ts";

/** Which llama.cpp program a launch runs. */
export type LlamaProgram = "server" | "cli" | "completion" | "bench";

const PROGRAM_BINARY: Record<LlamaProgram, string> = {
  server: "llama-server",
  cli: "llama-cli",
  completion: "llama-completion",
  bench: "llama-bench",
};

/** What llama.cpp can express. */
export const llamaCppCapabilities: RuntimeCapabilities = {
  strategies: ["all_vram", "layers_cpu", "experts_cpu", "kv_host", "zero_copy", "combined"],
  formats: ["gguf"],
  gpuLayers: true,
  cpuMoeLayers: true,
  overrideTensors: true,
  kvOnHost: true,
  loadModes: ["mmap", "none"],
  nativeOffload: false,
  shim: true,
  inProcess: false,
  threads: true,
};

/** How to get llama.cpp when its binaries are missing. */
export const llamaCppHint =
  "Install llama.cpp (e.g. `brew install llama.cpp`, a release archive from https://github.com/ggml-org/llama.cpp/releases, " +
  "or build it: `cmake -B build -DGGML_CUDA=ON && cmake --build build -j`) and put its bin/ directory on PATH, " +
  "or set `binary` in the recipe to the program's path.";

/** Flags shared by llama-server, llama-cli and llama-completion for the plan's settings. */
export function llamaCommonArgs(modelPath: string, s: RuntimeSettings): string[] {
  const argv = ["-m", modelPath, "-ngl", String(s.gpuLayers)];
  if (s.cpuMoeLayers > 0) argv.push("-ncmoe", String(s.cpuMoeLayers));
  if (s.overrideTensors.length > 0) {
    argv.push("-ot", s.overrideTensors.map((o) => `${o.pattern}=${o.device}`).join(","));
  }
  if (s.kvOnHost) argv.push("-nkvo");
  argv.push("-lm", s.loadMode);
  argv.push("-c", String(s.contextLength), "-b", String(s.batch), "-ub", String(s.ubatch), "-t", String(s.threads));
  argv.push("-fit", "off");
  return argv;
}

/** Token counts of a llama-bench run. */
export interface BenchCounts {
  /** Prompt tokens (-p). */
  promptTokens: number;
  /** Generated tokens (-n). */
  genTokens: number;
  /** Repetitions (-r); llama-bench's default (5) when absent. */
  repetitions?: number;
}

/**
 * llama-bench arguments (without the program name) measuring the plan's configuration:
 * prefill of `promptTokens` and decode of `genTokens`, JSON output.
 */
export function llamaBenchArgs(plan: Plan, counts: BenchCounts): string[] {
  const s = plan.settings;
  const argv = ["-m", plan.model.path, "-p", String(counts.promptTokens), "-n", String(counts.genTokens)];
  argv.push("-ngl", String(s.gpuLayers), "-ncmoe", String(s.cpuMoeLayers));
  // llama-bench separates the overrides of one configuration with ';' (',' separates configurations).
  if (s.overrideTensors.length > 0) {
    argv.push("-ot", s.overrideTensors.map((o) => `${o.pattern}=${o.device}`).join(";"));
  }
  argv.push("-nkvo", s.kvOnHost ? "1" : "0", "-lm", s.loadMode);
  argv.push("-b", String(s.batch), "-ub", String(s.ubatch), "-t", String(s.threads));
  if (counts.repetitions !== undefined) argv.push("-r", String(counts.repetitions));
  argv.push("-o", "json");
  return argv;
}

function programOf(recipe: RunRecipe | null): LlamaProgram {
  return recipe?.program ?? "server";
}

/** Plan -> llama.cpp launch. */
export function llamaCppLaunchSpec(plan: Plan, recipe: RunRecipe | null, options?: AdapterOptions): LaunchSpec {
  const program = programOf(recipe);
  const binary = recipe?.binary ?? PROGRAM_BINARY[program];
  const s = plan.settings;
  let args: string[];
  if (program === "bench") {
    args = llamaBenchArgs(plan, { promptTokens: plan.workload.promptTokens, genTokens: plan.workload.generatedTokens });
  } else {
    args = llamaCommonArgs(plan.model.path, s);
    if (program === "cli" || program === "completion") {
      args.push("-n", String(plan.workload.generatedTokens));
      if (recipe?.prompt !== undefined) args.push("-p", recipe.prompt);
      if (program === "completion") args.push("-no-cnv");
      else args.push("-st");
    }
  }
  const env: Record<string, string> = { ...shimEnvironment(s.shim, options), ...(recipe?.env ?? {}) };
  return { argv: [binary, ...args, ...(recipe?.args ?? [])], env };
}

/** The llama.cpp adapter. */
export const llamaCppAdapter: RuntimeAdapter = {
  name: "llama.cpp",
  capabilities: llamaCppCapabilities,
  binaryHint: { binary: "llama-server", hint: llamaCppHint },
  toLaunchSpec: llamaCppLaunchSpec,
};

/** llama.cpp program names spillway recognizes when wrapping a command (`spillway run -- llama-server ...`). */
export const LLAMA_CPP_BINARIES: readonly string[] = Object.values(PROGRAM_BINARY);

/** The llama.cpp program a binary name or path runs, or null when it is not one. */
export function llamaProgramOf(binary: string): LlamaProgram | null {
  const base = binary.split("/").pop() ?? binary;
  for (const [program, name] of Object.entries(PROGRAM_BINARY)) {
    if (base === name) return program as LlamaProgram;
  }
  return null;
}

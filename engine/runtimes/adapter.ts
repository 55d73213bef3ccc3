/**
 * The runtime adapter contract: each adapter turns a {@link Plan} (and what the recipe says about
 * how to run) into a {@link LaunchSpec} (argv + environment, never a shell line), and declares the
 * placements it can express.
 *
 * @module
 */
import type { Recipe, RecipeRuntime } from "../recipe/types.ts";
import type { LaunchSpec, ModelInfo, Plan, RuntimeSettings } from "../../core/types.ts";
import type { RuntimeCapabilities } from "./capabilities.ts";

/** Names of the runtimes spillway can launch. */
export type RuntimeName = "llama.cpp" | "vllm" | "ollama" | "transformers" | "node-llama-cpp" | "command";

/**
 * The part of a recipe (or of a wrapped command line) that says how to run, independent of the
 * recipe file schema; {@link runRecipeOf} fills it from a parsed recipe.
 */
export type RunRecipe = Omit<RecipeRuntime, "name"> & {
  /** File the recipe came from, for messages. */
  file?: string;
};

/** The adapter-facing part of a parsed recipe: its runtime options and file. */
export function runRecipeOf(recipe: Pick<Recipe, "file" | "runtime">): RunRecipe {
  const { name: _name, ...options } = recipe.runtime;
  return { file: recipe.file, ...options };
}

/**
 * The launch of `argv` with `env`, finished with what the recipe adds: its `env` over the adapter's
 * (the user has the last word) and its `args` after the adapter's. llama.cpp merges flags instead
 * (a recipe flag replaces the planned one: llamacpp.ts mergeUserArgs).
 *
 * @example
 * ```ts
 * withRecipe(["vllm", "serve", "m"], { A: "1" }, { args: ["--x"], env: { A: "2" } });
 * // { argv: ["vllm", "serve", "m", "--x"], env: { A: "2" } }
 * ```
 */
export function withRecipe(argv: string[], env: Record<string, string>, recipe: RunRecipe | null): LaunchSpec {
  return { argv: [...argv, ...(recipe?.args ?? [])], env: { ...env, ...(recipe?.env ?? {}) } };
}

/** Token counts of a benchmark run of a plan (llama-bench -p/-n/-r). */
export interface BenchCounts {
  /** Prompt tokens (-p). */
  promptTokens: number;
  /** Generated tokens (-n). */
  genTokens: number;
  /** Repetitions (-r); llama-bench's default (5) when absent. */
  repetitions?: number;
}

/** What the planner needs of a recipe, read back from a wrapped command line's own flags. */
export type WrappedPlanInputs =
  & Pick<Recipe, "runtime" | "context" | "batch" | "workload" | "placement">
  & Partial<Pick<Recipe, "file" | "ubatch" | "threads">>;

/**
 * One of a runtime's own programs on a command line (`spillway run -- llama-server -m m.gguf -c 8192`),
 * read back by its adapter: the model it names, the plan inputs its flags fix, and how to put the
 * planned flags and the user's together (the user's win).
 */
export interface WrappedCommand {
  /** The model file the command names. */
  modelPath: string;
  /** Planning inputs from the command's flags (recipe defaults for the rest). */
  planInputs: WrappedPlanInputs;
  /** How the adapter launches it: the program as typed. */
  runRecipe: RunRecipe;
  /** The planned arguments (no program) merged with the user's: flags the user gave replace planned ones. */
  mergeArgs(planned: string[]): string[];
}

/** Options an adapter takes besides the plan and recipe. */
export interface AdapterOptions {
  /** Path of the shim library; default SPILLWAY_SHIM, else the shim's build location (shim_path.ts defaultShimPath()). */
  shimPath?: string;
}

/** One runtime adapter. */
export interface RuntimeAdapter {
  /** Runtime name as used in recipes and plans. */
  name: RuntimeName;
  /** What placements it can express. */
  capabilities: RuntimeCapabilities;
  /** Default program, and how to get it when it is missing (shown by RuntimeMissingError). */
  binaryHint: { binary: string; hint: string };
  /** Plan -> argv + env. Pure: reads no files (except locating the shim when one is used). */
  toLaunchSpec(plan: Plan, recipe: RunRecipe | null, options?: AdapterOptions): LaunchSpec;
  /**
   * Checks what the program needs besides itself before anything starts (the Python packages of
   * the transformers entry), with the environment the child will get; throws RuntimeMissingError
   * saying what to install. Not called for dry runs.
   */
  preflight?(spec: LaunchSpec, env: Record<string, string | undefined>): void;
  /**
   * `argv` read back into plan inputs when it runs one of this runtime's programs on a model
   * (`spillway run -- prog args`); null when it does not. Runtimes without it are not planned when wrapped.
   */
  fromCommandLine?(argv: readonly string[]): WrappedCommand | null;
  /** Arguments (no program) of this runtime's benchmark program measuring `plan` (llama.cpp: llama-bench). */
  benchArgs?(plan: Plan, counts: BenchCounts): string[];
  /**
   * The MoE blocks of `model` its hybrid expert split runs in (for runtimes with the `hybrid`
   * strategy); the planner predicts the split only for those.
   */
  hybridBlocks?(model: ModelInfo): HybridBlocks;
  /**
   * The build that plans with these settings need instead of the runtime's stock programs, or null
   * (llama.cpp: the patched build for hybrid plans). Callers that run the runtime's programs outside
   * `toLaunchSpec` (autotune's trials, the GPU bench harness) take its programs and environment, and
   * `launch()` its hint when the program is missing.
   */
  planBuild?(settings: RuntimeSettings): PlanBuild | null;
}

/** A build of a runtime that some plans need (see {@link RuntimeAdapter.planBuild}). */
export interface PlanBuild {
  /** Environment the settings set for that build's programs (switches). */
  env: Record<string, string>;
  /** Path of one of its programs (`llama-bench`), or null when it is not built. */
  program(name: string): string | null;
  /** How to build it, for messages when a program is missing. */
  hint(): string;
}

/** MoE blocks a runtime's hybrid expert split runs in, and the others with the reason. */
export interface HybridBlocks {
  /** MoE blocks whose experts the split divides between the CPU and the GPU, ascending. */
  blocks: number[];
  /** MoE blocks left to the runtime's stock path, grouped by reason. */
  excluded: { blocks: number[]; reason: string }[];
}

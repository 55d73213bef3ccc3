/**
 * The normalized recipe: what {@link ../recipe/parse.ts parseRecipe} returns after validation and
 * defaults. Sizes are bytes, the model path is absolute, the workload has explicit token counts.
 *
 * @module
 */
import type { HardwareProfile, Workload } from "../../core/types.ts";
import type { HardwareSpec } from "../hardware/spec.ts";

export type { HardwareOverrides, HardwareSpec } from "../hardware/spec.ts";

/** Runtimes a recipe can name. */
export type RecipeRuntimeName = "llama.cpp" | "vllm" | "ollama" | "transformers" | "node-llama-cpp" | "command";

/** All runtime names, in documentation order. */
export const RUNTIME_NAMES: readonly RecipeRuntimeName[] = [
  "llama.cpp",
  "vllm",
  "ollama",
  "transformers",
  "node-llama-cpp",
  "command",
];

/** Which model file the recipe runs. */
export interface RecipeModel {
  /** Absolute path of the model file (for sharded models: the first shard or the index). */
  path: string;
  /** Known model id (`qwen3-30b-a3b`), when given by id. */
  id?: string;
  /** Quantization of a known id (`q8_0`), lower case. */
  quant?: string;
  /** Name of the shape in engine/model/shapes.ts the id maps to. */
  shape?: string;
  /** `path`: the recipe named the file; `id`: the default path of a known id. */
  source: "path" | "id";
  /** The runtime (`spillway run`) makes a synthetic file of `shape` at `path` when it is missing. */
  synth: boolean;
}

/** How to run: the runtime plus its options (the parts runtime adapters read). */
export interface RecipeRuntime {
  name: RecipeRuntimeName;
  /** Program to run instead of the adapter's default (name in PATH or a path). */
  binary?: string;
  /** llama.cpp program: server (default), cli, completion, bench. */
  program?: "server" | "cli" | "completion" | "bench";
  /** Extra arguments appended to the generated ones. */
  args?: string[];
  /** Extra environment for the child. */
  env?: Record<string, string>;
  /** `command` runtime: the argv to run under the shim. */
  command?: string[];
  /** Prompt for one-shot runs. */
  prompt?: string;
  /** Model reference for runtimes that address models by name (Ollama tag, HF repo id). */
  modelRef?: string;
  /** Python interpreter for the transformers entry. */
  python?: string;
}

/** Placement policy: `auto` leaves everything to the planner; each field narrows its choice. */
export interface PlacementPolicy {
  /** True when the recipe said `placement: "auto"` (or nothing). */
  auto: boolean;
  /** Where the KV cache goes. */
  kv: "auto" | "vram" | "host";
  /** Where MoE experts go: `cpu` forces all experts to the CPU, `vram` forbids moving them off. */
  experts: "auto" | "vram" | "cpu";
  /** Transformer layers that must run on the CPU. */
  cpuLayers: number[];
  /** Most VRAM the plan may use, bytes (below the card's free memory). */
  vramCap?: number;
  /** Most host RAM the plan may use, bytes. */
  ramCap?: number;
  /** VRAM kept free for the CUDA context, late allocations and fragmentation, bytes. */
  reserve?: number;
}

/** A validated recipe. */
export interface Recipe {
  /** File it came from (as given), or `<inline>`. */
  file: string;
  name?: string;
  description?: string;
  model: RecipeModel;
  runtime: RecipeRuntime;
  /** Context length, tokens. */
  context: number;
  /** Logical batch (llama.cpp -b). */
  batch: number;
  /** Physical micro-batch (llama.cpp -ub); absent: the planner chooses. */
  ubatch?: number;
  /** CPU threads; absent: the planner uses the hardware's cores. */
  threads?: number;
  workload: Workload;
  placement: PlacementPolicy;
  hardware: HardwareSpec;
  /**
   * KV cache element types the planner may choose from (issue 21), best quality first; absent:
   * f16 and q8_0 (q4_0 only when asked).
   */
  kvCache?: { types: ("f16" | "q8_0" | "q4_0")[] };
  /**
   * llama-server prompt (slot) cache: a private directory (created 0700; a symlink is refused)
   * where clients save and restore a slot's KV cache (`--slot-save-path`), and the least chunk of
   * tokens reused from the cache by KV shifting (`--cache-reuse`, 0: off).
   */
  promptCache?: { dir: string; reuse: number };
}

/**
 * What placements a runtime can express. The planner only proposes candidates whose strategy and
 * settings the chosen runtime's adapter can turn into native flags (or into the shim's environment).
 *
 * @module
 */
import type { Candidate } from "../../core/types.ts";

/** A placement strategy, as named on {@link Candidate}. */
export type Strategy = Candidate["strategy"];

/** The placements and knobs one runtime can express. */
export interface RuntimeCapabilities {
  /** Strategies the runtime can run (the planner drops candidates of any other strategy). */
  strategies: Strategy[];
  /** Model file formats the runtime loads. */
  formats: ("gguf" | "safetensors")[];
  /** Per-layer GPU offload count (llama.cpp -ngl, Ollama num_gpu, node-llama-cpp gpuLayers). */
  gpuLayers: boolean;
  /** MoE experts of the first N layers kept on the CPU (llama.cpp -ncmoe). */
  cpuMoeLayers: boolean;
  /** Arbitrary tensor-name overrides to a device (llama.cpp -ot). */
  overrideTensors: boolean;
  /** KV cache in host memory (llama.cpp -nkvo, vLLM KV offloading). */
  kvOnHost: boolean;
  /** Weight load modes it can be told to use. */
  loadModes: ("mmap" | "none")[];
  /** Weights offloaded by the runtime itself to host memory (vLLM --cpu-offload-gb, accelerate). */
  nativeOffload: boolean;
  /** Runs as a separate process that the LD_PRELOAD shim can be applied to. */
  shim: boolean;
  /** Runs inside the spillway process (no child; no shim). */
  inProcess: boolean;
  /** Threads count can be set. */
  threads: boolean;
}

/**
 * What most runtimes have, so an adapter states only where it differs: a separate process the shim
 * can be applied to, both load modes, none of the optional knobs.
 */
export const DEFAULT_CAPABILITIES: Omit<RuntimeCapabilities, "strategies" | "formats"> = {
  gpuLayers: false,
  cpuMoeLayers: false,
  overrideTensors: false,
  kvOnHost: false,
  loadModes: ["mmap", "none"],
  nativeOffload: false,
  shim: true,
  inProcess: false,
  threads: false,
};

/**
 * A runtime's capabilities: its strategies and formats, and where it differs from
 * {@link DEFAULT_CAPABILITIES}.
 *
 * @example
 * ```ts
 * const caps = runtimeCapabilities({ strategies: ["all_vram", "zero_copy"], formats: ["gguf"], threads: true });
 * ```
 */
export function runtimeCapabilities(c: Pick<RuntimeCapabilities, "strategies" | "formats"> & Partial<RuntimeCapabilities>): RuntimeCapabilities {
  return { ...DEFAULT_CAPABILITIES, ...c };
}

/** True when `caps` can express `candidate` as planned (strategy, knobs and shim use). */
export function canExpress(caps: RuntimeCapabilities, candidate: Candidate): boolean {
  if (!caps.strategies.includes(candidate.strategy)) return false;
  const s = candidate.settings;
  if (s.shim !== null && !caps.shim) return false;
  if (s.cpuMoeLayers > 0 && !caps.cpuMoeLayers) return false;
  if (s.overrideTensors.length > 0 && !caps.overrideTensors) return false;
  if (s.kvOnHost && !caps.kvOnHost) return false;
  if (!caps.loadModes.includes(s.loadMode)) return false;
  if ((s.cpuOffloadBytes ?? 0) > 0 && !caps.nativeOffload) return false;
  return true;
}

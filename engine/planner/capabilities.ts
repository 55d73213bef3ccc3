/**
 * What each runtime can express, for planning. The runtime adapters (engine/runtimes/) declare the
 * same shape ({@link RuntimeCapabilities}); this table is the planner's default so planning never
 * needs the adapters loaded, and `planCommand` prefers an adapter's own declaration when present.
 *
 * @module
 */
import type { RuntimeCapabilities } from "../runtimes/capabilities.ts";

export type { RuntimeCapabilities };

/** Default capabilities per runtime name. */
export const DEFAULT_CAPABILITIES: Readonly<Record<string, RuntimeCapabilities>> = {
  // llama.cpp expresses everything natively (-ngl, -ncmoe, -ot, -nkvo, -lm) and runs under the shim.
  "llama.cpp": {
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
  },
  // Ollama: num_gpu layers; its llama.cpp runner inherits LD_PRELOAD.
  ollama: {
    strategies: ["all_vram", "layers_cpu", "zero_copy"],
    formats: ["gguf"],
    gpuLayers: true,
    cpuMoeLayers: false,
    overrideTensors: false,
    kvOnHost: false,
    loadModes: ["mmap"],
    nativeOffload: false,
    shim: true,
    inProcess: false,
    threads: true,
  },
  // node-llama-cpp runs in-process: gpuLayers and useMmap only, no shim.
  "node-llama-cpp": {
    strategies: ["all_vram", "layers_cpu"],
    formats: ["gguf"],
    gpuLayers: true,
    cpuMoeLayers: false,
    overrideTensors: false,
    kvOnHost: false,
    loadModes: ["mmap", "none"],
    nativeOffload: false,
    shim: false,
    inProcess: true,
    threads: true,
  },
  // vLLM: --cpu-offload-gb (weights copied per forward pass), or the shim's zero-copy spill.
  vllm: {
    strategies: ["all_vram", "native_offload", "zero_copy"],
    formats: ["safetensors", "gguf"],
    gpuLayers: false,
    cpuMoeLayers: false,
    overrideTensors: false,
    kvOnHost: false,
    loadModes: ["mmap"],
    nativeOffload: true,
    shim: true,
    inProcess: false,
    threads: false,
  },
  // transformers: accelerate device_map/max_memory offload, or the shim.
  transformers: {
    strategies: ["all_vram", "native_offload", "zero_copy"],
    formats: ["safetensors"],
    gpuLayers: false,
    cpuMoeLayers: false,
    overrideTensors: false,
    kvOnHost: false,
    loadModes: ["mmap"],
    nativeOffload: true,
    shim: true,
    inProcess: false,
    threads: false,
  },
  // Any program: only the shim can move its memory.
  command: {
    strategies: ["all_vram", "zero_copy"],
    formats: ["gguf", "safetensors"],
    gpuLayers: false,
    cpuMoeLayers: false,
    overrideTensors: false,
    kvOnHost: false,
    loadModes: ["mmap"],
    nativeOffload: false,
    shim: true,
    inProcess: false,
    threads: false,
  },
};

/** Capabilities of `runtime` (the llama.cpp table for unknown names). */
export function capabilitiesFor(runtime: string): RuntimeCapabilities {
  return DEFAULT_CAPABILITIES[runtime] ?? DEFAULT_CAPABILITIES.command;
}

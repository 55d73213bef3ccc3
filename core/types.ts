/**
 * The shared data shapes of spillway's engine: what the model readers produce, what the hardware
 * probe produces, what the planner produces and what runtime adapters consume. Every type here is
 * plain JSON-serializable data, so a Plan printed by `spillway plan --json` can be read back.
 *
 * @module
 */

/** Where a piece of the model lives while it runs. */
export type Tier =
  /** GPU memory. */
  | "vram"
  /** Pinned host memory the GPU reads directly over PCIe (zero-copy through the shim). */
  | "host_mapped"
  /** Host memory computed on by the CPU (llama.cpp CPU layers / CPU experts). */
  | "host_cpu"
  /** Left on disk, paged in through mmap. */
  | "disk";

/** What a tensor is for; drives placement (dense tensors read every token go to VRAM first). */
export type TensorClass =
  | "embedding"
  | "attention"
  | "ffn_dense"
  | "ffn_experts"
  | "ffn_shared_expert"
  | "router"
  | "norm"
  | "output"
  | "other";

/** One tensor of a model file, header data only. */
export interface TensorInfo {
  /** Name as stored in the file, e.g. `blk.3.ffn_gate_exps.weight`. */
  name: string;
  /** Dimensions in the file's order (GGUF: ne[0] first). */
  shape: number[];
  /** Element type name: GGML type name (`Q8_0`, `F16`, ...) or safetensors dtype (`BF16`, ...). */
  dtype: string;
  /** Bytes of tensor data. */
  bytes: number;
  /** Absolute byte offset of the data in `file`. */
  offset: number;
  /** File that holds the data. */
  file: string;
  /** Transformer block index, or null for tensors outside the blocks. */
  layer: number | null;
  /** Role of the tensor. */
  class: TensorClass;
}

/** Header-derived description of a model: enough to plan without reading tensor data. */
export interface ModelInfo {
  format: "gguf" | "safetensors";
  /** All files of the model (split GGUF parts, safetensors shards). */
  files: string[];
  /** Architecture name, e.g. `qwen3moe`, `llama`, `deepseek2`. */
  architecture: string;
  /** Model name from metadata, if any. */
  name?: string;
  /** Dominant tensor dtype, e.g. `Q8_0`. */
  quantization: string;
  /** Sum of file sizes. */
  fileBytes: number;
  /** Sum of tensor data bytes. */
  tensorBytes: number;
  layerCount: number;
  embeddingLength: number;
  /** Trained context length from metadata, if present. */
  contextLength?: number;
  vocabSize?: number;
  headCount: number;
  headCountKv: number;
  /** Key head size (per head); for MLA the latent + rope size is in `kvBytesPerToken` instead. */
  keyLength: number;
  valueLength: number;
  /** Routed experts per MoE layer (0 for dense models). */
  expertCount: number;
  /** Experts chosen per token. */
  expertUsedCount: number;
  /** KV cache bytes per token at an F16 cache, all layers. */
  kvBytesPerToken: number;
  tensors: TensorInfo[];
  /** Scalar metadata (arrays longer than 64 entries are summarized as their length). */
  metadata: Record<string, unknown>;
}

/** min/median/max of a repeated measurement. */
export interface Measured {
  min: number;
  median: number;
  max: number;
  /** Unit, e.g. `GB/s`, `ms`. */
  unit: string;
}

/** One JSON shape for a machine, whether built-in, probed, or measured by `spillway bench`. */
export interface HardwareProfile {
  name: string;
  /** Where the numbers came from. */
  source: "builtin" | "probe" | "bench" | "recipe";
  /** Free-form notes on how it was obtained (e.g. "no GPU found, planning for profile X"). */
  notes?: string[];
  gpu: null | {
    name: string;
    vramBytes: number;
    /** Free VRAM when probed/assumed; the planner fits against this. */
    freeVramBytes: number;
    /** VRAM read bandwidth, GB/s (1e9 bytes/s). */
    vramGBps: number;
    /** Dense fp16/bf16 tensor throughput, TFLOP/s. */
    fp16Tflops: number;
    pcie: { gen: number; width: number };
    /** Pinned host-to-device copy bandwidth, GB/s. */
    h2dGBps: number;
    /** Device-to-host copy bandwidth, GB/s. */
    d2hGBps: number;
    /** GPU kernel reading host-mapped memory, GB/s. */
    zeroCopyGBps: number;
    driver?: string;
    computeCapability?: string;
  };
  host: {
    ramBytes: number;
    availableRamBytes: number;
    /** CPU reading RAM with all cores, GB/s. */
    ramGBps: number;
    cpuCores: number;
    cpuName?: string;
    /** Sustained matrix throughput of all cores for quantized matmul, GFLOP/s. */
    cpuGflops: number;
  };
  disk: { readGBps: number };
  /** Raw measurements when source is `bench`. */
  measured?: Record<string, Measured>;
  /**
   * Every device a model can be split over (issue 19): all local GPUs (the first is `gpu`) and the
   * devices of remote llama.cpp rpc-servers. Absent or one local GPU: single-device planning.
   */
  devices?: DeviceInfo[];
}

/** One device of a multi-device machine or cluster (issue 19, engine/hardware/nodes.ts). */
export interface DeviceInfo {
  /** Stable id: `gpu0`, `gpu1` (local), `rpc0` (the first device of the first node, in llama.cpp's order). */
  id: string;
  /** `local`: this host's GPU; `rpc`: a device an rpc-server exposes. */
  where: "local" | "rpc";
  /** GPU, or a host's CPU exposed by an rpc-server built without a GPU backend. */
  kind: "gpu" | "cpu";
  name: string;
  totalBytes: number;
  /** Free memory the planner fits against. */
  freeBytes: number;
  /** Memory read bandwidth, GB/s (weights per token). */
  memGBps: number;
  /** Dense matmul throughput, TFLOP/s (prefill). */
  tflops: number;
  /** rpc-server endpoint `host:port` (rpc devices). */
  endpoint?: string;
  /** Device index on its rpc-server. */
  index?: number;
  /** Link from this host: GB/s and round trip, ms (PCIe for local GPUs, the network for rpc). */
  link: { GBps: number; rttMs: number };
}

/** What the run is for; the planner chooses by it. */
export interface Workload {
  /** chat: decode-heavy; rag: prefill-heavy; custom: explicit counts. */
  objective: "chat" | "rag" | "custom";
  promptTokens: number;
  generatedTokens: number;
}

/** Shim settings the planner chooses; turned into SPILLWAY_* variables by the adapters. */
export interface ShimSettings {
  vramBudgetBytes?: number;
  reserveBytes: number;
  minSpillBytes: number;
  hostLimitBytes?: number;
  backing: "auto" | "kmod" | "vmm" | "mapped";
  /** `vram`, `vram+host` or a byte count. */
  report: "vram" | "vram+host" | number;
  placementMapFile?: string;
  log?: "error" | "warn" | "info" | "debug";
}

/** Runtime-neutral settings; each adapter maps what it can express to native flags. */
export interface RuntimeSettings {
  contextLength: number;
  batch: number;
  ubatch: number;
  threads: number;
  /** Transformer layers on the GPU (llama.cpp -ngl); `layerCount + 1` or more means all. */
  gpuLayers: number;
  /** MoE experts of the first N layers on the CPU (llama.cpp -ncmoe). */
  cpuMoeLayers: number;
  /** Tensor overrides (llama.cpp -ot pattern=device). */
  overrideTensors: { pattern: string; device: string }[];
  /** KV cache in host memory (llama.cpp -nkvo). */
  kvOnHost: boolean;
  /** `mmap`: weights paged from the file; `none`: read into (pinned) memory (llama.cpp -lm). */
  loadMode: "mmap" | "none";
  /** Shim applied (LD_PRELOAD), or null. */
  shim: ShimSettings | null;
  /**
   * Hybrid MoE experts (patched llama.cpp, runtimes/llama.cpp/patches/): share of each host-resident
   * block's experts the GPU reads over PCIe during decode while the CPU computes the rest.
   */
  hybridGpuFraction?: number;
  /**
   * How the GPU part of a hybrid split gets its experts: read in place from pinned host memory
   * (absent or `inplace`), or `copy`: copied into VRAM by the copy engine first.
   */
  hybridGpuRead?: "inplace" | "copy";
  /**
   * KV cache element type for K and V (llama.cpp -ctk/-ctv); absent: the runtime's default (f16).
   * Quantized types need flash attention (issue 21, engine/planner/kv_choice.ts).
   */
  kvType?: "f16" | "q8_0" | "q4_0";
  /** Flash attention forced on (llama.cpp -fa on): required by a quantized V cache. */
  flashAttention?: boolean;
  /**
   * llama-server slot cache (issue 21): `--slot-save-path dir` (clients save and restore a slot's
   * KV cache there: POST /slots/0?action=save|restore) and `--cache-reuse reuse` (reuse cached
   * chunks of at least that many tokens through KV shifting; 0 leaves it off).
   */
  slotCache?: { dir: string; reuse: number };
  /** vLLM --gpu-memory-utilization. */
  gpuMemoryUtilization?: number;
  /** vLLM --cpu-offload-gb / accelerate CPU offload, bytes. */
  cpuOffloadBytes?: number;
  /** transformers device_map max_memory (device -> bytes). */
  maxMemory?: Record<string, number>;
  /**
   * Layers split over devices (issue 19): llama.cpp `--rpc endpoints -ts counts -sm layer`, in
   * llama.cpp's device order (rpc devices first, then local GPUs); `tensorSplit[i]` blocks go to
   * `devices[i]` (the last one's count includes the output head).
   */
  split?: { mode: "layer"; devices: string[]; tensorSplit: number[]; rpc: string[] };
  /** vLLM --tensor-parallel-size / --pipeline-parallel-size (issue 19). */
  tensorParallel?: number;
  pipelineParallel?: number;
}

/** Memory a candidate needs per tier, bytes. */
export interface MemoryByTier {
  vram: number;
  host_mapped: number;
  host_cpu: number;
  disk: number;
}

/** One placement strategy the planner considered. */
export interface Candidate {
  /** Stable id, e.g. `all-vram`, `ncmoe-34`, `ngl-14`, `zero-copy`. */
  id: string;
  /** Human label. */
  label: string;
  strategy:
    | "all_vram"
    | "layers_cpu"
    | "experts_cpu"
    | "kv_host"
    | "zero_copy"
    | "native_offload"
    | "combined"
    /** Experts in pinned host memory, decode splitting each block's experts between CPU and GPU zero-copy (patched llama.cpp). */
    | "hybrid"
    /** Layers split over several devices (local GPUs, rpc-server devices), issue 19. */
    | "split";
  fits: boolean;
  /** Why it does not fit, when it does not. */
  misfit?: string;
  memory: MemoryByTier;
  predicted: { prefillTps: number; decodeTps: number; totalSeconds: number };
  settings: RuntimeSettings;
  /** Where each tensor class / layer range lives. */
  placements: { class: TensorClass | "kv_cache" | "compute"; layers?: [number, number]; tier: Tier; bytes: number }[];
  /** Per device of a split (issue 19): its blocks, memory and share of a token's time. */
  devices?: DevicePlacement[];
}

/** What one device holds and costs in a split candidate. */
export interface DevicePlacement {
  /** DeviceInfo id, or `cpu` for this host's CPU. */
  device: string;
  name: string;
  endpoint?: string;
  /** Blocks [first, last] it computes, or null; `output`: it holds the output head. */
  layers: [number, number] | null;
  output: boolean;
  weightBytes: number;
  kvBytes: number;
  computeBytes: number;
  /** weight + KV + compute bytes, against `freeBytes`. */
  totalBytes: number;
  freeBytes: number;
  /** This device's part of one decoded token, ms (its weights and KV read), and the hand-off after it, ms. */
  decodeMs: number;
  transferMs: number;
}

/** The planner's answer: plain JSON; `spillway plan --json` prints it. */
export interface Plan {
  version: 1;
  recipe?: string;
  model: { path: string; architecture: string; quantization: string; bytes: number };
  runtime: string;
  hardware: { name: string; source: HardwareProfile["source"] };
  workload: Workload;
  candidates: Candidate[];
  /** id of the chosen candidate. */
  chosen: string;
  /** Why it was chosen, one or two sentences. */
  reason: string;
  /** Shortcut to the chosen candidate's settings. */
  settings: RuntimeSettings;
  predicted: Candidate["predicted"];
  memory: MemoryByTier;
  /** How the inputs were obtained (e.g. planned from a known shape because the file is absent; hardware source). */
  notes?: string[];
  /** Measured results of autotune, when it ran (candidate id -> tokens/s). */
  measured?: Record<string, { prefillTps: number; decodeTps: number }>;
}

/** What an adapter produces and the launcher runs (never through a shell). */
export interface LaunchSpec {
  argv: string[];
  env: Record<string, string>;
  cwd?: string;
}

/**
 * The roofline cost model: decode is memory-bound (bytes read per token from each tier over that
 * tier's bandwidth), prefill is compute-bound on the GPU plus the weight traffic a micro-batch
 * causes (llama.cpp copying host weights to the GPU, zero-copy reads over PCIe). A handful of
 * efficiency constants, fitted once to measured llama.cpp runs (docs/planner.md), turn spec
 * bandwidths into achieved ones; everything else is bytes, FLOPs and bandwidths.
 *
 * @module
 */
import type { HardwareProfile, Workload } from "../../core/types.ts";
import type { Layout, Unit } from "./layout.ts";
import { cpuLayerCount } from "./layout.ts";
import type { ModelSummary } from "./summary.ts";

/** The fitted constants (see docs/planner.md for the data they were fitted to). */
export interface CostConstants {
  /** Fraction of VRAM bandwidth decode kernels reach. */
  vramEfficiency: number;
  /** Fixed time per decoded token, ms (kernel launches, sampling, synchronization). */
  tokenOverheadMs: number;
  /** Fraction of host RAM bandwidth the CPU's matrix-vector products reach. */
  cpuEfficiency: number;
  /** Per block computed on the CPU, per token, ms: activations GPU -> CPU -> GPU and a sync. */
  cpuHandoffMs: number;
  /** Fraction of the zero-copy bandwidth kernels reading host-mapped weights reach. */
  zeroCopyEfficiency: number;
  /** Fraction of fp16 tensor throughput llama.cpp's prefill matrix products reach with many tokens per matrix. */
  gpuPrefillEfficiency: number;
  /**
   * Tokens per weight matrix at which a prefill matrix product reaches half of that: efficiency is
   * `gpuPrefillEfficiency * n / (n + gemmHalfTokens)` for n tokens multiplying one matrix (the
   * whole micro-batch for dense weights, ~ubatch * used / touched experts for each expert).
   */
  gemmHalfTokens: number;
  /** Per-micro-batch copies of pinned host weights (llama.cpp -lm none), fraction of h2dGBps. */
  pinnedCopyEfficiency: number;
  /** Per-micro-batch copies of pageable (mmap'd) host weights, fraction of h2dGBps. */
  pageableCopyFactor: number;
  /**
   * Speed-up of the CPU part of decode (reading and multiplying weights in host_cpu) when the weights
   * are mmap'd (`-lm mmap`) rather than in the GPU backend's pinned host buffers (`-lm none`). The name
   * is the first explanation, which holds only in part: llama.cpp repacks mmap'd weights for its CPU
   * kernels where it has a layout (AMX for 2-D matmuls of Q4_0/Q4_1/Q8_0/K-quants, AVX2 layouts for
   * Q4_0/Q4_K/IQ4_NL), but not Q8_0 expert tensors on x86 (ggml-cpu/repack.cpp has Q8_0 layouts for
   * ARM and RISC-V only; AMX takes MUL_MAT, not MUL_MAT_ID). The runs the value comes from are Q8_0
   * experts on x86, so their gain has another cause, not yet isolated; the value is measured, not derived.
   * From bench/results/2026-11-22-h200-all-3/results.md (H200, 30B-A3B shape, 12 GiB free): llama.cpp's
   * default (experts of 34 blocks, mmap) decoded 41.23 t/s against 37.99 (`-ncmoe 35 -lm none`) and
   * 37.20 (`-ncmoe 36 -lm none`); less the model's own 34-vs-35/36-block difference that is 1.057x
   * at the same placement, and with the CPU part 65% of the predicted token time that is 1.09x for
   * the CPU part; bench/results/2026-12-06-context (H100, 32k) gives ~1.045x (default 48.23 t/s
   * against `-ncmoe 39 -lm none` 46.99): 1.06, between the two. Applied only where {@link cpuRepacks} holds: the profile carries no CPU-feature
   * field (the probe's avx512/avx2 flags do not reach HardwareProfile), so it is applied for
   * llama.cpp and node-llama-cpp on any CPU not named as non-x86 (ARM, Apple, POWER, RISC-V).
   */
  cpuRepackSpeedup: number;
  /**
   * Decode attention over a quantized KV cache in VRAM (q8_0, q4_0, flash attention), ns per cached
   * token per layer per decoded token: the kernels dequantize every cell, so the cost follows the cell
   * count, not the bytes, and is several times that of reading an f16 cache. From
   * bench/results/2026-12-06-context (H100, 30B-A3B at 32k): -ncmoe 37 with q8_0 KV decoded 39.57 t/s
   * and q4_0 39.00, f16 KV at -ncmoe 39 46.99; less the model's own 2-block difference, quantized
   * cells cost ~4.9 ms per token more than f16 ones over 32.3k cells x 48 layers at the same
   * placement: 3.2 ns, plus f16's own ~0.75 ns, in the model's units (it predicted 1.28x the
   * measured token time there) ~4.5.
   */
  quantizedKvDecodeNsPerCellLayer: number;
  /** Fraction of the CPU's GFLOP/s reached in prefill computed on the CPU. */
  cpuComputeEfficiency: number;
  /** llama.cpp offloads host-weight matmuls to the GPU from this many tokens (GGML_OP_OFFLOAD_MIN_BATCH). */
  opOffloadMinBatch: number;
  /** Tokens per GEMM tile: host-mapped dense weights are read once per tile of tokens. */
  tokenTile: number;
  /**
   * CPU backend (no GPU), fixed time per forward pass, ms: graph build, sampling, the runtime's
   * per-token path. Measured with 1 thread on a 2-core AVX-512 VM (docs/planner.md, CPU overheads).
   */
  cpuTokenOverheadMs: number;
  /** CPU backend, fixed time per prefill micro-batch, ms (batch setup, the prompt's logits). */
  cpuBatchOverheadMs: number;
  /** CPU backend, per block per decoded token, ms: dispatching the block's ~20 ops. */
  cpuLayerOverheadMs: number;
  /** CPU backend, per block per prefill micro-batch, ms (more ops than decode: per-expert matmuls). */
  cpuBatchLayerOverheadMs: number;
  /** CPU backend with more than one thread: waking the thread pool per forward pass, ms. */
  cpuThreadWakeMs: number;
  /** CPU backend, per block per forward pass per extra thread, ms: the barriers between ops. */
  cpuThreadSyncMs: number;
  /** CPU matmul efficiency halves at this matrix width (embedding length): small matrices are overhead bound. */
  cpuGemmHalfWidth: number;
  /** Fixed time per decoded token of runtimes other than llama.cpp, ms, by runtime. */
  runtimeOverheadMs: Record<string, number>;
  /**
   * Scales of the fixed costs (decode: all per-token overheads; prefill: the CPU per-pass costs)
   * measured on this machine by `spillway run` (engine/planner/calibration.ts); 1 when uncalibrated.
   */
  overheadScale?: { decode: number; prefill: number };
}

/** Constants fitted to the H200 reference measurements (docs/planner.md, test/planner_calibration.test.ts). */
export const DEFAULT_CONSTANTS: CostConstants = {
  vramEfficiency: 0.6,
  tokenOverheadMs: 2.2,
  cpuEfficiency: 1.0,
  cpuHandoffMs: 0.15,
  zeroCopyEfficiency: 0.9,
  gpuPrefillEfficiency: 0.2,
  gemmHalfTokens: 256,
  pinnedCopyEfficiency: 1.0,
  pageableCopyFactor: 0.175,
  cpuRepackSpeedup: 1.06,
  quantizedKvDecodeNsPerCellLayer: 4.5,
  cpuComputeEfficiency: 0.65,
  cpuTokenOverheadMs: 0.48,
  cpuBatchOverheadMs: 0.2,
  cpuLayerOverheadMs: 0.03,
  cpuBatchLayerOverheadMs: 0.08,
  cpuThreadWakeMs: 1.0,
  cpuThreadSyncMs: 0.3,
  cpuGemmHalfWidth: 130,
  opOffloadMinBatch: 32,
  tokenTile: 72,
  runtimeOverheadMs: { vllm: 4, transformers: 25, command: 4 },
};

/** How a model routes tokens to experts (default: a trained model's, reaching all experts). */
export interface RoutingModel {
  /**
   * Fraction of a block's experts tokens are ever routed to: 1 for trained models (a 512-token
   * micro-batch then touches practically every expert); about 0.5 for the random-weight synthetic
   * model of the reference runs, whose router prefers a subset (docs/planner.md).
   */
  reach: number;
}

/** Settings the cost depends on. */
export interface CostSettings {
  ubatch: number;
  loadMode: "mmap" | "none";
  /** Runtime name: llama.cpp-family runtimes offload host-weight matmuls per micro-batch. */
  runtime: string;
  /** CPU threads (default: all cores). */
  threads?: number;
}

/**
 * Fixed CPU-backend time per forward pass, seconds: the pass itself, each block's ops, and with
 * more than one thread the pool's wake-up and a barrier per op (which is why a tiny model runs
 * faster on one thread). `baseMs` and `layerMs` are the decode or the prefill figures.
 */
export function cpuPassOverhead(layers: number, threads: number, baseMs: number, layerMs: number, k: CostConstants): number {
  let ms = baseMs + layers * layerMs;
  if (threads > 1) ms += k.cpuThreadWakeMs + layers * k.cpuThreadSyncMs * (threads - 1);
  return ms / 1000;
}

/** A prediction with its parts (seconds). */
export interface Prediction {
  prefillTps: number;
  decodeTps: number;
  totalSeconds: number;
  /** Per decoded token, seconds, by cause. */
  decode: { vram: number; host_mapped: number; host_cpu: number; stream: number; kv: number; overhead: number };
  /** Prefill of the whole prompt, seconds, by cause. */
  prefill: { gpuCompute: number; gpuReads: number; copies: number; cpu: number };
}

const LLAMA_FAMILY = new Set(["llama.cpp", "ollama", "node-llama-cpp"]);

/** True for runtimes built on llama.cpp (CPU layers, op offload, embedding on the CPU). */
export function isLlamaFamily(runtime: string): boolean {
  return LLAMA_FAMILY.has(runtime);
}

/** Runtimes whose mmap'd CPU weights were measured to decode faster than pinned ones (llama.cpp's loader; see cpuRepackSpeedup). */
const REPACKING_RUNTIMES = new Set(["llama.cpp", "node-llama-cpp"]);

/** CPU names that are not x86 (llama.cpp's x86 repack layouts do not apply; ARM's are not modelled). */
const NON_X86_CPU = /\b(arm|aarch64|arm64|neoverse|cortex|graviton|ampere|altra|grace|apple|m[1-9]( pro| max| ultra)?|snapdragon|kunpeng|power[0-9]+|powerpc|ppc64(le)?|risc-?v|loongson)\b/i;

/**
 * True when CPU-computed weights loaded with `loadMode` get the measured mmap gain, so the CPU
 * part of decode runs `cpuRepackSpeedup` times faster: llama.cpp or node-llama-cpp, a GPU (without
 * one there are no pinned host buffers: both load modes repack, and the CPU-only constants were
 * fitted to such runs), mmap'd weights, and an x86 CPU (HardwareProfile has no CPU-feature field:
 * any CPU not named as ARM, Apple, POWER or RISC-V counts as x86 with AVX2 or AVX-512).
 */
export function cpuRepacks(hw: HardwareProfile, runtime: string, loadMode: "mmap" | "none"): boolean {
  return loadMode === "mmap" && hw.gpu !== null && REPACKING_RUNTIMES.has(runtime) && !NON_X86_CPU.test(hw.host.cpuName ?? "");
}

/** Expected fraction of a block's experts a micro-batch of `tokens` touches. */
export function expertsTouched(s: ModelSummary, tokens: number, routing: RoutingModel): number {
  if (s.expertCount === 0) return 1;
  const reach = Math.min(1, Math.max(s.expertFraction, routing.reach));
  // Each token picks expertUsed of the reachable experts; the expected fraction picked at least once.
  return reach * (1 - Math.pow(1 - s.expertFraction / reach, Math.max(1, tokens)));
}

/** Fraction of a unit's bytes read per decoded token. */
function decodeFraction(u: Unit, s: ModelSummary): number {
  if (u.group === "ffn_experts") return s.expertFraction;
  // One row of the embedding per token.
  if (u.group === "embedding") return 1 / Math.max(1, s.vocabSize);
  return 1;
}

/** Parameters computed per token (embedding lookups are not matmuls). */
function activeParams(u: Unit, s: ModelSummary): number {
  if (u.group === "embedding") return 0;
  return u.group === "ffn_experts" ? u.params * s.expertFraction : u.params;
}

/**
 * Predict prefill and decode speed of a layout.
 * @param context tokens in the KV cache at the start of decoding is `workload.promptTokens`.
 */
export function predict(
  s: ModelSummary,
  layout: Layout,
  hw: HardwareProfile,
  settings: CostSettings,
  workload: Workload,
  routing: RoutingModel = { reach: 1 },
  k: CostConstants = DEFAULT_CONSTANTS,
): Prediction {
  const gpu = hw.gpu;
  const llama = isLlamaFamily(settings.runtime);
  const GB = 1e9;
  const cores = Math.max(1, hw.host.cpuCores);
  const threads = Math.max(1, Math.min(settings.threads ?? cores, cores));
  // CPU matmuls: the profile's all-core GFLOP/s, scaled to the threads used and to the matrix
  // width (a 64-wide matrix reaches a quarter of a 2048-wide one's rate on this kind of CPU).
  const width = Math.max(1, s.embeddingLength);
  const cpuFlops = hw.host.cpuGflops * 1e9 * k.cpuComputeEfficiency * (threads / cores) * (width / (width + k.cpuGemmHalfWidth));
  const bw = {
    vram: gpu ? gpu.vramGBps * k.vramEfficiency * GB : 1,
    host_mapped: gpu ? gpu.zeroCopyGBps * k.zeroCopyEfficiency * GB : 1,
    host_cpu: hw.host.ramGBps * k.cpuEfficiency * GB,
    stream: gpu ? gpu.h2dGBps * k.pinnedCopyEfficiency * GB : 1,
  };

  // ---- decode: bytes per token over bandwidth, per tier
  const dec = { vram: 0, host_mapped: 0, host_cpu: 0, stream: 0, kv: 0, overhead: 0 };
  // mmap'd CPU weights decode faster than pinned ones (measured; not the embedding: a row lookup).
  const repack = cpuRepacks(hw, settings.runtime, settings.loadMode) ? k.cpuRepackSpeedup : 1;
  for (const u of layout.units) {
    // Streamed weights are copied whole for every forward pass, not just the used experts.
    if (u.tier === "stream") dec.stream += u.bytes / bw.stream;
    // The CPU reads its weights or computes with them, whichever is slower (compute-bound on few cores).
    else if (u.tier === "host_cpu") {
      dec.host_cpu += Math.max((u.bytes * decodeFraction(u, s)) / bw.host_cpu, (2 * activeParams(u, s)) / cpuFlops) /
        (u.group === "embedding" ? 1 : repack);
    } else dec[u.tier] += (u.bytes * decodeFraction(u, s)) / bw[u.tier];
  }
  const ctxDecode = workload.promptTokens + workload.generatedTokens / 2;
  dec.kv = (ctxDecode * s.kvBytesPerToken) / (layout.kv === "vram" && gpu ? bw.vram : bw.host_cpu);
  const cpuLayers = gpu ? cpuLayerCount(layout) + (layout.kv === "host_cpu" ? s.layerCount : 0) : 0;
  dec.overhead = gpu
    ? (llama ? k.tokenOverheadMs : (k.runtimeOverheadMs[settings.runtime] ?? k.tokenOverheadMs)) / 1000 +
      (cpuLayers * k.cpuHandoffMs) / 1000
    : cpuPassOverhead(s.layerCount, threads, k.cpuTokenOverheadMs, k.cpuLayerOverheadMs, k);
  dec.overhead *= k.overheadScale?.decode ?? 1;
  const decodeSeconds = dec.vram + dec.host_mapped + dec.host_cpu + dec.stream + dec.kv + dec.overhead;

  // ---- prefill: micro-batches of `ubatch` tokens
  const pre = { gpuCompute: 0, gpuReads: 0, copies: 0, cpu: 0 };
  const P = workload.promptTokens;
  const flops = gpu ? gpu.fp16Tflops * 1e12 * k.gpuPrefillEfficiency : 1;
  const pageableBw = gpu ? gpu.h2dGBps * GB * k.pageableCopyFactor : 1;
  const copyBw = gpu ? (settings.loadMode === "none" ? gpu.h2dGBps * GB * k.pinnedCopyEfficiency : pageableBw) : 1;
  // Attention over the cache: 4 FLOPs per (query, key) pair per head dimension, all layers.
  const attnFlopsPerPair = 4 * s.headCount * s.keyLength * s.layerCount;
  let done = 0;
  while (done < P) {
    const n = Math.min(settings.ubatch, P - done);
    const touched = expertsTouched(s, n, routing);
    const attnFlops = attnFlopsPerPair * n * (done + n / 2);
    const offload = gpu !== null && (!llama || n >= k.opOffloadMinBatch);
    let gpuSeconds = 0;
    let gpuFlops = 0;
    // Tokens each weight matrix multiplies: all of them for dense weights, a share for each expert.
    const expertTokens = (n * s.expertFraction) / Math.max(touched, 1e-9);
    const gemm = (tokens: number): number => flops * (tokens / (tokens + k.gemmHalfTokens));
    let gpuReads = 0;
    let copies = 0;
    let cpuSeconds = 0;
    for (const u of layout.units) {
      const f = activeParams(u, s) * 2 * n;
      const fTime = f / gemm(u.group === "ffn_experts" ? expertTokens : n);
      const readFrac = u.group === "ffn_experts" ? touched : u.group === "embedding" ? Math.min(1, n / s.vocabSize) : 1;
      if (u.tier === "vram") {
        gpuSeconds += fTime;
        gpuReads += (u.bytes * readFrac) / bw.vram;
      } else if (u.tier === "host_mapped") {
        gpuSeconds += fTime;
        // The kernels re-read host-mapped weights over PCIe for every tile of tokenTile tokens
        // (a partial tile reads them once): dense weights see all n tokens, each expert about
        // n*used/(count*touched). Once every touched expert gets a tile or more, the bytes read
        // per token stop falling with the micro-batch, unlike llama.cpp's per-micro-batch copies.
        const tokensPerMatrix = u.group === "ffn_experts" ? expertTokens : n;
        gpuReads += (u.bytes * readFrac * Math.max(1, tokensPerMatrix / k.tokenTile)) / bw.host_mapped;
      } else if (u.tier === "stream") {
        gpuSeconds += fTime;
        copies += u.bytes / bw.stream;
      } else if (offload && u.group !== "embedding") {
        // llama.cpp copies host weights (only the experts in use) to the GPU per micro-batch.
        gpuSeconds += fTime;
        copies += (u.bytes * readFrac) / copyBw;
      } else {
        cpuSeconds += Math.max(f / cpuFlops, (u.bytes * readFrac) / bw.host_cpu);
      }
    }
    if (!gpu) {
      cpuSeconds += attnFlops / cpuFlops +
        cpuPassOverhead(s.layerCount, threads, k.cpuBatchOverheadMs, k.cpuBatchLayerOverheadMs, k) * (k.overheadScale?.prefill ?? 1);
    } else {
      // Attention runs on the GPU even with the KV cache in host RAM (llama.cpp -nkvo: the
      // scheduler follows Q, computed from VRAM weights); it then stores the micro-batch's new
      // K and V (F32 activations, twice the F16 cache bytes) into the host cache and copies the
      // cache's first done+n cells back, per micro-batch, through pageable memory.
      gpuFlops += attnFlops;
      if (layout.kv === "host_cpu") copies += ((2 * n + done + n) * s.kvBytesPerToken) / pageableBw;
    }
    const gpuCompute = gpuSeconds + gpuFlops / gemm(n);
    // Kernels are bound by the slower of compute and memory (roofline); copies and CPU work add.
    pre.gpuCompute += gpuCompute;
    pre.gpuReads += Math.max(0, gpuReads - gpuCompute);
    pre.copies += copies;
    pre.cpu += cpuSeconds;
    done += n;
  }
  const prefillSeconds = pre.gpuCompute + pre.gpuReads + pre.copies + pre.cpu;
  return {
    prefillTps: P / prefillSeconds,
    decodeTps: 1 / decodeSeconds,
    totalSeconds: prefillSeconds + workload.generatedTokens * decodeSeconds,
    decode: dec,
    prefill: pre,
  };
}

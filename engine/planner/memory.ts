/**
 * Memory fit: what a layout needs in VRAM (weights, KV cache, compute buffers, the staging copy
 * of host weights llama.cpp makes per micro-batch) and in host RAM, against what the machine and
 * the recipe's caps allow.
 *
 * @module
 */
import type { HardwareProfile, MemoryByTier } from "../../core/types.ts";
import { formatBytes } from "../../core/bytes.ts";
import type { Layout } from "./layout.ts";
import { weightBytesByTier } from "./layout.ts";
import type { ModelSummary } from "./summary.ts";

/**
 * Default VRAM kept free: CUDA context, cuBLAS workspace, fragmentation. Bracketed by two H200 runs
 * at 12 GiB free: -ncmoe 34 -ub 2048 fits at a 2.3k context (needs 11.16 GiB) and runs out of
 * memory at a 4.4k context (11.4 GiB), so the reserve lies between 0.6 and 0.84 GiB.
 */
export const DEFAULT_RESERVE = 768 * 2 ** 20;
/** Most of the available host RAM a plan may use. */
export const HOST_FRACTION = 0.9;

/**
 * Compute buffer of one micro-batch, bytes. llama.cpp sizes it for the worst graph of `ubatch`
 * tokens, reusing memory between phases of the graph: the activations live throughout
 * (`ubatch * 4 * (6 * embedding + 2 * ffnActiveWidth)`: a handful of embedding-wide F32 tensors
 * plus the gate and up products of the dense FFN or of the used experts), and on top of them
 * the larger of the F32 logits (`ubatch * vocab * 4`) and the copy of one block's host weights
 * that llama.cpp stages on the GPU per micro-batch (`stagingBytes`). For Qwen3-30B-A3B: 0.36 GB
 * at ubatch 512 (llama.cpp reports ~300 MiB), 1.45 GB at ubatch 2048.
 */
export function computeBufferBytes(s: ModelSummary, ubatch: number, stagingBytes = 0): number {
  return ubatch * 4 * (6 * s.embeddingLength + 2 * s.ffnActiveWidth) + Math.max(ubatch * 4 * s.vocabSize, stagingBytes);
}

/** KV cache bytes for `context` tokens (F16 cache). */
export function kvCacheBytes(s: ModelSummary, context: number): number {
  return context * s.kvBytesPerToken;
}

/** The limits a layout must fit in. */
export interface MemoryLimits {
  /** VRAM the plan may use, bytes (free VRAM, or the recipe's cap if lower). */
  vram: number;
  /** VRAM kept free on top of the plan. */
  reserve: number;
  /** Host RAM the plan may use, bytes. */
  host: number;
}

/** Limits from hardware and recipe caps. */
export function memoryLimits(hw: HardwareProfile, caps: { vramCap?: number; ramCap?: number; reserve?: number }): MemoryLimits {
  const free = hw.gpu?.freeVramBytes ?? 0;
  return {
    vram: caps.vramCap !== undefined ? Math.min(free, caps.vramCap) : free,
    reserve: hw.gpu ? (caps.reserve ?? DEFAULT_RESERVE) : 0,
    host: Math.min(hw.host.availableRamBytes * HOST_FRACTION, caps.ramCap ?? Infinity),
  };
}

/** Memory one layout needs. */
export interface MemoryNeed {
  memory: MemoryByTier;
  kvBytes: number;
  computeBytes: number;
  /** VRAM compute buffer, including the staging below. */
  /** VRAM staging for host weights llama.cpp copies per micro-batch (largest block's host weights). */
  stagingBytes: number;
}

/** What `layout` needs with `context` tokens and micro-batches of `ubatch`. */
export function memoryNeed(
  s: ModelSummary,
  layout: Layout,
  opts: { context: number; ubatch: number; gpu: boolean; opOffload: boolean },
): MemoryNeed {
  const memory = weightBytesByTier(layout);
  const kvBytes = kvCacheBytes(s, opts.context);
  let stagingBytes = 0;
  if (opts.gpu && opts.opOffload) {
    const perLayer = new Map<number, number>();
    for (const u of layout.units) {
      if (u.tier === "host_cpu" && u.layer !== null) perLayer.set(u.layer, (perLayer.get(u.layer) ?? 0) + u.bytes);
    }
    // The output head, when on the CPU, is copied alone.
    const out = layout.units.filter((u) => u.tier === "host_cpu" && u.group === "output").reduce((a, u) => a + u.bytes, 0);
    stagingBytes = Math.max(out, ...perLayer.values(), 0);
  }
  const computeBytes = computeBufferBytes(s, opts.ubatch, stagingBytes);
  if (opts.gpu) {
    memory.vram += computeBytes;
    if (layout.kv === "vram") memory.vram += kvBytes;
    else memory.host_cpu += kvBytes;
  } else {
    memory.host_cpu += kvBytes + computeBytes;
  }
  return { memory, kvBytes, computeBytes, stagingBytes };
}

/** Why `need` does not fit `limits`, or null when it fits. */
export function misfit(need: MemoryByTier, limits: MemoryLimits, gpu: boolean): string | null {
  if (gpu && need.vram + limits.reserve > limits.vram) {
    return `needs ${formatBytes(need.vram)} VRAM + ${formatBytes(limits.reserve)} reserve > ${formatBytes(limits.vram)} available`;
  }
  const host = need.host_cpu + need.host_mapped;
  if (host > limits.host) {
    return `needs ${formatBytes(host)} host RAM > ${formatBytes(limits.host)} usable (${Math.round(HOST_FRACTION * 100)}% of available or the recipe's ramCap)`;
  }
  return null;
}

/**
 * The hybrid strategy (issue 22, runtimes/llama.cpp/patches/): the routed experts of the first N
 * blocks live in pinned host memory as with `-ncmoe N -lm none`, but for one-token batches (decode)
 * each token's selected experts are split: the first m of its k are read by the GPU over PCIe
 * (zero-copy), the rest computed by the CPU, both at the same time (share f = m / k).
 * Prefill batches take the stock path (weights copied to the GPU per micro-batch), so prefill is
 * that of the `-ncmoe N -lm none` candidate. Only the blocks the runtime splits (its adapter's
 * `hybridBlocks`: plain gated experts for llama.cpp) count; the others keep the CPU's time.
 *
 * The split comes from measured rates: the CPU's RAM rate and the GPU's zero-copy rate (the cost
 * model's tiers), each scaled by what it keeps while the other path reads too (the concurrent tier
 * figure of `spillway bench`). The GPU share that balances both parts is `gpu / (cpu + gpu)`; at a
 * share f a block's expert reads take the longer part plus what the overlap does not hide of the
 * shorter, instead of `bytes / cpu`; a plan takes the multiple of 1/k (k experts per token) on either
 * side of the balance that predicts the shorter token, and is kept only where it beats the others.
 * Without a measured concurrent figure the strategy is not proposed (a note says why). Where the
 * probe also measured the copy engine (its copy passes), a second variant has the GPU part's experts
 * copied into VRAM first (`hybridGpuRead: "copy"`), with the copy engine's rate in place of the
 * kernels' read rate; the faster variant wins. The split's constants (overlap loss, per-block
 * overhead) were measured on the in-place variant and are applied to both: they predict the copy
 * mode's GPU run (bench/results/2026-12-07-hybrid-copy) within 1-5%.
 *
 * @example
 * const rates = hybridRates(profile); // null without `spillway bench`'s concurrent figure
 * if (rates) console.log(`balance at GPU share ${rates.balance.toFixed(2)}`); // e.g. 0.42
 * @module
 */
import type { Candidate, HardwareProfile } from "../../core/types.ts";
import { measuredOverlapGains } from "../hardware/measure/profile.ts";
import type { Evaluated, PlanContext } from "./candidates.ts";
import { type CostConstants, DEFAULT_CONSTANTS } from "./cost.ts";
import type { ModelSummary } from "./summary.ts";

/**
 * Constants of the hybrid split. `layerOverheadMs` and `overlapLoss` are measured on the version
 * shipped (split by place in the top-k list) on an H100 machine with Qwen3-30B-A3B Q8_0 at -ncmoe 36
 * (bench/results/2026-12-07-hybrid-topk): with the overlap off a token took 1.0 ms more than its two
 * parts (0.028 ms per hybrid block); with it on, 27% of the shorter part stayed on the token's
 * critical path (DRAM shared by both readers, the wait for the sum). `kernelEfficiency` stays 1.0:
 * the GPU part's kernels are llama.cpp's own one-token kernels on mapped memory, which the shim's
 * zero-copy runs calibrate (`zeroCopyEfficiency`, 0.9), and the expert-id version read at 0.94 of the
 * probe (bench/results/2026-12-06-hybrid). The 2026-12-07 machine read at ~23 GB/s, half the usual
 * probe figure; that machine was not probed, so whether its link or the kernels were slow is open
 * (docs/planner.md).
 */
export interface HybridConstants {
  /**
   * Per hybrid block per decoded token, ms: the extra launch of the GPU part and the copy of its
   * output to the CPU, where the two parts are summed.
   */
  layerOverheadMs: number;
  /** Fraction of the zero-copy rate the GPU part's one-token expert kernels reach. */
  kernelEfficiency: number;
  /** Fraction of the shorter part's time the overlap does not hide. */
  overlapLoss: number;
}

/** {@link HybridConstants} as measured (see above). */
export const HYBRID_CONSTANTS: HybridConstants = { layerOverheadMs: 0.028, kernelEfficiency: 1.0, overlapLoss: 0.27 };

/**
 * How the GPU part gets its experts: read from pinned host memory in place by the kernels (zero-copy),
 * or copied into VRAM by the copy engine first (the patched build's `LLAMA_MOE_HYBRID_GPU_READ=copy`).
 */
export type HybridGpuRead = "inplace" | "copy";

/** Rates of the two paths while both read, and the GPU share that balances them. */
export interface HybridRates {
  /** How the GPU part reads its experts. */
  read: HybridGpuRead;
  /** GB/s the CPU computes host experts at while the GPU reads too. */
  cpuGBps: number;
  /** GB/s the GPU reads host experts at while the CPU reads too. */
  gpuGBps: number;
  /** The two paths' balance point, `gpu / (cpu + gpu)` (0..1); a plan takes a multiple of 1/k near it. */
  balance: number;
  /** Where the figures come from, for the plan's explanation. */
  source: string;
}

/**
 * The hybrid rates of a machine, or null when its profile has no GPU or no concurrent figure
 * (`profile.measured.concurrentCpuGBps` / `concurrentGpuGBps`, written by `spillway bench`). The GPU
 * part's rate is `concurrentGpuQ8AloneGBps` (the probe reading with llama.cpp's Q8_0 load pattern)
 * where measured, else the zero-copy tier times `zeroCopyEfficiency` and `kernelEfficiency`; either
 * times what the GPU keeps while the CPU reads too.
 */
export function hybridRates(hw: HardwareProfile, k: CostConstants = DEFAULT_CONSTANTS, h: HybridConstants = HYBRID_CONSTANTS): HybridRates | null {
  const m = hw.measured;
  const g = hw.gpu;
  if (!g || !m?.concurrentCpuGBps || !m.concurrentGpuGBps) return null;
  const cpuAlone = m.concurrentCpuAloneGBps?.median ?? m.concurrentCpuGBps.median;
  const gpuAlone = m.concurrentGpuAloneGBps?.median ?? m.concurrentGpuGBps.median;
  const keepCpu = Math.min(1, m.concurrentCpuGBps.median / cpuAlone);
  const keepGpu = Math.min(1, m.concurrentGpuGBps.median / gpuAlone);
  const cpu = hw.host.ramGBps * k.cpuEfficiency * keepCpu;
  // Where the probe also read host memory the way llama.cpp's one-token Q8_0 kernels do (16-bit loads
  // of 34-byte blocks), that rate is the GPU part's; otherwise the zero-copy tier with its efficiencies.
  const q8 = m.concurrentGpuQ8AloneGBps?.median;
  const gpu = q8 !== undefined ? q8 * keepGpu : g.zeroCopyGBps * k.zeroCopyEfficiency * h.kernelEfficiency * keepGpu;
  const gain = measuredOverlapGains(m)?.zeroCopy;
  return rates("inplace", cpu, gpu,
    `concurrent probe: CPU keeps ${(keepCpu * 100).toFixed(0)}% and GPU zero-copy ${(keepGpu * 100).toFixed(0)}% of their rates while both read` +
      (gain !== undefined ? ` (${bound(gain)})` : "") +
      (q8 !== undefined ? `; llama.cpp's Q8_0 kernels read host memory at ${q8.toFixed(1)} GB/s (${((q8 / gpuAlone) * 100).toFixed(0)}% of a plain read)` : ""));
}

/** {@link HybridRates} from the two parts' rates; the balance follows from them. */
function rates(read: HybridGpuRead, cpuGBps: number, gpuGBps: number, source: string): HybridRates {
  return { read, cpuGBps, gpuGBps, balance: gpuGBps / (cpuGBps + gpuGBps), source };
}

/**
 * The hybrid rates with the GPU part's experts copied into VRAM by the copy engine, or null when the
 * profile lacks the probe's copy figures (`measured.concurrentCopyGBps` / `concurrentCpuWithCopyGBps`,
 * written by `spillway bench` since the probe has its copy passes). The GPU part's rate is the copy
 * engine's while the CPU reads too (its kernels then read VRAM, ~50x faster than the copy); the CPU
 * part's is the cost model's RAM rate times what the CPU keeps while the copy engine reads RAM.
 */
export function hybridCopyRates(hw: HardwareProfile, k: CostConstants = DEFAULT_CONSTANTS): HybridRates | null {
  const m = hw.measured;
  if (!hw.gpu || !m?.concurrentCopyGBps || !m.concurrentCpuWithCopyGBps) return null;
  const cpuAlone = m.concurrentCpuAloneGBps?.median ?? m.concurrentCpuWithCopyGBps.median;
  const keepCpu = Math.min(1, m.concurrentCpuWithCopyGBps.median / cpuAlone);
  const cpu = hw.host.ramGBps * k.cpuEfficiency * keepCpu;
  const gpu = m.concurrentCopyGBps.median;
  const gain = measuredOverlapGains(m)?.copy;
  return rates("copy", cpu, gpu,
    `concurrent probe: the copy engine moves ${gpu.toFixed(1)} GB/s to VRAM while the CPU reads, the CPU keeps ${(keepCpu * 100).toFixed(0)}% of its rate` +
      (gain !== undefined ? ` (${bound(gain)})` : ""));
}

/** What the probe allows a split at best: both paths together over the faster alone. */
function bound(gain: number): string {
  return `together ${gain.toFixed(2)}x the faster path alone, the most a split can gain in reading host memory`;
}

/**
 * Host expert bytes read per decoded token by the CPU in a layout (experts on host_cpu, by block),
 * of the blocks the split runs in (`splittable`); `left` lists the host blocks it does not.
 */
function hostExpertBytesPerToken(e: Evaluated, s: ModelSummary, splittable: ReadonlySet<number>): { bytes: number; blocks: number; left: number[] } {
  const blocks = new Set<number>();
  const left = new Set<number>();
  let bytes = 0;
  for (const u of e.layout.units) {
    if (u.group !== "ffn_experts" || u.tier !== "host_cpu" || u.layer === null) continue;
    if (!splittable.has(u.layer)) {
      left.add(u.layer);
      continue;
    }
    bytes += u.bytes * s.expertFraction;
    blocks.add(u.layer);
  }
  return { bytes, blocks: blocks.size, left: [...left].sort((a, b) => a - b) };
}

/** Why the split leaves these host blocks to the CPU, for a plan's label ("" when none are left). */
function leftNote(ctx: PlanContext, left: readonly number[]): string {
  if (left.length === 0) return "";
  const reasons = ctx.hybridBlocks.excluded.filter((x) => x.blocks.some((b) => left.includes(b))).map((x) => x.reason);
  return `; the experts of block${left.length > 1 ? "s" : ""} ${blockRanges(left)} stay on the CPU alone (${reasons.join("; ")})`;
}

/**
 * The hybrid variant of a fitting `-ncmoe N -lm none` candidate (pinned host experts), or null when
 * the candidate is not one or has no host experts. Memory and prefill are the base candidate's.
 */
export function hybridOf(ctx: PlanContext, base: Evaluated, rates: HybridRates, h: HybridConstants = HYBRID_CONSTANTS): Evaluated | null {
  const c = base.candidate;
  if (c.strategy !== "experts_cpu" || c.settings.loadMode !== "none" || c.settings.kvOnHost || !c.fits) return null;
  const { bytes, blocks, left } = hostExpertBytesPerToken(base, ctx.summary, new Set(ctx.hybridBlocks.blocks));
  if (bytes <= 0 || blocks === 0) return null;
  const k = ctx.constants;
  const GB = 1e9;
  // The cost model's time for these reads on the CPU alone, and with the split (both at once).
  const cpuOnly = bytes / (ctx.hw.host.ramGBps * k.cpuEfficiency * GB);
  // The share is m / k, the GPU computing the first m of each token's k selected experts: the two
  // multiples of 1/k around the balance point, whichever predicts the shorter token. (The patched build
  // also runs shares between them, splitting a boundary expert's rows (patch 0008); plans do not use
  // that until it is measured on a GPU machine: bench/matrices/hybrid-rows-12g.json5.)
  const used = ctx.summary.expertUsedCount;
  if (used < 2) return null;
  const splitSeconds = (share: number) => {
    const cpu = (bytes * (1 - share)) / (rates.cpuGBps * GB);
    const gpu = (bytes * share) / (rates.gpuGBps * GB);
    return Math.max(cpu, gpu) + h.overlapLoss * Math.min(cpu, gpu) + (blocks * h.layerOverheadMs) / 1000;
  };
  const shares = [Math.floor(rates.balance * used), Math.ceil(rates.balance * used)]
    .map((m) => Math.min(used - 1, Math.max(1, m)) / used);
  const f = shares.reduce((best, x) => (splitSeconds(x) < splitSeconds(best) ? x : best));
  const gpuExperts = Math.round(f * used);
  const split = splitSeconds(f);
  const p = base.prediction;
  const decodeSeconds = 1 / p.decodeTps - cpuOnly + split;
  if (!(decodeSeconds > 0)) return null;
  const prefillSeconds = ctx.workload.promptTokens / p.prefillTps;
  const totalSeconds = prefillSeconds + ctx.workload.generatedTokens * decodeSeconds;
  const n = c.settings.cpuMoeLayers;
  const copy = rates.read === "copy";
  // The patched build's launch thread (patch 0004) needs a core of its own: with every core computing,
  // the woken helper ran on the computing thread's core and ~2.9 ms per token went nowhere; with one
  // core free, 0.2 ms (bench/results/2026-12-07-hybrid-threads). The prediction stays the base's: the
  // CPU part's time at 15 threads (15.1 and 17.8 ms) and at 16 (15.9 and 16.4) differed within noise.
  const threads = hybridThreads(c.settings.threads, ctx.hw.host.cpuCores);
  const candidate: Candidate = {
    ...c,
    id: `hybrid-${copy ? "copy-" : ""}${n}-ub${c.settings.ubatch}`,
    label: `experts of ${n} of ${ctx.summary.layerCount} blocks in pinned host memory; decode splits each token's experts, ` +
      `${gpuExperts} of its ${used} ${copy ? "copied to VRAM and computed by the GPU" : "read by the GPU over PCIe"} and ` +
      `${used - gpuExperts} computed by the CPU at the same time ` +
      `(${rates.gpuGBps.toFixed(0)} + ${rates.cpuGBps.toFixed(0)} GB/s) by ${threads} thread${threads > 1 ? "s" : ""}` +
      `${threads < c.settings.threads ? " (a core left for the launch thread)" : ""}${leftNote(ctx, left)}; prefill as ${c.id} (ub ${c.settings.ubatch}; patched llama.cpp)`,
    strategy: "hybrid",
    settings: { ...c.settings, threads, hybridGpuFraction: +f.toFixed(4), ...(copy ? { hybridGpuRead: "copy" as const } : {}) },
    predicted: { prefillTps: c.predicted.prefillTps, decodeTps: +(1 / decodeSeconds).toPrecision(4), totalSeconds: +totalSeconds.toPrecision(4) },
    placements: c.placements.map((pl) => ({ ...pl, ...(pl.layers ? { layers: [...pl.layers] as [number, number] } : {}) })),
  };
  return {
    candidate,
    layout: base.layout,
    prediction: {
      ...p,
      decodeTps: 1 / decodeSeconds,
      totalSeconds,
      decode: { ...p.decode, host_cpu: p.decode.host_cpu - cpuOnly + split - (blocks * h.layerOverheadMs) / 1000, overhead: p.decode.overhead + (blocks * h.layerOverheadMs) / 1000 },
    },
  };
}

/**
 * Compute threads for a hybrid plan: one fewer than the cores when the plan would use them all, so
 * the scheduler's launch thread has a core of its own (bench/results/2026-12-07-hybrid-threads).
 *
 * @example
 * hybridThreads(16, 16); // 15
 * hybridThreads(8, 16);  // 8
 */
export function hybridThreads(threads: number, cores: number): number {
  return cores > 1 && threads >= cores ? cores - 1 : threads;
}

/**
 * Add the hybrid variants of the ranked candidates (when the runtime can run the patched build and
 * the profile has the concurrent figure), re-ranked; `note` says why none was added, if so.
 */
export function withHybrid(ctx: PlanContext, ranked: Evaluated[]): { ranked: Evaluated[]; note: string | null } {
  if (!ctx.caps.strategies.includes("hybrid") || ctx.hw.gpu === null || ctx.summary.expertCount === 0) return { ranked, note: null };
  if (ctx.hybridBlocks.blocks.length === 0) {
    // The patched build would run every block on the stock path: say why, once.
    const why = ctx.hybridBlocks.excluded.map((x) => x.reason).join("; ");
    return { ranked, note: why ? `hybrid experts not considered: the runtime splits no block of this model (${why})` : null };
  }
  const rates = hybridRates(ctx.hw, ctx.constants);
  const copyRates = hybridCopyRates(ctx.hw, ctx.constants);
  if (!rates) {
    const hasPinnedExperts = ranked.some((e) => e.candidate.strategy === "experts_cpu" && e.candidate.settings.loadMode === "none" && e.candidate.fits);
    return { ranked, note: hasPinnedExperts ? "hybrid experts not considered: the hardware profile has no concurrent figure (run `spillway bench`)" : null };
  }
  // Each read mode the profile has figures for: both variants are candidates, the faster one wins.
  const options = copyRates ? [rates, copyRates] : [rates];
  const extra = options.flatMap((r) => ranked.map((e) => hybridOf(ctx, e, r))).filter((e): e is Evaluated => e !== null);
  const all = [...ranked, ...extra].sort((a, b) =>
    Number(b.candidate.fits) - Number(a.candidate.fits) || a.prediction.totalSeconds - b.prediction.totalSeconds
  );
  const sources = options.map((r) => (options.length > 1 ? `${r.read === "copy" ? "copy" : "in place"}: ` : "") + r.source).join("; ");
  return { ranked: all, note: extra.length > 0 ? `hybrid split from measured rates (${sources})` : null };
}

/**
 * Blocks as short ranges for messages.
 *
 * @example
 * blockRanges([0, 1, 2, 5]); // "0-2, 5"
 */
export function blockRanges(blocks: readonly number[]): string {
  const out: string[] = [];
  for (let i = 0; i < blocks.length;) {
    let j = i;
    while (j + 1 < blocks.length && blocks[j + 1] === blocks[j] + 1) j++;
    out.push(j > i ? `${blocks[i]}-${blocks[j]}` : `${blocks[i]}`);
    i = j + 1;
  }
  return out.join(", ");
}

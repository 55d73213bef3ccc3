/**
 * Candidate placements: build one from a spec (all in VRAM, N layers on the CPU, experts of N
 * blocks on the CPU, KV cache in host memory, zero-copy spill through the shim, the runtime's own
 * offload, CPU only), fit it in memory and predict its speed; and enumerate the specs a runtime
 * can express for a model on a machine.
 *
 * @module
 */
import type { PlacementPolicy } from "../recipe/types.ts";
import type { Candidate, HardwareProfile, RuntimeSettings, ShimSettings, Tier, Workload } from "../../core/types.ts";
import { formatBytes } from "../../core/bytes.ts";
import type { HybridBlocks, RuntimeCapabilities } from "./capabilities.ts";
import { type CostConstants, DEFAULT_CONSTANTS, isLlamaFamily, predict, type Prediction, type RoutingModel } from "./cost.ts";
import type { CostTier, Layout, Unit } from "./layout.ts";
import { splitUnit, unitsOf } from "./layout.ts";
import { computeBufferBytes, kvCacheBytes, type MemoryLimits, memoryNeed, misfit } from "./memory.ts";
import { isMoe, type ModelSummary, type UnitGroup } from "./summary.ts";

/** Everything a candidate is built from. */
export interface PlanContext {
  summary: ModelSummary;
  hw: HardwareProfile;
  runtime: string;
  caps: RuntimeCapabilities;
  context: number;
  batch: number;
  threads: number;
  /** Micro-batch sizes to consider (the recipe's, or 512 and 2048). */
  ubatches: number[];
  workload: Workload;
  placement: PlacementPolicy;
  limits: MemoryLimits;
  routing: RoutingModel;
  constants: CostConstants;
  /** MoE blocks the runtime's hybrid split runs in (its adapter says), and the others with the reason. */
  hybridBlocks: HybridBlocks;
}

/** One placement to evaluate. */
export type CandidateSpec =
  | { kind: "all_vram"; kvOnHost?: boolean; ubatch: number }
  /** `gpuLayers` of the last blocks on the GPU (llama.cpp -ngl; more than the block count includes the output head). */
  | { kind: "layers_cpu"; gpuLayers: number; loadMode: "mmap" | "none"; ubatch: number; kvOnHost?: boolean }
  /** Routed experts of the first `cpuMoeLayers` blocks on the CPU (llama.cpp -ncmoe). */
  | { kind: "experts_cpu"; cpuMoeLayers: number; loadMode: "mmap" | "none"; ubatch: number; kvOnHost?: boolean }
  /**
   * Zero-copy spill through the shim. `dense-first`: output, attention and dense FFN stay in VRAM,
   * experts (then FFN of the last blocks) spill; `allocation`: llama.cpp's allocation order
   * (output head, then blocks 0..n) split at `vramWeightBytes`, as a shim without a placement map does.
   */
  | { kind: "zero_copy"; ubatch: number; order?: "dense-first" | "allocation"; vramWeightBytes?: number }
  /** The runtime's own offload of `offloadBytes` of weights (vLLM --cpu-offload-gb, accelerate). */
  | { kind: "native_offload"; ubatch: number }
  | { kind: "cpu_only"; ubatch: number };

/** A candidate with its layout and the parts of its prediction. */
export interface Evaluated {
  candidate: Candidate;
  layout: Layout;
  prediction: Prediction;
}

const SHIM_MIN_SPILL = 32 * 2 ** 20;

function llamaEmbeddingTier(ctx: PlanContext): CostTier {
  // llama.cpp always keeps the input embedding on the CPU (only one row per token is read).
  return isLlamaFamily(ctx.runtime) || ctx.hw.gpu === null ? "host_cpu" : "vram";
}

function forcedCpu(ctx: PlanContext, layer: number | null): boolean {
  return layer !== null && isLlamaFamily(ctx.runtime) && ctx.placement.cpuLayers.includes(layer);
}

function baseSettings(ctx: PlanContext, ubatch: number): RuntimeSettings {
  const s: RuntimeSettings = {
    contextLength: ctx.context,
    batch: Math.max(ctx.batch, ubatch),
    ubatch,
    threads: ctx.threads,
    gpuLayers: ctx.hw.gpu ? ctx.summary.layerCount + 1 : 0,
    cpuMoeLayers: 0,
    overrideTensors: [],
    kvOnHost: false,
    loadMode: "mmap",
    shim: null,
  };
  if (ctx.placement.cpuLayers.length > 0 && isLlamaFamily(ctx.runtime)) {
    s.overrideTensors.push({ pattern: `blk\\.(${ctx.placement.cpuLayers.join("|")})\\.`, device: "CPU" });
  }
  return s;
}

/** Build the layout of a spec (no fit check). */
export function layoutFor(ctx: PlanContext, spec: CandidateSpec): Layout {
  const s = ctx.summary;
  const L = s.layerCount;
  const emb = llamaEmbeddingTier(ctx);
  const kv: Layout["kv"] = "kvOnHost" in spec && spec.kvOnHost ? "host_cpu" : ctx.hw.gpu ? "vram" : "host_cpu";
  const tier = (f: (g: UnitGroup, l: number | null) => CostTier) => (g: UnitGroup, l: number | null): CostTier =>
    g === "embedding" ? emb : forcedCpu(ctx, l) ? "host_cpu" : f(g, l);
  switch (spec.kind) {
    case "all_vram":
      return { units: unitsOf(s, tier(() => "vram")), kv };
    case "cpu_only":
      return { units: unitsOf(s, () => "host_cpu"), kv: "host_cpu" };
    case "layers_cpu": {
      const first = Math.max(0, L - spec.gpuLayers);
      return {
        units: unitsOf(s, tier((g, l) => (g === "output" ? (spec.gpuLayers > L ? "vram" : "host_cpu") : l! < first ? "host_cpu" : "vram"))),
        kv,
      };
    }
    case "experts_cpu":
      return { units: unitsOf(s, tier((g, l) => (g === "ffn_experts" && l! < spec.cpuMoeLayers ? "host_cpu" : "vram"))), kv };
    case "zero_copy":
      return zeroCopyLayout(ctx, spec, emb);
    case "native_offload":
      return nativeOffloadLayout(ctx, spec);
  }
}

/** VRAM left for weights after KV, compute buffers and the reserve. */
function weightBudget(ctx: PlanContext, ubatch: number, kvInVram: boolean): number {
  const kvb = kvInVram ? kvCacheBytes(ctx.summary, ctx.context) : 0;
  return Math.max(0, ctx.limits.vram - ctx.limits.reserve - kvb - computeBufferBytes(ctx.summary, ubatch));
}

function zeroCopyLayout(ctx: PlanContext, spec: Extract<CandidateSpec, { kind: "zero_copy" }>, emb: CostTier): Layout {
  const s = ctx.summary;
  let budget = spec.vramWeightBytes ?? weightBudget(ctx, spec.ubatch, true);
  const all = unitsOf(s, (g) => (g === "embedding" ? emb : "vram"));
  const gpuUnits = all.filter((u) => u.group !== "embedding" || emb === "vram");
  const rest = all.filter((u) => !gpuUnits.includes(u));
  let order: Unit[];
  if (spec.order === "allocation") {
    order = [...gpuUnits.filter((u) => u.group === "output"), ...gpuUnits.filter((u) => u.group !== "output")];
  } else {
    // Dense tensors read for every token first; routed experts (read 1/16 or so per token) next;
    // the token embedding (one row read per token: a gathered table) last, so it spills first
    // (engine/planner/placement_map.ts writes the shim's map in the same order); for dense models
    // the FFN of the last blocks spills after it.
    const rank = (u: Unit): number => (u.group === "output" ? 0 : u.group === "attention" ? 1 : u.group === "ffn_dense" ? 2 : u.group === "embedding" ? 4 : 3);
    order = [...gpuUnits].sort((a, b) => rank(a) - rank(b) || (rank(a) === 2 ? (a.layer ?? 0) - (b.layer ?? 0) : 0));
  }
  const units: Unit[] = [];
  for (const u of order) {
    const parts = splitUnit(u, Math.min(u.bytes, budget), "host_mapped");
    budget -= Math.min(u.bytes, budget);
    units.push(...parts);
  }
  return { units: [...units, ...rest], kv: "vram" };
}

function nativeOffloadLayout(ctx: PlanContext, spec: Extract<CandidateSpec, { kind: "native_offload" }>): Layout {
  const s = ctx.summary;
  let budget = weightBudget(ctx, spec.ubatch, true);
  // vLLM and accelerate offload whole modules from the last blocks backwards; bytes matter, not order.
  const units: Unit[] = [];
  for (const u of unitsOf(s, () => "vram")) {
    const take = Math.min(u.bytes, budget);
    budget -= take;
    units.push(...splitUnit(u, take, "stream"));
  }
  return { units, kv: "vram" };
}

function placementsOf(layout: Layout, kvBytes: number, computeBytes: number, gpu: boolean): Candidate["placements"] {
  const out: Candidate["placements"] = [];
  const toTier = (t: CostTier): Tier => (t === "stream" ? "host_cpu" : t);
  const order: UnitGroup[] = ["attention", "ffn_dense", "ffn_experts", "output", "embedding"];
  const units = [...layout.units].sort((a, b) =>
    order.indexOf(a.group) - order.indexOf(b.group) || (a.layer ?? 0) - (b.layer ?? 0)
  );
  // One entry per class and tier over a contiguous range of blocks.
  for (const u of units) {
    const tier = toTier(u.tier);
    const last = out[out.length - 1];
    if (last && last.class === u.group && last.tier === tier) {
      if (u.layer === null || (last.layers && last.layers[1] >= u.layer - 1)) {
        if (last.layers && u.layer !== null) last.layers[1] = u.layer;
        last.bytes += u.bytes;
        continue;
      }
    }
    out.push(u.layer === null ? { class: u.group, tier, bytes: u.bytes } : { class: u.group, layers: [u.layer, u.layer], tier, bytes: u.bytes });
  }
  out.push({ class: "kv_cache", tier: layout.kv === "vram" && gpu ? "vram" : "host_cpu", bytes: kvBytes });
  out.push({ class: "compute", tier: gpu ? "vram" : "host_cpu", bytes: computeBytes });
  return out;
}

function idAndLabel(ctx: PlanContext, spec: CandidateSpec, layout: Layout): { id: string; label: string; strategy: Candidate["strategy"] } {
  const ub = `ub${spec.ubatch}`;
  const kvh = "kvOnHost" in spec && spec.kvOnHost;
  const kvSuffix = kvh ? "+kv-host" : "";
  const kvText = kvh ? ", KV cache in host RAM" : "";
  switch (spec.kind) {
    case "all_vram":
      return kvh
        ? { id: `kv-host-${ub}`, label: `all weights in VRAM, KV cache in host RAM (ub ${spec.ubatch})`, strategy: "kv_host" }
        : { id: `all-vram-${ub}`, label: `everything in VRAM (ub ${spec.ubatch})`, strategy: "all_vram" };
    case "cpu_only":
      return { id: `cpu-only-${ub}`, label: "everything on the CPU", strategy: "layers_cpu" };
    case "layers_cpu":
      return {
        id: `ngl-${spec.gpuLayers}-${spec.loadMode}-${ub}${kvSuffix}`,
        label: `${ctx.summary.layerCount - Math.min(spec.gpuLayers, ctx.summary.layerCount)} of ${ctx.summary.layerCount} blocks on the CPU (${spec.loadMode === "none" ? "pinned" : "mmap"}, ub ${spec.ubatch}${kvText})`,
        strategy: kvh ? "combined" : "layers_cpu",
      };
    case "experts_cpu":
      return {
        id: `ncmoe-${spec.cpuMoeLayers}-${spec.loadMode}-${ub}${kvSuffix}`,
        label: `experts of ${spec.cpuMoeLayers} of ${ctx.summary.layerCount} blocks on the CPU (${spec.loadMode === "none" ? "pinned" : "mmap"}, ub ${spec.ubatch}${kvText})`,
        strategy: kvh ? "combined" : "experts_cpu",
      };
    case "zero_copy": {
      const spilled = layout.units.filter((u) => u.tier === "host_mapped").reduce((a, u) => a + u.bytes, 0);
      return {
        id: `zero-copy-${spec.order === "allocation" ? "alloc-" : ""}${ub}`,
        label: `zero-copy: ${formatBytes(spilled)} of ${spec.order === "allocation" ? "weights (allocation order)" : isMoe(ctx.summary) ? "experts" : "FFN weights"} read over PCIe (ub ${spec.ubatch})`,
        strategy: "zero_copy",
      };
    }
    case "native_offload": {
      const off = layout.units.filter((u) => u.tier === "stream").reduce((a, u) => a + u.bytes, 0);
      return { id: `offload-${ub}`, label: `${ctx.runtime} offloads ${formatBytes(off)} to host RAM, copied per forward pass`, strategy: "native_offload" };
    }
  }
}

/** Build, fit and predict one candidate. */
export function evaluate(ctx: PlanContext, spec: CandidateSpec): Evaluated {
  const gpu = ctx.hw.gpu !== null;
  const layout = layoutFor(ctx, spec);
  const loadMode = "loadMode" in spec ? spec.loadMode : "mmap";
  const opOffload = isLlamaFamily(ctx.runtime) && spec.ubatch >= ctx.constants.opOffloadMinBatch;
  const need = memoryNeed(ctx.summary, layout, { context: ctx.context, ubatch: spec.ubatch, gpu, opOffload });
  const reason = misfit(need.memory, ctx.limits, gpu);
  const prediction = predict(
    ctx.summary,
    layout,
    ctx.hw,
    { ubatch: spec.ubatch, loadMode, runtime: ctx.runtime, threads: ctx.threads },
    ctx.workload,
    ctx.routing,
    ctx.constants,
  );
  const settings = baseSettings(ctx, spec.ubatch);
  settings.loadMode = loadMode;
  settings.kvOnHost = layout.kv === "host_cpu" && gpu;
  if (spec.kind === "layers_cpu") settings.gpuLayers = spec.gpuLayers;
  if (spec.kind === "experts_cpu") settings.cpuMoeLayers = spec.cpuMoeLayers;
  if (spec.kind === "cpu_only") settings.gpuLayers = 0;
  if (spec.kind === "zero_copy") {
    const vramWeights = layout.units.filter((u) => u.tier === "vram").reduce((a, u) => a + u.bytes, 0);
    const spilled = layout.units.filter((u) => u.tier === "host_mapped").reduce((a, u) => a + u.bytes, 0);
    const shim: ShimSettings = {
      vramBudgetBytes: Math.round(vramWeights),
      // Late allocations (KV cache, compute buffers) must land in VRAM: keep room for them.
      reserveBytes: Math.round(need.kvBytes + need.computeBytes + ctx.limits.reserve),
      minSpillBytes: SHIM_MIN_SPILL,
      hostLimitBytes: Math.round(Math.min(ctx.limits.host, spilled * 1.05 + 2 ** 30)),
      backing: "auto",
      report: "vram+host",
    };
    settings.shim = shim;
  }
  if (spec.kind === "native_offload") {
    const off = layout.units.filter((u) => u.tier === "stream").reduce((a, u) => a + u.bytes, 0);
    settings.cpuOffloadBytes = Math.round(off);
    if (ctx.hw.gpu) {
      const vramUse = need.memory.vram;
      settings.gpuMemoryUtilization = Math.min(0.98, +((vramUse + ctx.limits.reserve) / ctx.hw.gpu.vramBytes).toFixed(3));
      settings.maxMemory = { "0": Math.round(need.memory.vram - need.kvBytes - need.computeBytes), cpu: Math.round(off * 1.05) };
    }
  }
  if (ctx.runtime === "vllm" && spec.kind === "all_vram" && ctx.hw.gpu) {
    settings.gpuMemoryUtilization = Math.min(0.98, +((ctx.limits.vram - ctx.limits.reserve) / ctx.hw.gpu.vramBytes).toFixed(3));
  }
  const { id, label, strategy } = idAndLabel(ctx, spec, layout);
  const candidate: Candidate = {
    id,
    label,
    strategy,
    fits: reason === null,
    memory: need.memory,
    predicted: {
      prefillTps: round(prediction.prefillTps),
      decodeTps: round(prediction.decodeTps),
      totalSeconds: round(prediction.totalSeconds),
    },
    settings,
    placements: placementsOf(layout, need.kvBytes, need.computeBytes, gpu),
  };
  if (reason !== null) candidate.misfit = reason;
  return { candidate, layout, prediction };
}

function round(x: number): number {
  return Number.isFinite(x) ? +x.toPrecision(4) : 0;
}

/** Smallest n in [lo, hi] for which `fits(n)` holds, assuming monotonicity; null when none. */
function smallestFitting(lo: number, hi: number, fits: (n: number) => boolean): number | null {
  if (!fits(hi)) return null;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (fits(mid)) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** The specs `ctx.runtime` can express for this model and machine, best variant of each family. */
export function enumerateSpecs(ctx: PlanContext): CandidateSpec[] {
  const s = ctx.summary;
  const L = s.layerCount;
  const caps = ctx.caps;
  const specs: CandidateSpec[] = [];
  const ub0 = ctx.ubatches[0];
  if (ctx.hw.gpu === null) return [{ kind: "cpu_only", ubatch: ub0 }];
  const kvPolicy = ctx.placement.kv;
  const expertsPolicy = ctx.placement.experts;
  const moe = isMoe(s);
  const kvChoices = (kvPolicy === "host" ? [true] : kvPolicy === "vram" ? [false] : [false, true]).filter((k) => !k || caps.kvOnHost);
  const loadModes = caps.loadModes.includes("none") ? (["none", "mmap"] as const) : (["mmap"] as const);
  const fitsSpec = (spec: CandidateSpec): boolean => evaluate(ctx, spec).candidate.fits;

  if (caps.strategies.includes("all_vram") && expertsPolicy !== "cpu") {
    for (const kvOnHost of kvChoices) {
      if (kvOnHost && !caps.strategies.includes("kv_host")) continue;
      for (const ubatch of ctx.ubatches) specs.push({ kind: "all_vram", kvOnHost, ubatch });
    }
  }
  if (moe && caps.cpuMoeLayers && caps.strategies.includes("experts_cpu") && expertsPolicy !== "vram") {
    for (const kvOnHost of kvChoices) {
      if (kvOnHost && !caps.strategies.includes("combined")) continue;
      for (const loadMode of loadModes) {
        for (const ubatch of ctx.ubatches) {
          const mk = (n: number): CandidateSpec => ({ kind: "experts_cpu", cpuMoeLayers: n, loadMode, ubatch, kvOnHost });
          const n = expertsPolicy === "cpu" ? L : smallestFitting(1, L, (x) => fitsSpec(mk(x)));
          specs.push(mk(n ?? L));
          // All experts on the CPU, as a reference point (the baseline most guides suggest).
          if (n !== null && n < L && loadMode === loadModes[0] && ubatch === ub0 && !kvOnHost) specs.push(mk(L));
        }
      }
    }
  }
  if (caps.gpuLayers && caps.strategies.includes("layers_cpu") && expertsPolicy !== "cpu") {
    for (const kvOnHost of kvChoices) {
      if (kvOnHost && !caps.strategies.includes("combined")) continue;
      for (const loadMode of loadModes) {
        for (const ubatch of ctx.ubatches) {
          const mk = (n: number): CandidateSpec => ({ kind: "layers_cpu", gpuLayers: n, loadMode, ubatch, kvOnHost });
          // Largest number of GPU layers that fits (fewer GPU layers always fit better).
          const cpu = smallestFitting(0, L + 1, (x) => fitsSpec(mk(L + 1 - x)));
          if (cpu === 0 && !kvOnHost) continue; // everything fits: that is all_vram
          specs.push(mk(cpu === null ? 0 : L + 1 - cpu));
        }
      }
    }
  }
  if (caps.shim && caps.strategies.includes("zero_copy") && !(moe && expertsPolicy === "vram") && kvPolicy !== "host") {
    for (const ubatch of ctx.ubatches) specs.push({ kind: "zero_copy", ubatch });
  }
  if (caps.nativeOffload && caps.strategies.includes("native_offload") && kvPolicy !== "host") {
    specs.push({ kind: "native_offload", ubatch: ub0 });
  }
  return specs;
}

/** Default micro-batch sizes the planner considers. */
export const DEFAULT_UBATCHES: readonly number[] = [512, 2048];

export { DEFAULT_CONSTANTS };
export type { PlacementPolicy };

/**
 * The pinned-vs-mmap trade of CPU weights (issue 22) for the reason text, or "" when there is none:
 * the best fitting candidate of the chosen one's kind (same strategy, KV type and location) with
 * the other load mode, when it wins one phase (pinned weights prefill faster: per-micro-batch copies
 * from pinned memory; mmap'd ones decode faster, as measured with llama.cpp, see
 * `cpuRepackSpeedup` in cost.ts). The workload's total time already made the choice.
 */
export function loadModeTradeSentence(chosen: Evaluated, ranked: Evaluated[]): string {
  const c = chosen.candidate;
  if (c.strategy !== "experts_cpu" && c.strategy !== "layers_cpu" && c.strategy !== "combined") return "";
  const o = ranked.find((e) =>
    e.candidate.fits && e.candidate.strategy === c.strategy && e.candidate.settings.loadMode !== c.settings.loadMode &&
    e.candidate.settings.kvOnHost === c.settings.kvOnHost && (e.candidate.settings.kvType ?? "f16") === (c.settings.kvType ?? "f16")
  )?.candidate;
  if (o === undefined) return "";
  const [pinned, mapped] = c.settings.loadMode === "none" ? [c, o] : [o, c];
  const prefill = pinned.predicted.prefillTps / mapped.predicted.prefillTps;
  const decode = mapped.predicted.decodeTps / pinned.predicted.decodeTps;
  // A trade only where each load mode wins its phase (by more than rounding).
  if (!(prefill > 1.005 && decode > 1.005)) return "";
  const pct = `${((decode - 1) * 100).toFixed(0)}%`;
  const x = `${prefill.toFixed(1)}x`;
  const vs = `(${o.id}: ${o.predicted.totalSeconds.toFixed(2)} s per request against ${c.predicted.totalSeconds.toFixed(2)})`;
  return c === pinned
    ? `Pinned CPU weights: prefill ${x} faster; mmap'd ones would decode ${pct} faster ${vs}.`
    : `mmap'd CPU weights: decode ${pct} faster; pinned ones would prefill ${x} faster ${vs}.`;
}

/**
 * The KV cache's element type as a placement decision (issue 21). The planner plans every
 * candidate once per KV type the recipe allows and the runtime can run (f16, q8_0, q4_0), with the
 * KV bytes per token of that type: a smaller cache leaves VRAM to weights (the `-ncmoe`/`-ngl`
 * search finds more GPU blocks), attention reads fewer bytes per decoded token, and llama.cpp's
 * flash-attention prefill converts the quantized cache to F16 per micro-batch (an extra pass over
 * it, and a one-layer F16 buffer in VRAM). Quality is priced in: a quantized type is chosen only
 * when it shortens the request by its margin ({@link KV_QUALITY_MARGIN}) or nothing else fits.
 *
 * @example
 * ```ts
 * kvBytesFactor("q8_0"); // 0.53125: 34 bytes per 32 elements against 64 for F16
 * allowedKvTypes({ runtime: { name: "llama.cpp" } }); // ["f16", "q8_0"] (the default)
 * ```
 *
 * @module
 */
import { formatBytes } from "../../core/bytes.ts";
import type { Candidate } from "../../core/types.ts";
import type { Evaluated, PlanContext } from "./candidates.ts";

/** KV cache element types spillway plans with (llama.cpp -ctk/-ctv names). */
export type KvType = "f16" | "q8_0" | "q4_0";

/** All KV types, best quality first. */
export const KV_TYPES: readonly KvType[] = ["f16", "q8_0", "q4_0"];

/** KV types a recipe allows when it does not say (`kvCache.types`): q4_0 only when asked. */
export const DEFAULT_KV_TYPES: readonly KvType[] = ["f16", "q8_0"];

/** Bytes per element: ggml block sizes (q8_0: 32 int8 + one f16 scale; q4_0: 32 nibbles + scale). */
const BYTES_PER_ELEMENT: Record<KvType, number> = { f16: 2, q8_0: 34 / 32, q4_0: 18 / 32 };

/**
 * Quality price of each type, as a fraction of the request's time: a quantized cache must make
 * the request at least this much faster than the best f16 candidate (q4_0: than q8_0 as well) to
 * be chosen. Quantized KV changes the logits a little (llama.cpp's q8_0 KV is close to f16; q4_0
 * less so), so a 1% speed gain is not worth it.
 */
export const KV_QUALITY_MARGIN: Record<KvType, number> = { f16: 0, q8_0: 0.03, q4_0: 0.08 };

/** KV types each runtime can be told to use (others: f16 only). */
const RUNTIME_KV_TYPES: Record<string, readonly KvType[]> = {
  // -ctk/-ctv (common/arg.cpp kv_cache_types); a quantized V cache needs flash attention (-fa on).
  "llama.cpp": ["f16", "q8_0", "q4_0"],
};

/** Size of a type relative to F16. */
export function kvBytesFactor(t: KvType): number {
  return BYTES_PER_ELEMENT[t] / BYTES_PER_ELEMENT.f16;
}

/** The KV types a runtime supports. */
export function runtimeKvTypes(runtime: string): readonly KvType[] {
  return RUNTIME_KV_TYPES[runtime] ?? ["f16"];
}

/** What {@link allowedKvTypes} reads from a recipe. */
export interface KvRecipe {
  runtime: { name: string };
  /** The recipe's `kvCache` (absent: {@link DEFAULT_KV_TYPES}). */
  kvCache?: { types: readonly KvType[] };
}

/** Elements per block of the quantized types (ggml: q8_0 and q4_0 both 32). */
const BLOCK_ELEMENTS: Record<KvType, number> = { f16: 1, q8_0: 32, q4_0: 32 };

/** The head sizes the cache stores rows of, as llama.cpp sees them (what a quantized type must divide). */
export interface KvHeadSizes {
  architecture: string;
  keyLength: number;
  valueLength: number;
  metadata?: Record<string, unknown>;
}

/**
 * Head sizes of K and V cache rows: per-head key and value lengths, or for MLA models (a
 * `kv_lora_rank` in the metadata) the latent plus the RoPE part (K) and the latent (V).
 */
function cacheRowSizes(m: KvHeadSizes): { k: number; v: number } {
  const meta = m.metadata ?? {};
  const rank = Number(meta[`${m.architecture}.attention.kv_lora_rank`] ?? 0);
  if (rank > 0) {
    const rope = Number(meta[`${m.architecture}.rope.dimension_count`] ?? 0);
    return { k: rank + rope, v: rank };
  }
  return { k: m.keyLength, v: m.valueLength };
}

/**
 * The KV types to plan with: the recipe's allowed types the runtime supports and the model's head
 * sizes allow, in quality order, and a note when the recipe asked for types that cannot be used.
 * llama.cpp refuses a quantized K (V) cache whose block of 32 elements does not divide the key
 * (value) head size ("K cache type q8_0 with block size 32 does not divide n_embd_head_k=16").
 * `gpu` false (a CPU-only machine): the default is f16 only.
 */
export function allowedKvTypes(recipe: KvRecipe, model?: KvHeadSizes, gpu = true): { types: KvType[]; note: string | null } {
  // Without a GPU the default is f16 only: llama.cpp's CPU flash attention with a q8_0 cache
  // prefilled a 4096-token prompt 3.5-4x slower than f16 (docs/planner.md), which the cost model
  // does not capture. A recipe that lists quantized types explicitly still gets them.
  const asked = recipe.kvCache?.types ?? (gpu ? DEFAULT_KV_TYPES : ["f16"]);
  const can = runtimeKvTypes(recipe.runtime.name);
  const rows = model ? cacheRowSizes(model) : null;
  const fitsHead = (t: KvType): boolean => rows === null || (rows.k % BLOCK_ELEMENTS[t] === 0 && rows.v % BLOCK_ELEMENTS[t] === 0);
  const types = KV_TYPES.filter((t) => asked.includes(t) && can.includes(t) && fitsHead(t));
  const noRuntime = asked.filter((t) => !can.includes(t));
  const noHead = asked.filter((t) => can.includes(t) && !fitsHead(t));
  const why: string[] = [];
  if (noRuntime.length > 0) why.push(`runtime ${recipe.runtime.name} has no ${noRuntime.join("/")} KV cache in spillway's adapter`);
  if (noHead.length > 0 && rows) {
    why.push(`${noHead.join("/")} blocks of 32 elements do not divide the model's cache rows (K ${rows.k}, V ${rows.v}), which llama.cpp refuses`);
  }
  const note = recipe.kvCache !== undefined && why.length > 0
    ? `kvCache.types: ${why.join("; ")}; planned with ${types.length > 0 ? types.join(", ") : "f16"}`
    : null;
  return { types: types.length > 0 ? types : ["f16"], note };
}

/** One layer's F16 copy of the cache that flash-attention prefill converts a quantized cache into. */
function conversionBufferBytes(ctx: PlanContext, f16PerToken: number): number {
  return (ctx.context * f16PerToken) / Math.max(1, ctx.summary.layerCount);
}

/** The planning context for KV type `t`: KV bytes per token of that type; VRAM for its prefill buffer. */
export function contextForKvType(ctx: PlanContext, t: KvType): PlanContext {
  if (t === "f16") return ctx;
  const f16 = ctx.summary.kvBytesPerToken;
  // The conversion buffer is held like the reserve, so the -ncmoe/-ngl search leaves room for it.
  const reserve = ctx.hw.gpu ? ctx.limits.reserve + conversionBufferBytes(ctx, f16) : ctx.limits.reserve;
  return {
    ...ctx,
    summary: { ...ctx.summary, kvBytesPerToken: f16 * kvBytesFactor(t) },
    limits: { ...ctx.limits, reserve },
  };
}

/**
 * Seconds flash-attention prefill spends converting a quantized cache to F16: per micro-batch the
 * cache's first `done + n` cells are read (quantized) and written (F16) in VRAM. On the CPU the
 * kernels read the quantized cache directly (no conversion).
 */
export function conversionSeconds(ctx: PlanContext, f16PerToken: number, t: KvType, ubatch: number): number {
  const gpu = ctx.hw.gpu;
  if (t === "f16" || gpu === null) return 0;
  const bw = gpu.vramGBps * ctx.constants.vramEfficiency * 1e9;
  const perCell = f16PerToken * (1 + kvBytesFactor(t));
  let s = 0;
  for (let done = 0; done < ctx.workload.promptTokens; done += ubatch) {
    const n = Math.min(ubatch, ctx.workload.promptTokens - done);
    s += ((done + n) * perCell) / bw;
  }
  return s;
}

/**
 * Seconds per decoded token of attention over a quantized cache: on the GPU (cache in VRAM) the
 * kernels dequantize every cell, `quantizedKvDecodeNsPerCellLayer` per cell and layer, or the
 * cache's bytes over VRAM bandwidth (`bytesSeconds`) where that is slower. A cache in host memory is
 * read by the CPU, which reads the quantized blocks directly: its bytes decide.
 */
export function quantizedKvDecodeSeconds(ctx: PlanContext, kvTier: string, bytesSeconds: number): number {
  if (!ctx.hw.gpu || kvTier !== "vram") return bytesSeconds;
  const cells = ctx.workload.promptTokens + ctx.workload.generatedTokens / 2;
  return Math.max(bytesSeconds, (cells * ctx.summary.layerCount * ctx.constants.quantizedKvDecodeNsPerCellLayer) / 1e9);
}

/** Settings of a quantized-KV candidate: both caches of type `t`, flash attention on. */
function withKvType(ctx: PlanContext, f16PerToken: number, e: Evaluated, t: KvType): Evaluated {
  if (t === "f16") return e;
  const c = e.candidate;
  const extra = conversionSeconds(ctx, f16PerToken, t, c.settings.ubatch);
  const P = ctx.workload.promptTokens;
  const prefillSeconds = P / e.prediction.prefillTps + extra;
  const kvDecode = quantizedKvDecodeSeconds(ctx, e.layout.kv, e.prediction.decode.kv);
  const decodeSeconds = 1 / e.prediction.decodeTps + (kvDecode - e.prediction.decode.kv);
  const totalSeconds = e.prediction.totalSeconds + extra + ctx.workload.generatedTokens * (kvDecode - e.prediction.decode.kv);
  const buffer = ctx.hw.gpu ? conversionBufferBytes(ctx, f16PerToken) : 0;
  const candidate: Candidate = {
    ...c,
    id: `${c.id}+kv-${t}`,
    label: `${c.label}, KV cache ${t}`,
    memory: { ...c.memory, vram: c.memory.vram + buffer },
    settings: { ...c.settings, kvType: t, flashAttention: true },
    predicted: { ...c.predicted, prefillTps: +(P / prefillSeconds).toPrecision(4), decodeTps: +(1 / decodeSeconds).toPrecision(4), totalSeconds: +totalSeconds.toPrecision(4) },
    placements: c.placements.map((p) => (p.class === "compute" && ctx.hw.gpu ? { ...p, bytes: p.bytes + buffer } : { ...p })),
  };
  return {
    candidate,
    layout: e.layout,
    prediction: {
      ...e.prediction,
      prefillTps: P / prefillSeconds,
      decodeTps: 1 / decodeSeconds,
      totalSeconds,
      prefill: { ...e.prediction.prefill, gpuCompute: e.prediction.prefill.gpuCompute + extra },
      decode: { ...e.prediction.decode, kv: kvDecode },
    },
  };
}

/** KV type of a candidate (f16 when its settings name none). */
export function kvTypeOf(c: Candidate): KvType {
  return c.settings.kvType ?? "f16";
}

/** Time a candidate is ranked by: its request time raised by its KV type's quality margin. */
export function rankSeconds(e: Evaluated): number {
  return e.prediction.totalSeconds * (1 + KV_QUALITY_MARGIN[kvTypeOf(e.candidate)]);
}

/**
 * Rank candidates over all allowed KV types: `rankOne(ctx)` ranks one type's candidates (the
 * planner's enumeration, evaluation and variants); every quantized candidate gets its type's
 * settings, id suffix (`+kv-q8_0`) and prefill conversion cost. Fitting before non-fitting, then
 * by {@link rankSeconds}; `considered` holds every candidate, `ranked` those {@link pruneLosers} keeps.
 */
export function rankAcrossKvTypes(
  ctx: PlanContext,
  types: readonly KvType[],
  rankOne: (ctx: PlanContext) => { ranked: Evaluated[]; note: string | null },
): { ranked: Evaluated[]; notes: string[]; considered: Evaluated[] } {
  const f16PerToken = ctx.summary.kvBytesPerToken;
  const all: Evaluated[] = [];
  const notes: string[] = [];
  for (const t of types.length > 0 ? types : (["f16"] as const)) {
    const r = rankOne(contextForKvType(ctx, t));
    if (r.note && !notes.includes(r.note)) notes.push(r.note);
    all.push(...r.ranked.map((e) => withKvType(ctx, f16PerToken, e, t)));
  }
  all.sort((a, b) => Number(b.candidate.fits) - Number(a.candidate.fits) || rankSeconds(a) - rankSeconds(b));
  return { ranked: pruneLosers(all), notes, considered: all };
}

/**
 * Drops the quantized-KV candidates that lose to a fitting candidate of a better type even before
 * the quality margin counts against them (and, when a better type fits, those that do not fit): a
 * quantized candidate stays only where it would be chosen over every better type's candidates. So
 * the list's order by predicted time (what autotune tries first) agrees with the choice, and the
 * table is not doubled by variants nobody would pick.
 */
function pruneLosers(ranked: Evaluated[]): Evaluated[] {
  const bestFitting = new Map<KvType, number>();
  for (const e of ranked) {
    const t = kvTypeOf(e.candidate);
    if (e.candidate.fits && !bestFitting.has(t)) bestFitting.set(t, rankSeconds(e));
  }
  return ranked.filter((e) => {
    const t = kvTypeOf(e.candidate);
    const better = KV_TYPES.slice(0, KV_TYPES.indexOf(t)).filter((b) => bestFitting.has(b));
    if (better.length === 0) return true;
    if (!e.candidate.fits) return false;
    return better.every((b) => rankSeconds(e) < bestFitting.get(b)!);
  });
}

const fmt = (x: number): string => (x >= 100 ? x.toFixed(0) : x.toFixed(1));

/** What a layout keeps off the GPU, for the trade sentence. */
function offGpu(c: Candidate): { kind: "experts" | "layers" | "other"; n: number } {
  const s = c.settings;
  if (s.cpuMoeLayers > 0) return { kind: "experts", n: s.cpuMoeLayers };
  if (c.strategy === "layers_cpu" || c.strategy === "combined") {
    const blocks = c.placements.filter((p) => p.class !== "kv_cache" && p.class !== "compute" && p.tier === "host_cpu" && p.layers);
    const set = new Set<number>();
    for (const p of blocks) for (let l = p.layers![0]; l <= p.layers![1]; l++) set.add(l);
    return { kind: "layers", n: set.size };
  }
  return { kind: "other", n: 0 };
}

/** Weight bytes a candidate keeps in VRAM. */
function vramWeights(c: Candidate): number {
  return c.placements.filter((p) => p.tier === "vram" && p.class !== "kv_cache" && p.class !== "compute").reduce((a, p) => a + p.bytes, 0);
}

/**
 * What the chosen KV type traded, one sentence: for a quantized choice the bytes it saved against
 * f16, what those bytes bought (experts or blocks moved to VRAM, the KV kept in VRAM) and the
 * speeds; for an f16 choice why quantizing was not worth it. Null when only f16 was considered.
 */
export function kvTradeSentence(ctx: PlanContext, ranked: Evaluated[], chosen: Evaluated, types: readonly KvType[]): string | null {
  if (types.length <= 1 && types[0] === "f16") return null;
  const c = chosen.candidate;
  const t = kvTypeOf(c);
  const f16Bytes = ctx.context * ctx.summary.kvBytesPerToken;
  const bestOf = (k: KvType): Evaluated | undefined => ranked.find((e) => e.candidate.fits && kvTypeOf(e.candidate) === k);
  if (t !== "f16") {
    const saved = f16Bytes * (1 - kvBytesFactor(t));
    const f = bestOf("f16");
    let s = `KV ${t} (saves ${formatBytes(saved)} against f16`;
    if (!f) return s + (types.includes("f16") ? "; with an f16 KV cache no placement fits)." : "; the recipe's kvCache.types does not allow f16).");
    const a = offGpu(f.candidate);
    const b = offGpu(c);
    if (a.kind === b.kind && a.kind !== "other" && a.n > b.n) {
      s += `, frees ${a.kind === "experts" ? "experts of " : ""}${a.n - b.n} block${a.n - b.n === 1 ? "" : "s"} for VRAM`;
    } else if (f.candidate.settings.kvOnHost && !c.settings.kvOnHost) {
      s += ", keeps the KV cache in VRAM";
    } else {
      const more = vramWeights(c) - vramWeights(f.candidate);
      if (more > 2 ** 20) s += `, ${formatBytes(more)} more weights in VRAM`;
    }
    return s + `): ${fmt(c.predicted.decodeTps)} t/s decode, ${fmt(c.predicted.prefillTps)} t/s prefill against ${fmt(f.candidate.predicted.decodeTps)} and ` +
      `${fmt(f.candidate.predicted.prefillTps)} with f16 (${f.candidate.id}); quantized KV changes the logits slightly (quality margin ${Math.round(KV_QUALITY_MARGIN[t] * 100)}%).`;
  }
  const q = types.filter((k) => k !== "f16").map((k) => bestOf(k)).filter((e): e is Evaluated => e !== undefined)
    .sort((x, y) => x.prediction.totalSeconds - y.prediction.totalSeconds)[0];
  if (!q) return null;
  const gain = 1 - q.prediction.totalSeconds / chosen.prediction.totalSeconds;
  const k = kvTypeOf(q.candidate);
  return `KV f16 kept: the best ${k} placement (${q.candidate.id}) would be ${gain > 0 ? `${(gain * 100).toFixed(1)}% faster` : `${(-gain * 100).toFixed(1)}% slower`}, ` +
    `under the ${Math.round(KV_QUALITY_MARGIN[k] * 100)}% needed to trade quality for it.`;
}

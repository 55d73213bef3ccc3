/**
 * `plan(model, hardware, recipe)`: enumerate the candidates the recipe's runtime can express, fit
 * each in memory, predict its speed, choose the fastest for the recipe's workload and say why.
 *
 * @module
 */
import { PlanError } from "../../core/errors.ts";
import type { Recipe } from "../recipe/types.ts";
import { formatBytes } from "../../core/bytes.ts";
import type { HardwareProfile, ModelInfo, Plan } from "../../core/types.ts";
import { capabilitiesFor, hybridBlocksFor, type RuntimeCapabilities } from "./capabilities.ts";
import {
  type CandidateSpec,
  DEFAULT_UBATCHES,
  enumerateSpecs,
  evaluate,
  type Evaluated,
  loadModeTradeSentence,
  type PlanContext,
} from "./candidates.ts";
import { type CostConstants, DEFAULT_CONSTANTS, type RoutingModel } from "./cost.ts";
import { withHybrid } from "./hybrid.ts";
import { memoryLimits } from "./memory.ts";
import { isMoe, summarizeModel } from "./summary.ts";
import { allowedKvTypes, kvTradeSentence, rankAcrossKvTypes } from "./kv_choice.ts";
import { splitCandidates, splitReason } from "./multi_device.ts";

/** The parts of a recipe the planner reads (a full Recipe works). */
export type PlanRecipe = Pick<Recipe, "runtime" | "context" | "batch" | "workload" | "placement"> &
  Partial<Pick<Recipe, "file" | "ubatch" | "threads" | "kvCache" | "promptCache">>;

/** Options of {@link plan}. */
export interface PlanOptions {
  /** Capabilities of the runtime (default: what its adapter in engine/runtimes declares). */
  capabilities?: RuntimeCapabilities;
  /** Routing of the model (default: a trained model's independent per-token routing). */
  routing?: RoutingModel;
  /** Cost-model constants (default: the fitted ones). */
  constants?: CostConstants;
  /** Extra candidates to evaluate besides the enumerated ones. */
  extraSpecs?: CandidateSpec[];
}

/** Build the planning context (exposed for tests and autotune). */
export function planContext(model: ModelInfo, hw: HardwareProfile, recipe: PlanRecipe, options: PlanOptions = {}): PlanContext {
  const summary = summarizeModel(model);
  const placement = recipe.placement;
  for (const l of placement.cpuLayers) {
    if (l >= summary.layerCount) {
      throw new PlanError(`placement.cpuLayers: layer ${l} does not exist (the model has ${summary.layerCount} blocks, 0..${summary.layerCount - 1})`);
    }
  }
  return {
    summary,
    hw,
    runtime: recipe.runtime.name,
    caps: options.capabilities ?? capabilitiesFor(recipe.runtime.name),
    context: recipe.context,
    batch: recipe.batch,
    threads: recipe.threads ?? hw.host.cpuCores,
    ubatches: recipe.ubatch !== undefined ? [recipe.ubatch] : [...DEFAULT_UBATCHES].filter((u) => u <= Math.max(recipe.batch, 512)),
    workload: recipe.workload,
    placement,
    limits: memoryLimits(hw, placement),
    routing: options.routing ?? { reach: 1 },
    constants: options.constants ?? DEFAULT_CONSTANTS,
    hybridBlocks: hybridBlocksFor(recipe.runtime.name, model),
  };
}

const fmtTps = (x: number): string => (x >= 100 ? x.toFixed(0) : x.toFixed(1));

function explain(ctx: PlanContext, chosen: Evaluated, ranked: Evaluated[]): string {
  const c = chosen.candidate;
  const w = ctx.workload;
  const what = w.objective === "chat" ? "decode-heavy chat" : w.objective === "rag" ? "prefill-heavy RAG" : "custom";
  let s = `Chose ${c.id} (${c.label}) for the ${what} workload (${w.promptTokens} prompt + ${w.generatedTokens} generated tokens): ` +
    `${fmtTps(c.predicted.decodeTps)} tok/s decode and ${fmtTps(c.predicted.prefillTps)} tok/s prefill predicted, ` +
    `${c.predicted.totalSeconds.toFixed(2)} s per request`;
  const next = ranked.find((e) => e.candidate.fits && e !== chosen && e.candidate.strategy !== c.strategy) ??
    ranked.find((e) => e.candidate.fits && e !== chosen);
  if (next) {
    const n = next.candidate;
    s += ` vs ${n.predicted.totalSeconds.toFixed(2)} s for the best ${n.strategy.replace("_", " ")} alternative (${n.id})`;
  }
  s += ".";
  if (ctx.hw.gpu) {
    const kvTier = c.placements.find((p) => p.class === "kv_cache")?.tier;
    const denseInVram = chosen.layout.units.filter((u) => u.group !== "ffn_experts" && u.group !== "embedding").every((u) => u.tier === "vram");
    const parts: string[] = [];
    if (denseInVram) parts.push(isMoe(ctx.summary) ? "dense tensors (attention, output head)" : "all weights");
    const kvBytes = c.placements.find((p) => p.class === "kv_cache")?.bytes ?? ctx.context * ctx.summary.kvBytesPerToken;
    if (kvTier === "vram") parts.push(`the KV cache (${formatBytes(kvBytes)}${c.settings.kvType ? ` ${c.settings.kvType}` : ""})`);
    if (parts.length > 0) {
      s += ` It keeps ${parts.join(" and ")} in VRAM, using ${formatBytes(c.memory.vram)} of ${formatBytes(ctx.limits.vram)}` +
        ` (${formatBytes(ctx.limits.reserve)} reserve).`;
    } else {
      s += ` It uses ${formatBytes(c.memory.vram)} of ${formatBytes(ctx.limits.vram)} VRAM.`;
    }
  }
  return s;
}

/** Evaluate all candidates, best first (fitting before non-fitting, then by total time). */
export function rankCandidates(ctx: PlanContext, specs: CandidateSpec[]): Evaluated[] {
  const seen = new Set<string>();
  const out: Evaluated[] = [];
  for (const spec of specs) {
    const e = evaluate(ctx, spec);
    if (seen.has(e.candidate.id)) continue;
    seen.add(e.candidate.id);
    out.push(e);
  }
  return out.sort((a, b) =>
    Number(b.candidate.fits) - Number(a.candidate.fits) || a.prediction.totalSeconds - b.prediction.totalSeconds
  );
}

/**
 * Plan a model on a machine for a recipe.
 * @throws PlanError when no candidate fits (the message lists why each does not).
 */
export function plan(model: ModelInfo, hardware: HardwareProfile, recipe: PlanRecipe, options: PlanOptions = {}): Plan {
  const ctx = planContext(model, hardware, recipe, options);
  const specs = [...enumerateSpecs(ctx), ...(options.extraSpecs ?? [])];
  if (specs.length === 0) {
    throw new PlanError(`runtime ${ctx.runtime} can express no placement for this model on ${hardware.name} with the recipe's placement constraints`);
  }
  // Per allowed KV type (issue 21, kv_choice.ts): the candidates planned with that type's cache size,
  // and hybrid experts (issue 22): variants of the pinned -ncmoe candidates, from measured rates.
  const kv = allowedKvTypes(recipe, model, hardware.gpu !== null);
  const { ranked, notes: rankNotes, considered } = rankAcrossKvTypes(ctx, kv.types, (c) =>
    withHybrid(c, rankCandidates(c, c === ctx ? specs : [...enumerateSpecs(c), ...(options.extraSpecs ?? [])]))
  );
  // Splits over several devices (issue 19): local GPUs and rpc-server devices, ranked with the rest.
  const splits = splitCandidates(ctx);
  if (splits.length > 0) {
    ranked.push(...splits);
    ranked.sort((a, b) => Number(b.candidate.fits) - Number(a.candidate.fits) || a.prediction.totalSeconds - b.prediction.totalSeconds);
  }
  // llama-server's slot cache (issue 21) goes with every candidate (autotune may pick another).
  if (recipe.promptCache && ctx.runtime === "llama.cpp") for (const e of ranked) e.candidate.settings.slotCache = { ...recipe.promptCache };
  const best = ranked[0];
  if (!best.candidate.fits) {
    throw new PlanError(
      `no placement of ${model.files[0] ?? "the model"} (${formatBytes(model.tensorBytes)}) fits ${hardware.name}:\n` +
        ranked.map((e) => `  ${e.candidate.id}: ${e.candidate.misfit}`).join("\n"),
    );
  }
  const c = best.candidate;
  const p: Plan = {
    version: 1,
    model: { path: model.files[0] ?? "", architecture: model.architecture, quantization: model.quantization, bytes: model.tensorBytes },
    runtime: ctx.runtime,
    hardware: { name: hardware.name, source: hardware.source },
    workload: { ...ctx.workload },
    candidates: ranked.map((e) => e.candidate),
    chosen: c.id,
    reason: c.strategy === "split"
      ? splitReason(best, ranked)
      : [explain(ctx, best, ranked), loadModeTradeSentence(best, ranked), kvTradeSentence(ctx, considered, best, kv.types)].filter((x) => x).join(" "),
    settings: c.settings,
    predicted: c.predicted,
    memory: c.memory,
  };
  if (recipe.file !== undefined) p.recipe = recipe.file;
  if (rankNotes.length > 0) p.notes = [...(p.notes ?? []), ...rankNotes];
  if (kv.note) p.notes = [...(p.notes ?? []), kv.note];
  return p;
}

/**
 * One recipe planned across context lengths (issue 21, `spillway plan RECIPE --contexts 4k,32k`):
 * per context the plan for a request that fills it (a prompt of the context minus the generated
 * tokens), its placement, KV type and location, memory, predicted prefill and decode; and the
 * longest context that fits this machine at all.
 *
 * @example
 * ```ts
 * const table = planContexts(model, hw, recipe, parseContexts("4k,32k,128k"));
 * console.log(formatContextTable(table));
 * ```
 *
 * @module
 */
import { PlanError, SpillwayError } from "../../core/errors.ts";
import type { Candidate, HardwareProfile, ModelInfo, Plan } from "../../core/types.ts";
import { kvTypeOf, type KvType } from "./kv_choice.ts";
import { plan, type PlanOptions, type PlanRecipe } from "./plan.ts";

/** The plan at one context length. */
export interface ContextRow {
  context: number;
  promptTokens: number;
  generatedTokens: number;
  /** Whether any placement fits; the fields below are set only when one does. */
  fits: boolean;
  chosen?: string;
  label?: string;
  kvType?: KvType;
  kvTier?: "vram" | "host_cpu";
  /** Bytes in VRAM and in host memory (CPU-side and host-mapped). */
  vramBytes?: number;
  hostBytes?: number;
  prefillTps?: number;
  decodeTps?: number;
  totalSeconds?: number;
  /** Why nothing fits (the planner's first reason), when nothing does. */
  misfit?: string;
  /** Longer than the model's trained context (`{arch}.context_length`): plannable, but the model was not trained for it. */
  beyondTrained: boolean;
}

/** {@link planContexts}'s answer (`spillway plan --contexts --json` prints it). */
export interface ContextTable {
  model: string;
  runtime: string;
  hardware: string;
  rows: ContextRow[];
  /** Longest context (a multiple of 256, at most `searchedTo`) any placement fits, and its plan's choice. */
  longest: { context: number; chosen: string; kvType: KvType } | null;
  /** Upper end of the search: the model's trained context, or 1M tokens when unknown. */
  searchedTo: number;
}

/** Parses `4k,16k,32768,1m`: k = 1024 tokens, m = 1024k. */
export function parseContexts(text: string): number[] {
  const out: number[] = [];
  for (const part of text.split(",").map((s) => s.trim()).filter((s) => s !== "")) {
    const m = /^(\d+(?:\.\d+)?)([kKmM]?)$/.exec(part);
    const n = m ? Math.round(Number(m[1]) * (m[2] === "" ? 1 : m[2].toLowerCase() === "k" ? 1024 : 1024 * 1024)) : NaN;
    if (!Number.isInteger(n) || n < 16 || n > 16_777_216) {
      throw new SpillwayError(`--contexts: ${JSON.stringify(part)} is not a context length of 16 to 16M tokens (e.g. 4k, 32k, 131072)`);
    }
    out.push(n);
  }
  if (out.length === 0) throw new SpillwayError("--contexts: give at least one context length, e.g. 4k,16k,32k");
  return [...new Set(out)].sort((a, b) => a - b);
}

/** The recipe at context `c`: a request filling it (generated tokens at most a quarter of it). */
function atContext(recipe: PlanRecipe, c: number): PlanRecipe {
  const gen = Math.max(1, Math.min(recipe.workload.generatedTokens, Math.floor(c / 4)));
  return { ...recipe, context: c, workload: { objective: "custom", promptTokens: c - gen, generatedTokens: gen } };
}

function tryPlan(model: ModelInfo, hw: HardwareProfile, recipe: PlanRecipe, options: PlanOptions): Plan | PlanError {
  try {
    return plan(model, hw, recipe, options);
  } catch (e) {
    if (e instanceof PlanError) return e;
    throw e;
  }
}

function rowOf(c: number, r: PlanRecipe, p: Plan | PlanError, trained: number | undefined): ContextRow {
  const row: ContextRow = {
    context: c,
    promptTokens: r.workload.promptTokens,
    generatedTokens: r.workload.generatedTokens,
    fits: !(p instanceof PlanError),
    beyondTrained: trained !== undefined && c > trained,
  };
  if (p instanceof PlanError) {
    // The planner lists every candidate's reason; the first says enough for a table.
    row.misfit = p.message.split("\n")[1]?.replace(/^\s+\S+: /, "") ?? p.message;
    return row;
  }
  const ch: Candidate = p.candidates.find((x) => x.id === p.chosen)!;
  row.chosen = ch.id;
  row.label = ch.label;
  row.kvType = kvTypeOf(ch);
  row.kvTier = ch.settings.kvOnHost || !ch.placements.some((x) => x.class === "kv_cache" && x.tier === "vram") ? "host_cpu" : "vram";
  row.vramBytes = ch.memory.vram;
  row.hostBytes = ch.memory.host_cpu + ch.memory.host_mapped;
  row.prefillTps = ch.predicted.prefillTps;
  row.decodeTps = ch.predicted.decodeTps;
  row.totalSeconds = ch.predicted.totalSeconds;
  return row;
}

/**
 * Plan `recipe` at each of `contexts` and find the longest context that fits (binary search in
 * steps of 256 tokens up to the model's trained context).
 */
export function planContexts(model: ModelInfo, hw: HardwareProfile, recipe: PlanRecipe, contexts: number[], options: PlanOptions = {}): ContextTable {
  const rows = contexts.map((c) => {
    const r = atContext(recipe, c);
    return rowOf(c, r, tryPlan(model, hw, r, options), model.contextLength);
  });
  const searchedTo = Math.max(256, model.contextLength ?? 1_048_576);
  const fitsAt = (c: number): Plan | null => {
    const p = tryPlan(model, hw, atContext(recipe, c), options);
    return p instanceof PlanError ? null : p;
  };
  let longest: ContextTable["longest"] = null;
  // Largest k with 256*k fitting (memory grows with the context, so fitting is monotone).
  let lo = 0;
  let hi = Math.floor(searchedTo / 256);
  const top = fitsAt(hi * 256);
  if (top) {
    lo = hi;
  } else {
    while (lo < hi - 1) {
      const mid = (lo + hi) >> 1;
      if (fitsAt(mid * 256)) lo = mid;
      else hi = mid;
    }
  }
  if (lo > 0) {
    const p = top ?? fitsAt(lo * 256)!;
    longest = { context: lo * 256, chosen: p.chosen, kvType: kvTypeOf(p.candidates.find((x) => x.id === p.chosen)!) };
  }
  return { model: model.files[0] ?? model.architecture, runtime: recipe.runtime.name, hardware: hw.name, rows, longest, searchedTo };
}

const gib = (b: number | undefined): string => (b === undefined ? "" : (b / 2 ** 30).toFixed(1));
const tps = (x: number | undefined): string => (x === undefined ? "" : x >= 100 ? x.toFixed(0) : x.toFixed(1));
const tokens = (n: number): string => (n % 1024 === 0 ? `${n / 1024}k` : String(n));

/** The table as text: one row per context, then the longest context that fits. */
export function formatContextTable(t: ContextTable): string {
  const head = ["context", "prompt+gen", "chosen", "KV", "VRAM GiB", "host GiB", "prefill t/s", "decode t/s", "request s"];
  const rows: string[][] = [head];
  for (const r of t.rows) {
    if (!r.fits) {
      rows.push([tokens(r.context) + (r.beyondTrained ? "*" : ""), `${r.promptTokens}+${r.generatedTokens}`, `does not fit: ${r.misfit ?? ""}`, "", "", "", "", "", ""]);
      continue;
    }
    rows.push([
      tokens(r.context) + (r.beyondTrained ? "*" : ""),
      `${r.promptTokens}+${r.generatedTokens}`,
      r.chosen!,
      `${r.kvType} ${r.kvTier === "vram" ? "VRAM" : "host"}`,
      gib(r.vramBytes),
      gib(r.hostBytes),
      tps(r.prefillTps),
      tps(r.decodeTps),
      r.totalSeconds!.toFixed(1),
    ]);
  }
  const widths = head.map((_, i) => Math.max(...rows.filter((r) => !(r[2]?.startsWith("does not fit") && i >= 2)).map((r) => r[i].length)));
  const right = new Set([4, 5, 6, 7, 8]);
  const lines = rows.map((r) =>
    r[2]?.startsWith("does not fit")
      ? `${r[0].padEnd(widths[0])}  ${r[1].padEnd(widths[1])}  ${r[2]}`
      : r.map((c, i) => (right.has(i) ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join("  ").trimEnd()
  );
  lines.unshift(`model ${t.model}, runtime ${t.runtime}, hardware ${t.hardware}; predicted by the cost model (not measured), each context with a request that fills it`);
  lines.push("");
  if (t.rows.some((r) => r.beyondTrained)) lines.push(`* longer than the model's trained context (${t.searchedTo} tokens)`);
  lines.push(
    t.longest
      ? `longest context that fits: ${t.longest.context} tokens (${t.longest.chosen}, KV ${t.longest.kvType})` +
        (t.longest.context >= t.searchedTo ? `, the model's trained context (${t.searchedTo})` : "")
      : "no context length fits this machine",
  );
  return lines.join("\n");
}

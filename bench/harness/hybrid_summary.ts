/**
 * summary.json of a hybrid run (issue 22): per model, the hybrid method's decode and prefill over
 * the best stock configuration of the same run (the best of each figure among the stock methods),
 * its check, and the GPU. Stock methods are every llama.cpp method at the same free-VRAM level
 * whose environment turns on none of the patched build's switches.
 *
 * Usage: node --import tsx bench/harness/hybrid_summary.ts RESULTS_JSON... [HYBRID_ID] > summary.json
 * (several results files: parts of one run on one machine, see mergeRuns)
 *
 * @example
 * const s = hybridSummary(JSON.parse(readFileSync("results.json", "utf8")), "hybrid");
 * console.log(s.shapes[0].decodeRatioVsBestStock); // e.g. 1.31
 * @module
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { HYBRID_FRACTION_ENV, HYBRID_READ_ENV } from "../../engine/runtimes/llamacpp_hybrid.ts";
import { type MethodResult, mergeRuns, readResults, type RunResults } from "./results.ts";

/** Environment variables of the patched llama.cpp that change what it computes. */
const PATCH_SWITCHES = [HYBRID_FRACTION_ENV, HYBRID_READ_ENV];

/** One model's line of the summary. */
export interface ShapeSummary {
  model: string;
  gpu: string;
  freeVramGiB: number | null;
  hybrid: {
    id: string;
    prefillTps: number | null;
    decodeTps: number | null;
    check: MethodResult["check"];
    /**
     * Whether the check ran the split: only with the experts in pinned memory (`-lm none` in the
     * check's `how`); checks before that fix loaded by mmap and measured the stock path.
     */
    checkRanSplit: boolean;
  };
  bestStock: { decodeId: string; decodeTps: number; prefillId: string; prefillTps: number } | null;
  /** llama.cpp's default (its fit choice), when measured. */
  llamaDefault: { prefillTps: number | null; decodeTps: number | null } | null;
  decodeRatioVsBestStock: number | null;
  prefillRatioVsBestStock: number | null;
  decodeRatioVsDefault: number | null;
}

/** The summary file. */
export interface HybridSummary {
  matrix: string;
  startedAt: string;
  gpu: string;
  shapes: ShapeSummary[];
}

const ratio = (a: number | null | undefined, b: number | null | undefined): number | null =>
  a && b ? +(a / b).toFixed(3) : null;

/** True for a method that ran stock llama.cpp code paths (no patch switch set). */
export function isStock(m: MethodResult): boolean {
  return m.runtime === "llama.cpp" && m.freeVramGiB !== null && !PATCH_SWITCHES.some((k) => k in m.env) && !("LD_PRELOAD" in m.env);
}

/** Build the summary of a run's results; `hybridId` is the hybrid method's id. */
export function hybridSummary(r: RunResults, hybridId = "hybrid"): HybridSummary {
  const gpu = r.machine.gpus[0]?.name ?? "unknown GPU";
  const shapes: ShapeSummary[] = [];
  for (const h of r.results.filter((m) => m.id === hybridId)) {
    const peers = r.results.filter((m) => m.model === h.model && m.freeVramGiB === h.freeVramGiB && m.status === "ok");
    const stock = peers.filter(isStock);
    const bestBy = (f: (m: MethodResult) => number | undefined) =>
      stock.filter((m) => f(m) !== undefined).sort((a, b) => f(b)! - f(a)!)[0];
    const bd = bestBy((m) => m.decode?.tps);
    const bp = bestBy((m) => m.prefill?.tps);
    const def = peers.find((m) => m.id === "default");
    shapes.push({
      model: h.model,
      gpu,
      freeVramGiB: h.freeVramGiB,
      hybrid: { id: h.id, prefillTps: h.prefill?.tps ?? null, decodeTps: h.decode?.tps ?? null, check: h.check, checkRanSplit: / -lm none\b/.test(h.check.how) },
      bestStock: bd && bp ? { decodeId: bd.id, decodeTps: bd.decode!.tps, prefillId: bp.id, prefillTps: bp.prefill!.tps } : null,
      llamaDefault: def ? { prefillTps: def.prefill?.tps ?? null, decodeTps: def.decode?.tps ?? null } : null,
      decodeRatioVsBestStock: ratio(h.decode?.tps, bd?.decode?.tps),
      prefillRatioVsBestStock: ratio(h.prefill?.tps, bp?.prefill?.tps),
      decodeRatioVsDefault: ratio(h.decode?.tps, def?.decode?.tps),
    });
  }
  return { matrix: r.matrix, startedAt: r.startedAt, gpu, shapes };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  // Arguments naming a file or folder on disk are results (a results.json or its run folder); the other is the id.
  const args = process.argv.slice(2);
  const files = args.filter((a) => a.endsWith(".json") || existsSync(a));
  const id = args.find((a) => !files.includes(a));
  if (files.length === 0) {
    console.error("usage: hybrid_summary.ts RESULTS... [HYBRID_ID]  (RESULTS: a results.json or its run folder; several: parts of one run, merged)");
    process.exit(2);
  }
  try {
    const run = mergeRuns(files.map((f) => readResults(f).results));
    console.log(JSON.stringify(hybridSummary(run, id), null, 2));
  } catch (e) {
    console.error(`hybrid_summary: ${(e as Error).message}`);
    process.exit(1);
  }
}

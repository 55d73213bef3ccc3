/**
 * summary.json of a hybrid run (issue 22): per model, the hybrid method's decode and prefill over
 * the best stock configuration of the same run (the best of each figure among the stock methods),
 * its check, and the GPU. Stock methods are every llama.cpp method at the same free-VRAM level
 * whose environment turns on none of the patched build's switches.
 *
 * Usage: node --import tsx bench/harness/hybrid_summary.ts RESULTS_JSON... [HYBRID_ID] > summary.json
 * (several results files: parts of one run on one machine, see mergeRuns). A run folder's
 * concurrent.json (the probe of the same machine, SPILLWAY_BENCH_CONCURRENT=1) adds `probe`: the
 * most a perfect overlap of the split's two parts could gain there. A method measured in several
 * calls (mergeRuns' `<id>-call<K>`) adds `pooled`: the same ratios over every call's repetitions.
 *
 * @example
 * const s = hybridSummary(JSON.parse(readFileSync("results.json", "utf8")), "hybrid");
 * console.log(s.shapes[0].decodeRatioVsBestStock); // e.g. 1.31
 * @module
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { HYBRID_FRACTION_ENV, HYBRID_READ_ENV, MATVEC_STREAMS_ENV } from "../../engine/runtimes/llamacpp_hybrid.ts";
import { type ConcurrentRates, overlapGains, readConcurrentJson } from "../../engine/hardware/measure/concurrent.ts";
import { type MethodResult, mergeRuns, readResults, type RunResults } from "./results.ts";

/** Environment variables of the patched llama.cpp that change what it computes or how (not stock code paths). */
const PATCH_SWITCHES = [HYBRID_FRACTION_ENV, HYBRID_READ_ENV, MATVEC_STREAMS_ENV];

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
  /** Present when the hybrid or a stock method of this shape was measured in several calls: see {@link PooledSummary}. */
  pooled?: PooledSummary;
}

/**
 * The ratios again with every call's repetitions of a method pooled (mergeRuns names the earlier
 * calls' measurements `<id>-call<K>`). The figures above take the hybrid's last call against the best
 * stock row of any call; on a machine whose rates move between calls, pooled means are the fairer
 * comparison.
 */
export interface PooledSummary {
  /** Calls that measured each method, by id (ids without the `-call<K>` suffix). */
  calls: Record<string, number>;
  hybridDecodeTps: number | null;
  hybridPrefillTps: number | null;
  bestStock: { decodeId: string; decodeTps: number; prefillId: string; prefillTps: number } | null;
  decodeRatioVsBestStock: number | null;
  prefillRatioVsBestStock: number | null;
}

/**
 * The machine's two host-memory paths, from the concurrent probe of the same run: the bound a
 * perfect overlap puts on the split. Decode gains less, as it also runs what is not expert reads.
 */
export interface ProbeBound {
  cpuAloneGBps: number;
  /** The CPU's rate while the copy engine copies (the CPU part's rate in the copy mode). */
  cpuWithCopyGBps: number | null;
  /** The copy engine's rate beside the CPU threads. */
  copyWithCpuGBps: number | null;
  /** Zero-copy GPU reads' rate beside the CPU threads. */
  zeroCopyWithCpuGBps: number;
  /** Both paths together over the faster alone (zero-copy GPU reads). */
  zeroCopyGainVsBestAlone: number;
  /** Both paths together over the faster alone (copies into VRAM), where the probe ran them. */
  copyGainVsBestAlone: number | null;
}

/** The summary file. */
export interface HybridSummary {
  matrix: string;
  startedAt: string;
  gpu: string;
  /** Present when the run's concurrent probe was given. */
  probe?: ProbeBound;
  shapes: ShapeSummary[];
}

/** The summary's {@link ProbeBound} from the probe's figures. */
export function probeBound(c: ConcurrentRates): ProbeBound {
  const g = overlapGains(c);
  const r = (x: number) => +x.toFixed(3);
  return {
    cpuAloneGBps: r(c.cpuAloneGBps.median),
    cpuWithCopyGBps: c.cpuWithCopyGBps ? r(c.cpuWithCopyGBps.median) : null,
    copyWithCpuGBps: c.copyTogetherGBps ? r(c.copyTogetherGBps.median) : null,
    zeroCopyWithCpuGBps: r(c.gpuTogetherGBps.median),
    zeroCopyGainVsBestAlone: r(g.zeroCopy),
    copyGainVsBestAlone: g.copy !== undefined ? r(g.copy) : null,
  };
}

const ratio = (a: number | null | undefined, b: number | null | undefined): number | null =>
  a && b ? +(a / b).toFixed(3) : null;

/** True for a method that ran stock llama.cpp code paths (no patch switch set). */
export function isStock(m: MethodResult): boolean {
  return m.runtime === "llama.cpp" && m.freeVramGiB !== null && !PATCH_SWITCHES.some((k) => k in m.env) && !("LD_PRELOAD" in m.env);
}

/** A method's id without mergeRuns' `-call<K>` suffix. */
const baseId = (id: string): string => id.replace(/-call\d+$/, "");

const mean = (xs: number[]): number | null => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null);

/** Per method id (suffix dropped): the calls that measured it and the mean of all their repetitions. */
function poolCalls(rows: MethodResult[]): Map<string, { calls: number; stock: boolean; decodeTps: number | null; prefillTps: number | null }> {
  const groups = new Map<string, MethodResult[]>();
  for (const m of rows) groups.set(baseId(m.id), [...(groups.get(baseId(m.id)) ?? []), m]);
  return new Map([...groups].map(([id, ms]) => [id, {
    calls: ms.length,
    stock: ms.every(isStock),
    decodeTps: mean(ms.flatMap((m) => m.decode?.samples ?? [])),
    prefillTps: mean(ms.flatMap((m) => m.prefill?.samples ?? [])),
  }]));
}

/** The shape's {@link PooledSummary}, or undefined when the hybrid and every stock method ran in one call each. */
function pooledSummary(peers: MethodResult[], hybridId: string): PooledSummary | undefined {
  const pool = poolCalls(peers);
  const h = pool.get(hybridId);
  const stock = [...pool].filter(([, g]) => g.stock);
  // Only the compared rows matter: another patched row measured twice changes no ratio.
  if (!(h && h.calls > 1) && !stock.some(([, g]) => g.calls > 1)) return undefined;
  const bestBy = (f: (g: { decodeTps: number | null; prefillTps: number | null }) => number | null) =>
    stock.filter(([, g]) => f(g) !== null).sort(([, a], [, b]) => f(b)! - f(a)!)[0];
  const bd = bestBy((g) => g.decodeTps);
  const bp = bestBy((g) => g.prefillTps);
  const r4 = (x: number) => +x.toFixed(4);
  return {
    calls: Object.fromEntries([...pool].map(([id, g]) => [id, g.calls])),
    hybridDecodeTps: h?.decodeTps != null ? r4(h.decodeTps) : null,
    hybridPrefillTps: h?.prefillTps != null ? r4(h.prefillTps) : null,
    bestStock: bd && bp ? { decodeId: bd[0], decodeTps: r4(bd[1].decodeTps!), prefillId: bp[0], prefillTps: r4(bp[1].prefillTps!) } : null,
    decodeRatioVsBestStock: ratio(h?.decodeTps, bd?.[1].decodeTps),
    prefillRatioVsBestStock: ratio(h?.prefillTps, bp?.[1].prefillTps),
  };
}

/** Build the summary of a run's results; `hybridId` is the hybrid method's id; `probe`, the run's concurrent probe. */
export function hybridSummary(r: RunResults, hybridId = "hybrid", probe?: ConcurrentRates): HybridSummary {
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
    const pooled = pooledSummary(peers, hybridId);
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
      ...(pooled ? { pooled } : {}),
    });
  }
  return { matrix: r.matrix, startedAt: r.startedAt, gpu, ...(probe ? { probe: probeBound(probe) } : {}), shapes };
}

/** A concurrent probe file's rates; errors name the file. */
function readProbe(file: string): ConcurrentRates {
  try {
    return readConcurrentJson(readFileSync(file, "utf8"));
  } catch (e) {
    throw new Error(`${file}: ${(e as Error).message}`);
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  // Arguments naming a file or folder on disk are results (a results.json or its run folder); the other is the id.
  const args = process.argv.slice(2);
  const given = args.filter((a) => a.endsWith(".json") || existsSync(a));
  const files = given.filter((f) => !f.endsWith("concurrent.json"));
  const id = args.find((a) => !given.includes(a));
  if (files.length === 0) {
    console.error("usage: hybrid_summary.ts RESULTS... [HYBRID_ID]  (RESULTS: a results.json or its run folder; several: parts of one run, merged)");
    process.exit(2);
  }
  try {
    const run = mergeRuns(files.map((f) => readResults(f).results));
    // The probe: a concurrent.json given, or one in a run folder given.
    const probeFiles = [
      ...given.filter((f) => f.endsWith("concurrent.json")),
      ...files.filter((f) => statSync(f).isDirectory() && existsSync(join(f, "concurrent.json"))).map((f) => join(f, "concurrent.json")),
    ];
    if (probeFiles.length > 1) throw new Error(`one concurrent probe per summary, got ${probeFiles.join(", ")}`);
    const probe = probeFiles[0] ? readProbe(probeFiles[0]) : undefined;
    console.log(JSON.stringify(hybridSummary(run, id, probe), null, 2));
  } catch (e) {
    console.error(`hybrid_summary: ${(e as Error).message}`);
    process.exit(1);
  }
}

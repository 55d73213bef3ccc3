/**
 * `--autotune`: short real trials of the plan's top candidates with llama-bench on the real model,
 * the measured best for the recipe's workload chosen, predicted and measured side by side, the
 * cost model's constants fitted to the trials (calibration) with its error per candidate before and
 * after, a chart, and the choice stored (~/.cache/spillway/autotune.json) so the next run starts
 * from it.
 *
 * @example
 * ```ts
 * const p = plan(model, hw, recipe);
 * const r = await autotune(p, recipe, { trialSeconds: 8, model, hardware: hw, outDir: "out" });
 * console.log(r.plan.chosen, formatAutotuneTable(r.entry));
 * ```
 * @module
 */
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { Candidate, HardwareProfile, ModelInfo, Plan, RuntimeSettings, Workload } from "../../core/types.ts";
import { PlanError, SpillwayError } from "../../core/errors.ts";
import type { BenchCounts, PlanBuild } from "../runtimes/adapter.ts";
import { adapterFor } from "../runtimes/mod.ts";
import { shimEnvironment } from "../runtimes/shim_path.ts";
import { type AutotuneEntry, autotuneKey, autotunePath, type AutotuneRow, findAutotune, readAutotune, writeAutotune } from "./outcome_cache.ts";
import { fitConstants, type Speeds } from "./calibrate.ts";
import { autotuneChartSvg, renderPng } from "./chart.ts";
import { runLlamaBench, trialCounts, type TrialMeasurement } from "./trials.ts";
import { type CandidateSpec, enumerateSpecs, evaluate, type PlanContext } from "../planner/candidates.ts";
import { type CostConstants, DEFAULT_CONSTANTS } from "../planner/cost.ts";
import { planContext, type PlanOptions, type PlanRecipe } from "../planner/plan.ts";
import { applyAutotune } from "./apply.ts";
import { formatAutotuneTable } from "./table.ts";

/** The recipe parts autotune reads (a full Recipe works). */
export type AutotuneRecipe = PlanRecipe & { runtime: { name: string; binary?: string; env?: Record<string, string> } };

/** Options of {@linkcode autotune}. */
export interface AutotuneOptions {
  /** Seconds of measuring per candidate (model load not included); default 8. */
  trialSeconds?: number;
  /** Candidates to try; default 4 (the best of each strategy first, then by predicted time). */
  top?: number;
  /** llama-bench program for every trial (hybrid ones too: it should then be the patched build); default next to the recipe's binary, else `llama-bench` on PATH. */
  llamaBench?: string;
  /** Extra llama-bench arguments for every trial. */
  benchArgs?: string[];
  /** Kill a trial after this many seconds (load included); default max(180, 10 x trialSeconds). */
  trialTimeoutSeconds?: number;
  /** With model and hardware, the cost model is calibrated to the trials. */
  model?: ModelInfo;
  hardware?: HardwareProfile;
  /** The options the plan was made with (routing, constants, extra specs). */
  planOptions?: PlanOptions;
  /** Run trials even when the cache has this plan's outcome. */
  force?: boolean;
  /** Cache file; null: neither read nor write. Default ~/.cache/spillway/autotune.json. */
  cacheFile?: string | null;
  /** Directory for autotune.json (the outcome), autotune.svg and autotune.png. */
  outDir?: string;
  /** Runs one trial (tests inject measurements here); default runs llama-bench. */
  runTrial?: (argv: string[], env: Record<string, string>, timeoutMs: number) => Promise<TrialMeasurement>;
  /**
   * llama-bench of the patched llama.cpp, for hybrid candidates. Default: as for the others
   * (`llamaBench`, else the recipe's binary's), else the patched build's
   * (runtimes/llama.cpp/build.sh). null, or not built: hybrid candidates get no trial, and their row
   * says how to build it. A stock llama-bench ignores the hybrid switches, so it would measure
   * stock llama.cpp under a hybrid candidate's name.
   */
  hybridLlamaBench?: string | null;
  /** Shim library for zero-copy candidates (default: the adapter's). */
  shimPath?: string;
  stderr?: (text: string) => void;
}

/** What autotune produced. */
export interface AutotuneResult {
  /** The plan with the measured best chosen and `measured` filled. */
  plan: Plan;
  entry: AutotuneEntry;
  /** true when the outcome came from the cache (no trials ran). */
  fromCache: boolean;
  /** Files written to outDir. */
  files: string[];
}

/** Seconds one request of the workload takes at the given speeds. */
export function workloadSeconds(w: Pick<Workload, "promptTokens" | "generatedTokens">, s: Speeds): number {
  const pre = w.promptTokens > 0 ? (s.prefillTps > 0 ? w.promptTokens / s.prefillTps : Infinity) : 0;
  const dec = w.generatedTokens > 0 ? (s.decodeTps > 0 ? w.generatedTokens / s.decodeTps : Infinity) : 0;
  return pre + dec;
}

/**
 * The candidates worth a trial: fitting ones, the best of each strategy first (so one strategy's
 * near-identical variants do not crowd out the others), then the next best by predicted time.
 */
export function selectTrialCandidates(plan: Plan, top: number): Candidate[] {
  const fitting = plan.candidates.filter((c) => c.fits).sort((a, b) => a.predicted.totalSeconds - b.predicted.totalSeconds);
  const picked: Candidate[] = [];
  const strategies = new Set<string>();
  for (const c of fitting) {
    if (picked.length >= top) break;
    if (!strategies.has(c.strategy)) {
      strategies.add(c.strategy);
      picked.push(c);
    }
  }
  for (const c of fitting) {
    if (picked.length >= top) break;
    if (!picked.includes(c)) picked.push(c);
  }
  return picked.sort((a, b) => a.predicted.totalSeconds - b.predicted.totalSeconds);
}

/**
 * The measured best of the rows for the workload (shortest request time); null when no trial
 * produced a measurement.
 */
export function pickMeasuredBest(rows: AutotuneRow[]): AutotuneRow | null {
  let best: AutotuneRow | null = null;
  for (const r of rows) {
    if (r.measured && Number.isFinite(r.measured.totalSeconds) && (!best || r.measured.totalSeconds < best.measured!.totalSeconds)) best = r;
  }
  return best;
}

// Constants the trials can inform, with upper bounds for those that are fractions of a measured figure.
const FIT_NAMES = [
  "vramEfficiency",
  "tokenOverheadMs",
  "cpuEfficiency",
  "cpuHandoffMs",
  "zeroCopyEfficiency",
  "gpuPrefillEfficiency",
  "pinnedCopyEfficiency",
  "pageableCopyFactor",
  "cpuComputeEfficiency",
] as const satisfies readonly (keyof CostConstants)[];
const FIT_UPPER: Record<string, number> = {
  vramEfficiency: 1,
  cpuEfficiency: 1.2,
  zeroCopyEfficiency: 1.1,
  gpuPrefillEfficiency: 1,
  pinnedCopyEfficiency: 1.1,
  pageableCopyFactor: 1,
  cpuComputeEfficiency: 1,
};

/**
 * The llama-bench a candidate's trial runs, as `spillway run` would launch the candidate: the one
 * given (`llamaBench`), else the recipe's binary's (beside it, or on PATH for a bare name), else for
 * a candidate that needs another build (the adapter's `planBuild`: llama.cpp's patched one for hybrid
 * candidates) that build's (null when not built), and for others `llama-bench` on PATH.
 * `hybridLlamaBench` overrides the choice for candidates that need the other build.
 */
function trialProgram(recipe: AutotuneRecipe, opts: AutotuneOptions, build: PlanBuild | null): string | null {
  if (build && opts.hybridLlamaBench !== undefined) return opts.hybridLlamaBench;
  if (opts.llamaBench) return opts.llamaBench;
  const b = recipe.runtime.binary;
  if (b) return b.includes("/") ? join(dirname(b), "llama-bench") : "llama-bench";
  return build ? build.program("llama-bench") : "llama-bench";
}

function withSettings(plan: Plan, settings: RuntimeSettings): Plan {
  return { ...plan, settings };
}

function tps3(s: Speeds, w: Workload): { prefillTps: number; decodeTps: number; totalSeconds: number } {
  return { prefillTps: +s.prefillTps.toPrecision(4), decodeTps: +s.decodeTps.toPrecision(4), totalSeconds: +workloadSeconds(w, s).toPrecision(4) };
}

/** Calibrate the cost model on the measured rows; fills `calibrated` and `heldOut` in the rows. */
function calibrate(rows: AutotuneRow[], plan: Plan, recipe: AutotuneRecipe, opts: AutotuneOptions): AutotuneEntry["calibration"] {
  const ctx: PlanContext = planContext(opts.model!, opts.hardware!, recipe, opts.planOptions);
  const specs: CandidateSpec[] = [...enumerateSpecs(ctx), ...(opts.planOptions?.extraSpecs ?? [])];
  const specOf = new Map<string, CandidateSpec>();
  for (const spec of specs) {
    const id = evaluate(ctx, spec).candidate.id;
    if (!specOf.has(id)) specOf.set(id, spec);
  }
  const usable = rows.filter((r) => r.measured && specOf.has(r.id));
  if (usable.length === 0) return undefined;
  const predictFor = (ids: string[]) => (k: CostConstants): Map<string, Speeds> => {
    const m = new Map<string, Speeds>();
    for (const id of ids) {
      const p = evaluate({ ...ctx, constants: k }, specOf.get(id)!).prediction;
      m.set(id, { prefillTps: p.prefillTps, decodeTps: p.decodeTps });
    }
    return m;
  };
  const measuredOf = (rs: AutotuneRow[]): Record<string, Speeds> =>
    Object.fromEntries(rs.map((r) => [r.id, { prefillTps: r.measured!.prefillTps, decodeTps: r.measured!.decodeTps }]));
  const start = opts.planOptions?.constants ?? DEFAULT_CONSTANTS;
  const ids = usable.map((r) => r.id);
  const fit = fitConstants(start, FIT_NAMES, measuredOf(usable), predictFor(ids), { upper: FIT_UPPER });
  const after = predictFor(ids)(fit.constants);
  for (const r of usable) r.calibrated = tps3(after.get(r.id)!, plan.workload);
  // Leave-one-out: how well constants fitted to the other trials predict this one.
  if (usable.length >= 3) {
    for (const r of usable) {
      const others = usable.filter((o) => o !== r);
      const f = fitConstants(start, FIT_NAMES, measuredOf(others), predictFor(others.map((o) => o.id)), { upper: FIT_UPPER });
      r.heldOut = tps3(predictFor([r.id])(f.constants).get(r.id)!, plan.workload);
    }
  }
  return {
    constants: fit.constants as unknown as Record<string, unknown>,
    changed: fit.changed,
    lossBefore: +fit.lossBefore.toPrecision(4),
    lossAfter: +fit.lossAfter.toPrecision(4),
  };
}

/**
 * The constants calibrated by the latest autotune on hardware `hardwareName` (merged over
 * `base`), or null when none was stored: pass as `PlanOptions.constants` to plan with them.
 * (engine/planner/calibration.ts calibratedConstants is the other source: recorded runs.)
 */
export function autotunedConstants(hardwareName: string, base: CostConstants = DEFAULT_CONSTANTS, cacheFile: string = autotunePath()): CostConstants | null {
  let latest: AutotuneEntry | null = null;
  try {
    for (const e of Object.values(readAutotune(cacheFile).entries)) {
      if (e.hardware.name === hardwareName && e.calibration && (!latest || e.measuredAt > latest.measuredAt)) latest = e;
    }
  } catch {
    return null;
  }
  if (!latest) return null;
  const k: Record<string, unknown> = { ...base };
  for (const n of FIT_NAMES) {
    const v = latest.calibration!.constants[n];
    if (typeof v === "number" && v > 0) k[n] = v;
  }
  return k as unknown as CostConstants;
}

/** The llama.cpp adapter's benchmark arguments (llama-bench) for a plan: autotune's trials run them. */
function benchArgsOf(plan: Plan, counts: BenchCounts): string[] {
  const adapter = adapterFor("llama.cpp");
  if (!adapter.benchArgs) throw new Error("the llama.cpp adapter declares no benchmark arguments");
  return adapter.benchArgs(plan, counts);
}

/**
 * Trial the plan's top candidates, choose the measured best for the workload, calibrate, store.
 * @throws PlanError when no candidate fits or every trial failed (the message lists why).
 */
export async function autotune(plan: Plan, recipe: AutotuneRecipe, opts: AutotuneOptions = {}): Promise<AutotuneResult> {
  const err = opts.stderr ?? ((t: string) => process.stderr.write(t));
  const cacheFile = opts.cacheFile === undefined ? autotunePath() : opts.cacheFile;
  if (plan.runtime !== "llama.cpp") {
    throw new PlanError(`autotune runs llama-bench trials, so it needs runtime llama.cpp (the plan is for ${plan.runtime})`);
  }
  const files: string[] = [];
  if (cacheFile && !opts.force) {
    const hit = findAutotune(plan, cacheFile);
    if (hit) {
      err(`autotune: using the outcome measured ${hit.measuredAt} (${cacheFile}); --force runs the trials again\n`);
      return { plan: applyAutotune(plan, hit), entry: hit, fromCache: true, files: writeOutputs(hit, opts, files) };
    }
  }
  // Real trials need the file (an injected runner, as in tests, brings its own measurements).
  if (opts.runTrial === undefined && !existsSync(plan.model.path)) {
    throw new PlanError(`autotune: the model file ${plan.model.path} does not exist (the plan was made from the model's known shape); make it first (spillway run synthesizes known synthetic models, or download it) and autotune again`);
  }
  const trialSeconds = opts.trialSeconds ?? 8;
  const picked = selectTrialCandidates(plan, opts.top ?? 4);
  if (picked.length === 0) throw new PlanError("autotune: no candidate of the plan fits, nothing to try");
  const run = opts.runTrial ?? runLlamaBench;
  const timeoutMs = 1000 * (opts.trialTimeoutSeconds ?? Math.max(180, 10 * trialSeconds));
  const rows: AutotuneRow[] = [];
  for (const [i, c] of picked.entries()) {
    const counts = trialCounts(plan.workload, c.predicted, trialSeconds);
    // Hybrid candidates run the patched build with its switches, as `spillway run` launches them.
    const build = adapterFor("llama.cpp").planBuild?.(c.settings) ?? null;
    const program = trialProgram(recipe, opts, build);
    const argv = [program ?? "llama-bench", ...benchArgsOf(withSettings(plan, c.settings), counts), ...(opts.benchArgs ?? [])];
    const env = {
      ...shimEnvironment(c.settings.shim, opts.shimPath ? { shimPath: opts.shimPath } : undefined),
      ...(build?.env ?? {}),
      ...(recipe.runtime.env ?? {}),
    };
    const row: AutotuneRow = { id: c.id, label: c.label, strategy: c.strategy, predicted: c.predicted, measured: null, argv, env };
    err(`autotune [${i + 1}/${picked.length}] ${c.id}: pp${counts.promptTokens} tg${counts.genTokens} x${counts.repetitions} ... `);
    if (build && program === null) {
      row.error = `not tried: the patched llama-bench is not built. ${build.hint()}`;
      err(`${row.error}\n`);
      rows.push(row);
      continue;
    }
    try {
      const m = await run(argv, env, timeoutMs);
      row.measured = tps3(m, plan.workload);
      row.wallSeconds = +m.wallSeconds.toFixed(1);
      err(`${m.prefillTps.toFixed(0)} tok/s prefill, ${m.decodeTps.toFixed(1)} tok/s decode (predicted ${c.predicted.prefillTps}, ${c.predicted.decodeTps})\n`);
    } catch (e) {
      row.error = e instanceof SpillwayError ? e.message : String(e);
      err(`failed: ${row.error}\n`);
    }
    rows.push(row);
  }
  const best = pickMeasuredBest(rows);
  if (!best) {
    throw new PlanError(`autotune: every trial failed:\n${rows.map((r) => `  ${r.id}: ${r.error}`).join("\n")}`);
  }
  let calibration: AutotuneEntry["calibration"];
  if (opts.model && opts.hardware) {
    try {
      calibration = calibrate(rows, plan, recipe, opts);
    } catch (e) {
      err(`autotune: calibration skipped: ${(e as Error).message}\n`);
    }
  }
  const chosen = plan.candidates.find((c) => c.id === best.id)!;
  const entry: AutotuneEntry = {
    key: autotuneKey(plan),
    measuredAt: new Date().toISOString(),
    model: plan.model,
    hardware: plan.hardware,
    workload: plan.workload,
    predictedChoice: plan.chosen,
    chosen: best.id,
    settings: chosen.settings,
    rows,
    calibration,
  };
  if (cacheFile) writeAutotune(entry, cacheFile);
  return { plan: applyAutotune(plan, entry), entry, fromCache: false, files: writeOutputs(entry, opts, files) };
}

function writeOutputs(entry: AutotuneEntry, opts: AutotuneOptions, files: string[]): string[] {
  if (!opts.outDir) return files;
  mkdirSync(opts.outDir, { recursive: true });
  const j = join(opts.outDir, "autotune.json");
  writeFileSync(j, JSON.stringify(entry, null, 2) + "\n");
  const md = join(opts.outDir, "autotune.md");
  writeFileSync(md, formatAutotuneTable(entry));
  const svg = autotuneChartSvg(entry);
  const s = join(opts.outDir, "autotune.svg");
  writeFileSync(s, svg);
  files.push(j, md, s);
  try {
    const p = join(opts.outDir, "autotune.png");
    writeFileSync(p, renderPng(svg));
    files.push(p);
  } catch (e) {
    (opts.stderr ?? ((t: string) => process.stderr.write(t)))(`autotune: PNG not written (${(e as Error).message}); the SVG is there\n`);
  }
  return files;
}

/**
 * Runs a matrix on the GPU machine: synthesizes the models, measures the all-in-VRAM reference,
 * starts the ballast for each free-VRAM level, derives each method's flags (llama-fit-params, the
 * plan, the naive layer count), runs llama-bench and the llama-perplexity logits check per method,
 * then the PyTorch comparison, and writes results.json after every step plus results.md at the end.
 * Each step is time-boxed inside the invocation's deadline; what does not fit is recorded as skipped.
 *
 * @module
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { BenchReport } from "../../engine/hardware/measure/run.ts";
import { readModel } from "../../engine/model/mod.ts";
import { adapterFor } from "../../engine/runtimes/mod.ts";
import type { ModelInfo, Plan } from "../../core/types.ts";
import { shimEnv } from "../../shim/build.ts";
import { type Ballast, startBallast } from "./ballast.ts";
import {
  benchFigures,
  benchToCommonFlags,
  checkText,
  commonToBenchFlags,
  naiveGpuLayers,
  parseFitParams,
  parseLlamaBenchJson,
  parsePerplexity,
  runUntilStats,
} from "./llama.ts";
import { machineDetails } from "./machine.ts";
import { type LlamaMethod, loadBenchMatrix, type Matrix, type MatrixModel, type MatrixWorkload } from "./matrix.ts";
import { runStep, type StepResult } from "./proc.ts";
import { runServerSection } from "./server.ts";
import { renderMarkdown } from "./table.ts";
import { type CheckResult, type MethodResult, type RunResults, writeResults } from "./results.ts";
import { ensureModel, modelsDir } from "./synth.ts";
import type { RunContext } from "./context.ts";

export type { RunContext } from "./context.ts";

const GiB = 2 ** 30;

function log(ctx: RunContext, s: string): void {
  const line = `[harness ${new Date().toISOString().slice(11, 19)}] ${s}`;
  console.log(line);
}

/** Seconds left before the deadline, keeping `keep` seconds for writing results. */
function left(ctx: RunContext, keep = 10): number {
  return Math.floor((ctx.deadline - Date.now()) / 1000) - keep;
}

function tail(s: string, n = 1500): string {
  return s.length > n ? s.slice(-n) : s;
}

function failResult(base: Omit<MethodResult, "status" | "prefill" | "decode" | "endToEnd" | "check" | "seconds">, status: MethodResult["status"], error: string, seconds = 0): MethodResult {
  return { ...base, prefill: null, decode: null, endToEnd: null, check: { mode: "none", pass: null, how: "not run" }, seconds, status, error };
}

/** CPU threads (-t) a method runs and is checked with: its own where it sets them, else the matrix's. */
export function methodThreads(m: Pick<LlamaMethod, "threads">, matrix: Pick<Matrix, "threads">): number {
  return m.threads ?? matrix.threads;
}

/** The workload's llama-bench test flags (depth: -d, issue 21). */
export function testFlags(w: MatrixWorkload, reps: number, threads: number): string[] {
  const f = ["-p", String(w.prompt), "-n", String(w.gen), "-r", String(reps), "-t", String(threads), "-o", "json"];
  if (w.endToEnd) f.push("-pg", `${w.prompt},${Math.max(w.gen, 256)}`);
  // Issue 21: pp and tg after `depth` tokens already in the KV cache (a long context).
  if (w.depth > 0) f.push("-d", String(w.depth));
  return f;
}

/** Context a workload needs (rounded up to 256), its depth included. */
export function contextOf(w: MatrixWorkload): number {
  return Math.ceil((w.depth + w.prompt + Math.max(w.gen, w.endToEnd ? 256 : 0)) / 256) * 256;
}

/** A method's llama-bench flags and environment, and where they came from. */
export interface Derived {
  flags: string[];
  env: Record<string, string>;
  derivedFrom: string;
  /** The derivation's own thread count (a plan's), over the method's. */
  threads?: number;
}

/**
 * A `fit` method's llama-bench flags: llama-fit-params' choice, then the method's own flags and
 * environment. The fit itself ran with the method's flags too (see `fitParamsArgs`), so llama.cpp
 * sized its placement for them: pinned experts (`-lm none`) need VRAM for prefill's expert copies
 * that mmap'd ones, computed on the CPU, do not.
 *
 * @example
 * fitMethodFlags(["-ngl", "49", "-ot", "a=CPU,b=CPU"], { flags: ["-lm", "none"], env: {} }, 4352).flags;
 * // ["-ngl", "49", "-ot", "a=CPU;b=CPU", "-lm", "none"]
 */
export function fitMethodFlags(common: string[], c: { flags: string[]; env: Record<string, string> }, context: number): Derived {
  const own = benchToCommonFlags(c.flags);
  const extra = c.flags.length || Object.keys(c.env).length
    ? `; then ${[...c.flags, ...Object.entries(c.env).map(([k, v]) => `${k}=${v}`)].join(" ")}`
    : "";
  return {
    flags: [...commonToBenchFlags(common), ...c.flags],
    env: { ...c.env },
    derivedFrom: `llama-fit-params -c ${context}${own.length ? ` ${own.join(" ")}` : ""} printed: ${common.join(" ")}${extra}`,
  };
}

/** llama-fit-params' arguments for a `fit` method: the model, context, threads and the method's own flags. */
export function fitParamsArgs(modelPath: string, context: number, threads: number, flags: string[]): string[] {
  return ["-m", modelPath, "-c", String(context), "-t", String(threads), ...benchToCommonFlags(flags)];
}

/**
 * A `planned` method's llama-bench flags (the adapter's, minus what the harness sets per workload)
 * environment and threads: the shim's environment for a zero-copy plan, the patched build's switches
 * for a hybrid one (issue 22; the run needs SPILLWAY_LLAMA_PATCHED=1), as `spillway run` sets them.
 */
export function plannedFlags(plan: Plan, w: Pick<MatrixWorkload, "prompt" | "gen">, shimLibrary: string): { flags: string[]; env: Record<string, string>; threads: number } {
  const argv = adapterFor("llama.cpp").benchArgs!(plan, { promptTokens: w.prompt, genTokens: w.gen });
  const flags: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (["-m", "-p", "-n", "-r", "-o", "-t"].includes(argv[i])) i++;
    else flags.push(argv[i]);
  }
  // The switches of a plan that needs the patched build (hybrid experts), as its adapter gives them.
  const env = { ...(plan.settings.shim ? shimEnv(plan.settings.shim, shimLibrary) : {}), ...(adapterFor("llama.cpp").planBuild?.(plan.settings)?.env ?? {}) };
  // The plan's threads: a hybrid plan leaves a core for the patched build's launch thread.
  return { flags, env, threads: plan.settings.threads };
}

/** The flags (llama-bench form) and environment of a method, running helper programs as needed. */
async function deriveFlags(ctx: RunContext, m: LlamaMethod, model: ModelInfo, modelPath: string, w: MatrixWorkload, ballast: Ballast | null, matrix: Matrix): Promise<Derived> {
  const c = m.config;
  switch (c.kind) {
    case "all-vram":
      return { flags: ["-ngl", "99"], env: {}, derivedFrom: "all layers on the GPU, no ballast" };
    case "flags":
      return { flags: commonToBenchFlags(c.flags), env: c.env, derivedFrom: `fixed flags from the matrix${Object.keys(c.env).length ? `, environment ${Object.entries(c.env).map(([k, v]) => `${k}=${v}`).join(" ")}` : ""}` };
    case "naive-layers": {
      const free = ballast?.freeBytes ?? 0;
      const n = naiveGpuLayers(model, free, c.reserveGiB * GiB, contextOf(w));
      return { flags: ["-ngl", String(n)], env: {}, derivedFrom: `largest -ngl whose layers + KV fit ${(free / GiB).toFixed(2)} GiB free minus ${c.reserveGiB} GiB` };
    }
    case "fit": {
      const argv = [join(ctx.llamaBin, "llama-fit-params"), ...fitParamsArgs(modelPath, contextOf(w), matrix.threads, c.flags)];
      const r = await runStep(argv, { timeoutS: Math.min(120, left(ctx)), logFile: ctx.logFile });
      if (r.code !== 0) throw new Error(`llama-fit-params failed (${r.code}): ${tail(r.stderr, 600)}`);
      return fitMethodFlags(parseFitParams(r.stdout), c, contextOf(w));
    }
    case "shim": {
      const lib = join(ctx.root, "shim/build/libspillway_shim.so");
      if (!existsSync(lib)) throw new Error(`shim library ${lib} not built (make -C shim)`);
      const env = { ...shimEnv({ reserveBytes: 1 * GiB, minSpillBytes: 32 << 20, backing: "auto", report: "vram+host" }, lib), ...c.env };
      return { flags: commonToBenchFlags(c.flags.length > 0 ? c.flags : ["-ngl", "99"]), env, derivedFrom: "all layers on the GPU; the shim spills what does not fit to host memory" };
    }
    case "planned": {
      if (!ctx.spillwayCli) throw new Error("bench/.pack/spillway.mjs missing (cli.ts did not bundle): no plan");
      const recipe = join(ctx.work, `recipe-${m.id}.json`);
      writeFileSync(recipe, JSON.stringify({
        name: `bench-${m.id}`,
        model: { path: modelPath },
        runtime: "llama.cpp",
        context: contextOf(w),
        threads: matrix.threads,
        workload: c.objective === "custom" ? { promptTokens: w.depth + w.prompt, generatedTokens: Math.max(w.gen, w.endToEnd ? 256 : 0) } : c.objective,
        placement: "auto",
        hardware: "probe",
        ...(c.kvTypes ? { kvCache: { types: c.kvTypes } } : {}),
      }, null, 2));
      const argvPlan = [ctx.node, ctx.spillwayCli, "plan", recipe, "--json", "--hardware", "probe"];
      if (c.autotune) {
        // Trials run under the same ballast; the outcome (JSON, table, chart) lands beside the logs.
        argvPlan.push("--autotune", "--force", "--trial-seconds", "5", "--top", "4", "--llama-bench", join(ctx.llamaBin, "llama-bench"), "--out-dir", join(ctx.work, "logs", "autotune"));
      }
      const r = await runStep(argvPlan, { env: { SPILLWAY_SHIM: join(ctx.root, "shim/build/libspillway_shim.so") }, timeoutS: Math.min(c.autotune ? 300 : 120, left(ctx)), logFile: ctx.logFile });
      if (r.code !== 0) throw new Error(`spillway plan failed (${r.code}): ${tail(r.stderr + r.stdout, 800)}`);
      // `plan --json` prints the Plan; with --autotune, {plan, autotune, files}.
      const parsed = JSON.parse(r.stdout.slice(r.stdout.indexOf("{"))) as Plan | { plan: Plan };
      const plan = "version" in parsed ? parsed : parsed.plan;
      return { ...plannedFlags(plan, w, join(ctx.root, "shim/build/libspillway_shim.so")), derivedFrom: `spillway plan chose '${plan.chosen}' on hardware '${plan.hardware.name}': ${plan.reason}` };
    }
  }
}

/** Runs the logits check of one method against the reference KL-divergence base file. */
async function checkMethod(ctx: RunContext, m: LlamaMethod, modelPath: string, d: Derived, matrix: Matrix, refBase: string, textFile: string, timeoutS: number): Promise<CheckResult> {
  const { flags, env } = d;
  const common = benchToCommonFlags(flags);
  const isRef = m.config.kind === "all-vram";
  const argv = [join(ctx.llamaBin, "llama-perplexity"), "-m", modelPath, "-f", textFile, "-c", String(matrix.checkContext), "--chunks", String(matrix.checkChunks), "-t", String(d.threads ?? methodThreads(m, matrix)), ...common,
    ...m.checkFlags, "--kl-divergence-base", refBase];
  if (!isRef) argv.push("--kl-divergence");
  // The reference run's log tail matters not (it writes the base file); a compared run's does.
  const t0 = Date.now();
  const leftS = () => timeoutS - (Date.now() - t0) / 1000;
  const once = () => runStep(argv, { env, timeoutS: leftS(), logFile: ctx.logFile });
  const { run: r, attempts } = isRef ? { run: await once(), attempts: 1 } : await runUntilStats(once, 4, () => leftS() >= 15);
  const lm = common.findIndex((f) => f === "-lm" || f === "--load-mode");
  const loadMode = lm >= 0 ? ` -lm ${common[lm + 1]}` : "";
  const how = `llama-perplexity -c ${matrix.checkContext} --chunks ${matrix.checkChunks}${loadMode}${m.checkFlags.length ? ` ${m.checkFlags.join(" ")}` : ""} ${isRef ? "(writes the reference logits)" : "--kl-divergence vs all-vram"}`;
  if (r.code !== 0) return { mode: m.check.mode, pass: isRef ? null : false, how, detail: `exit ${r.code}${r.timedOut ? " (timeout)" : ""}: ${tail(r.stderr, 400)}` };
  const s = parsePerplexity(r.stdout + r.stderr);
  if (isRef) return { mode: "none", pass: null, how, ppl: s.ppl ?? undefined, detail: "reference" };
  const res: CheckResult = { mode: m.check.mode, pass: null, how, meanKld: s.meanKld ?? undefined, sameTopPct: s.sameTopPct ?? undefined, ppl: s.ppl ?? undefined, refPpl: s.refPpl ?? undefined };
  if (s.meanKld === null || s.sameTopPct === null) {
    res.pass = false;
    res.detail = `no KL-divergence statistics in the output (${attempts} run${attempts === 1 ? "" : "s"})`;
  } else if (m.check.mode === "exact") {
    res.pass = Math.abs(s.meanKld) < 1e-6 && s.sameTopPct >= 99.999;
  } else if (m.check.mode === "close") {
    res.pass = s.meanKld <= m.check.maxKld && s.sameTopPct >= m.check.minSameTop * 100;
  }
  return res;
}

async function runLlamaMethod(ctx: RunContext, matrix: Matrix, m: LlamaMethod, mm: MatrixModel, info: ModelInfo, modelPath: string, w: MatrixWorkload, ballast: Ballast | null, level: number | null, refBase: string | null, textFile: string): Promise<MethodResult> {
  const t0 = performance.now();
  const base = { id: m.id, label: m.label, runtime: "llama.cpp" as const, model: mm.id, freeVramGiB: level, ballastFreeBytes: ballast?.freeBytes ?? null, workload: w.id, command: [] as string[], env: {} as Record<string, string> };
  const budget = Math.min(matrix.stepTimeoutS, left(ctx));
  if (budget < 20) return failResult(base, "skipped", "no time left in this invocation");
  let d: Derived;
  try {
    d = await deriveFlags(ctx, m, info, modelPath, w, ballast, matrix);
  } catch (e) {
    return failResult(base, "failed", `deriving flags: ${(e as Error).message}`, (performance.now() - t0) / 1000);
  }
  const tests = m.endToEnd === null ? w : { ...w, endToEnd: w.endToEnd && m.endToEnd };
  const argv = [join(ctx.llamaBin, "llama-bench"), "-m", modelPath, ...testFlags(tests, matrix.repetitions, d.threads ?? methodThreads(m, matrix)), ...d.flags];
  const full = { ...base, command: argv, env: d.env, derivedFrom: d.derivedFrom };
  log(ctx, `${m.id}: ${argv.slice(1).join(" ")}`);
  const r: StepResult = await runStep(argv, { env: d.env, timeoutS: Math.min(matrix.stepTimeoutS, left(ctx)), logFile: ctx.logFile });
  let figures: ReturnType<typeof benchFigures> = { prefill: null, decode: null, endToEnd: null };
  let status: MethodResult["status"] = "ok";
  let error: string | undefined;
  try {
    figures = benchFigures(parseLlamaBenchJson(r.stdout));
  } catch (e) {
    status = r.timedOut ? "timeout" : "failed";
    error = `llama-bench exit ${r.code}${r.timedOut ? " (timeout)" : ""}: ${(e as Error).message}; stderr: ${tail(r.stderr, 800)}`;
  }
  if (r.code !== 0 && status === "ok") {
    status = r.timedOut ? "timeout" : "failed";
    error = `llama-bench exit ${r.code}: ${tail(r.stderr, 800)}`;
  }
  let check: CheckResult = { mode: m.check.mode, pass: null, how: "not run" };
  const checkBudget = Math.min(90, left(ctx));
  if (m.check.mode === "none" && m.config.kind !== "all-vram") check = { mode: "none", pass: null, how: "not checked (matrix says none)" };
  else if (checkBudget < 15) check.detail = "no time left for the check";
  else if (refBase === null) check.detail = "no reference logits";
  else if (m.config.kind !== "all-vram" && !existsSync(refBase)) check.detail = "the reference run wrote no logits";
  else check = await checkMethod(ctx, m, modelPath, d, matrix, refBase, textFile, checkBudget);
  log(ctx, `${m.id}: ${status} pp=${figures.prefill?.tps.toFixed(1)} tg=${figures.decode?.tps.toFixed(2)} e2e=${figures.endToEnd?.tps.toFixed(1)} check=${check.pass}`);
  return { ...full, ...figures, check, seconds: (performance.now() - t0) / 1000, status, ...(error ? { error } : {}) };
}

/**
 * Zero-copy and VRAM read rates for rooflines: this run's `spillway bench` figures (tiers.json in
 * the results folder, written by entry.sh) when present, else the NOTES reference of one H200.
 */
function tierRates(ctx: RunContext): { zeroCopy: number; vram: number; source: string } {
  try {
    const t = JSON.parse(readFileSync(join(ctx.out, "tiers.json"), "utf8")) as BenchReport;
    const m = t.profile.measured;
    if (m?.zeroCopyGBps && m.vramGBps) return { zeroCopy: m.zeroCopyGBps.median, vram: m.vramGBps.median, source: "rates measured by spillway bench in this run" };
  } catch {
    // no tiers in this run
  }
  return { zeroCopy: 51.3, vram: 4485, source: "reference rates of shared/gpu/NOTES.md" };
}

/** PyTorch comparison: bench/gpu/torch_bench.py per method; it prints `RESULT {json}`. */
async function runTorchMethod(ctx: RunContext, matrix: Matrix, method: "all-vram" | "accelerate" | "shim", ballast: Ballast | null, level: number | null): Promise<MethodResult> {
  const t = matrix.torch!;
  const t0 = performance.now();
  const ref = join(ctx.work, `torch-ref-${t.shape}.pt`);
  const argv = [ctx.python, join(ctx.root, "bench/gpu/torch_bench.py"), "--method", method, "--shape", t.shape, "--dtype", t.dtype, "--prompt", String(t.prompt), "--gen", String(t.gen), "--ref", ref];
  if (ballast) argv.push("--free-bytes", String(ballast.freeBytes));
  let env: Record<string, string> = { PYTHONUNBUFFERED: "1" };
  const lib = join(ctx.root, "shim/build/libspillway_shim.so");
  const base = { id: `torch-${method}`, label: `PyTorch ${t.shape} ${t.dtype}: ${method === "all-vram" ? "all in VRAM (no ballast)" : method === "accelerate" ? "accelerate device_map CPU offload" : "spillway shim, model.to('cuda')"}`, runtime: "torch" as const, model: t.shape, freeVramGiB: level, ballastFreeBytes: ballast?.freeBytes ?? null, workload: `p${t.prompt}-n${t.gen}`, command: argv, env };
  if (method === "shim") {
    if (!existsSync(lib)) return failResult(base, "failed", `shim library ${lib} not built`);
    env = { ...env, ...shimEnv({ reserveBytes: 1 * GiB, minSpillBytes: 32 << 20, backing: "auto", report: "vram+host" }, lib) };
    base.env = env;
  }
  const budget = Math.min(t.timeoutS, left(ctx));
  if (budget < 30) return failResult(base, "skipped", "no time left in this invocation");
  log(ctx, `torch-${method}: start`);
  const r = await runStep(argv, { env, timeoutS: budget, logFile: ctx.logFile });
  const line = r.stdout.split("\n").find((l) => l.startsWith("RESULT "));
  if (!line) {
    return failResult(base, r.timedOut ? "timeout" : "failed", `torch_bench exit ${r.code}: ${tail(r.stderr + r.stdout, 1000)}`, (performance.now() - t0) / 1000);
  }
  const o = JSON.parse(line.slice(7)) as {
    prefill_tps: number; decode_tps: number; decode_samples: number[]; prefill_samples: number[]; weight_bytes?: number; free_bytes?: number;
    decode_trace?: [number, number, number | null][]; shim_after_load?: { host_bytes: number; vram_bytes: number } | null;
    check: { compared: boolean; max_abs_diff?: number; argmax_agree_pct?: number; exact?: boolean; detail?: string };
  };
  const exact = method === "all-vram" ? null : o.check.compared ? (o.check.exact ?? false) : null;
  const check: CheckResult = {
    mode: method === "all-vram" ? "none" : "exact",
    pass: exact,
    how: method === "all-vram" ? "writes the reference logits" : "prefill logits vs all-vram (bit-identical expected: same kernels, same weights); greedy tokens reported in detail",
    maxAbsDiff: o.check.max_abs_diff,
    argmaxAgreePct: o.check.argmax_agree_pct,
    detail: o.check.detail,
  };
  const mk = (tps: number, tokens: number, samples: number[]) => {
    const mean = tps;
    const sd = samples.length > 1 ? Math.sqrt(samples.reduce((a, b) => a + (b - mean) ** 2, 0) / (samples.length - 1)) : 0;
    return { tokens, tps, stddev: sd, samples };
  };
  log(ctx, `torch-${method}: pp=${o.prefill_tps.toFixed(1)} tg=${o.decode_tps.toFixed(2)} check=${check.pass}`);
  // Zero-copy roofline of a decode step: every weight byte the shim placed in host memory crosses
  // PCIe once per token at the measured zero-copy rate, the rest is read from VRAM. The host bytes
  // come from the shim's own record right after model.to("cuda"), so only weights count (the
  // embedding table, the one weight not read whole per token, is moved first and stays in VRAM).
  let roofline: MethodResult["roofline"];
  const hostBytes = o.shim_after_load?.host_bytes;
  if (method === "shim" && o.weight_bytes && hostBytes !== undefined) {
    const { zeroCopy, vram, source } = tierRates(ctx);
    const tps = 1 / (hostBytes / (zeroCopy * 1e9) + Math.max(0, o.weight_bytes - hostBytes) / (vram * 1e9));
    roofline = { decodeTps: tps, basis: `${(hostBytes / 1e9).toFixed(2)} GB of ${(o.weight_bytes / 1e9).toFixed(2)} GB weights in host memory (shim record) over PCIe at ${zeroCopy.toFixed(1)} GB/s, the rest from VRAM at ${vram.toFixed(0)} GB/s (${source})` };
  }
  const decodeTrace = o.decode_trace?.map(([wallMs, cpuMs, smMhz]) => ({ wallMs, cpuMs, smMhz }));
  return { ...base, ...(roofline ? { roofline } : {}), ...(decodeTrace ? { decodeTrace } : {}), prefill: mk(o.prefill_tps, t.prompt, o.prefill_samples), decode: mk(o.decode_tps, t.gen, o.decode_samples), endToEnd: null, check, seconds: (performance.now() - t0) / 1000, status: r.code === 0 ? "ok" : "failed" };
}

/** Runs the whole matrix; returns the results (also written to ctx.out/results.json). */
export async function runMatrix(matrix: Matrix, ctx: RunContext): Promise<RunResults> {
  mkdirSync(ctx.out, { recursive: true });
  mkdirSync(ctx.work, { recursive: true });
  const resultsFile = join(ctx.out, "results.json");
  const software: Record<string, string> = { node: process.version };
  const commitFile = join(ctx.llamaBin, "../../.spillway-commit");
  if (existsSync(commitFile)) software.llamaCpp = readFileSync(commitFile, "utf8").trim();
  const results: RunResults = {
    version: 1, kind: "gpu", matrix: matrix.name, startedAt: new Date().toISOString(), finishedAt: null,
    machine: machineDetails(), software, phases: {}, results: [], notes: [...ctx.notes],
  };
  const save = (): void => writeResults(resultsFile, results);
  save();
  const want = (id: string): boolean => ctx.only === null || ctx.only.has(id);
  const textFile = join(ctx.work, "check.txt");
  writeFileSync(textFile, checkText((matrix.checkContext * (matrix.checkChunks + 1)) * 2));

  for (const mm of matrix.models) {
    const t0 = performance.now();
    const dir = modelsDir(ctx.work, 40 * GiB);
    const { path: modelPath, seconds } = await ensureModel(mm, dir, (s) => log(ctx, s));
    results.phases[`synth-${mm.id}`] = seconds;
    results.notes.push(`model ${mm.id}: ${mm.shape} ${mm.quant} at ${modelPath}${seconds > 0 ? ` synthesized in ${seconds.toFixed(1)} s` : " (reused)"}`);
    const info = await readModel(modelPath);
    results.phases[`read-${mm.id}`] = (performance.now() - t0) / 1000 - seconds;
    save();
    for (const w of matrix.workloads) {
      const refBase = join(ctx.work, `ref-${mm.id}-${w.id}.kld`);
      // Reference (no ballast) first: its logits are what every other method is checked against.
      for (const m of matrix.methods.filter((x) => !x.ballast && want(x.id))) {
        const r = await runLlamaMethod(ctx, matrix, m, mm, info, modelPath, w, null, null, refBase, textFile);
        results.results.push(r);
        save();
      }
      if (matrix.torch && matrix.torch.methods.includes("all-vram") && want("torch-all-vram") && mm === matrix.models[0] && w === matrix.workloads[0]) {
        results.results.push(await runTorchMethod(ctx, matrix, "all-vram", null, null));
        save();
      }
      for (const level of matrix.freeVramGiB) {
        const methods = matrix.methods.filter((x) => x.ballast && want(x.id));
        const torchHere = matrix.torch && level === matrix.freeVramGiB[0] && mm === matrix.models[0] && w === matrix.workloads[0]
          ? matrix.torch.methods.filter((x) => x !== "all-vram" && want(`torch-${x}`)) : [];
        if (methods.length === 0 && torchHere.length === 0) continue;
        let ballast: Ballast;
        const tb = performance.now();
        try {
          ballast = await startBallast(join(ctx.root, "bench/gpu/ballast.py"), level, { python: ctx.python, lifetimeS: Math.max(30, left(ctx, 0)), logFile: ctx.logFile });
        } catch (e) {
          results.notes.push(`ballast ${level} GiB failed: ${(e as Error).message}`);
          save();
          continue;
        }
        results.phases[`ballast-${level}`] = (performance.now() - tb) / 1000;
        log(ctx, `ballast: ${(ballast.freeBytes / GiB).toFixed(2)} GiB free (pid ${ballast.pid})`);
        try {
          for (const m of methods) {
            const r = await runLlamaMethod(ctx, matrix, m, mm, info, modelPath, w, ballast, level, refBase, textFile);
            results.results.push(r);
            save();
          }
          for (const tm of torchHere) {
            results.results.push(await runTorchMethod(ctx, matrix, tm, ballast, level));
            save();
          }
        } finally {
          await ballast.stop();
        }
      }
    }
    // llama-server through its HTTP API (the real `spillway run` path), in its own ballast window.
    await runServerSection({ ctx, matrix, model: mm, info, modelPath, results, save, log: (s) => log(ctx, s), left: (keep) => left(ctx, keep), want });
  }
  results.finishedAt = new Date().toISOString();
  save();
  writeFileSync(join(ctx.out, "results.md"), renderMarkdown(results));
  return results;
}

/** `harness matrix --matrix F --llama-bin D --work D --out D --root D --deadline S [--only a,b]`. */
export async function matrixCommand(o: Record<string, string>): Promise<number> {
  const root = resolve(o.root ?? ".");
  const matrix = loadBenchMatrix(resolve(o.matrix ?? join(root, "bench/matrices/moe30b-12g.json5")));
  // One invocation (entry.sh all) must also build: fewer repetitions keep it inside 10 minutes.
  if (o.repetitions && o.repetitions !== "true") matrix.repetitions = Number(o.repetitions);
  const pack = join(root, "bench/.pack");
  const only = o.only ?? process.env.SPILLWAY_BENCH_ONLY;
  const ctx: RunContext = {
    root,
    llamaBin: resolve(o["llama-bin"] ?? "/tmp/spillway-bench/llama.cpp/build/bin"),
    work: resolve(o.work ?? "/tmp/spillway-bench"),
    out: resolve(o.out ?? "bench/.out"),
    deadline: o.deadline ? Number(o.deadline) * 1000 : Date.now() + 9 * 60_000,
    logFile: join(resolve(o.work ?? "/tmp/spillway-bench"), "logs", "steps.log"),
    only: only ? new Set(only.split(",").map((s) => s.trim()).filter(Boolean)) : null,
    python: o.python ?? "python3",
    spillwayCli: existsSync(join(pack, "spillway.mjs")) ? join(pack, "spillway.mjs") : null,
    node: process.execPath,
    notes: [],
  };
  mkdirSync(join(ctx.work, "logs"), { recursive: true });
  if (o.repetitions && o.repetitions !== "true") ctx.notes.push(`repetitions overridden to ${matrix.repetitions} (llama-bench -r) for this invocation`);
  const r = await runMatrix(matrix, ctx);
  const bad = r.results.filter((x) => x.status !== "ok" || x.check.pass === false);
  console.log(readFileSync(join(ctx.out, "results.md"), "utf8"));
  return bad.length === 0 ? 0 : 1;
}

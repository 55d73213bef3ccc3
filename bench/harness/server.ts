/**
 * The server section of a matrix: llama-server measured through its HTTP API, started directly
 * (all in VRAM, its defaults, hand-tuned flags) or by `spillway run <recipe>` (the real
 * path, with spillway's plan applied by spillway itself). Each method: start the server as a
 * tracked, time-boxed child (proc.ts), poll GET /health until 200, send one short warm-up and
 * `repetitions` measured POST /completion requests (token-id prompt, greedy, EOS ignored), read
 * llama-server's own `timings` and our wall time, then stop it (SIGTERM to the command, SIGKILL to
 * its group after the grace time) and check that nothing of the launch outlived it.
 *
 * @module
 */
import type { ChildProcess } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { exitStatus } from "../../core/exit_status.ts";
import type { ModelInfo } from "../../core/types.ts";
import { type Ballast, startBallast } from "./ballast.ts";
import type { Matrix, MatrixModel, ServerMethod, ServerSection } from "./matrix.ts";
import { formatCommand, startChild, type StepResult } from "./proc.ts";
import { type CheckResult, meanStd, type MethodResult, type RunResults, type StopReport, type Throughput } from "./results.ts";
import type { RunContext } from "./context.ts";
import { measureSlotRestore } from "./slot_restore.ts";
import { HOST, postJson } from "./http.ts";


const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * `n` deterministic pseudo-random token ids (xorshift32 from `seed`): in [100, vocabSize) when the
 * vocabulary size is known, else in [1, 256) (ids every vocabulary of a real model has).
 */
export function promptTokenIds(n: number, vocabSize: number | undefined, seed = 1): number[] {
  const known = vocabSize !== undefined && vocabSize > 1000;
  const lo = known ? 100 : 1;
  const span = (known ? vocabSize! : 256) - lo;
  let x = (Math.imul(seed, 2654435761) >>> 0) || 1;
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out.push(lo + (x % span));
  }
  return out;
}

/** llama-server's `timings` of one request. */
export interface ServerTimings {
  promptN: number;
  promptMs: number;
  promptTps: number;
  predictedN: number;
  predictedMs: number;
  predictedTps: number;
}

/** The `timings` object of a /completion response; throws naming what is missing. */
export function parseTimings(body: unknown): ServerTimings {
  const t = (body as { timings?: Record<string, unknown> } | null)?.timings;
  if (typeof t !== "object" || t === null) throw new Error(`no 'timings' in the /completion response: ${JSON.stringify(body).slice(0, 300)}`);
  const n = (k: string): number => {
    const v = t[k];
    if (typeof v !== "number" || !Number.isFinite(v)) throw new Error(`'timings.${k}' missing or not a number in the /completion response: ${JSON.stringify(t).slice(0, 300)}`);
    return v;
  };
  return {
    promptN: n("prompt_n"),
    promptMs: n("prompt_ms"),
    promptTps: n("prompt_per_second"),
    predictedN: n("predicted_n"),
    predictedMs: n("predicted_ms"),
    predictedTps: n("predicted_per_second"),
  };
}

/** One /completion request as measured. */
export interface CompletionSample {
  timings: ServerTimings;
  /** Wall seconds of the request on our side (send to full response). */
  seconds: number;
  /** Generated token ids (`return_tokens`), or null when the server sent none. */
  tokens: number[] | null;
}

/** GET /health: the HTTP status, or null when nothing answers within `timeoutMs`. */
export async function healthStatus(port: number, timeoutMs = 2000): Promise<number | null> {
  try {
    const res = await fetch(`http://${HOST}:${port}/health`, { signal: AbortSignal.timeout(Math.max(1, Math.round(timeoutMs))) });
    await res.text();
    return res.status;
  } catch {
    return null;
  }
}

/**
 * POST /completion with `prompt` token ids and `gen` greedy tokens (EOS ignored, prompt cache off,
 * so every request processes the whole prompt). Throws on an HTTP error or a missing `timings`.
 */
export async function requestCompletion(port: number, prompt: number[], gen: number, timeoutMs: number): Promise<CompletionSample> {
  const body = { prompt, n_predict: gen, ignore_eos: true, cache_prompt: false, temperature: 0, top_k: 1, seed: 1, return_tokens: true, stream: false };
  const { json, seconds } = await postJson(port, "/completion", body, timeoutMs, `POST /completion (${prompt.length} prompt + ${gen} tokens)`);
  const tok = (json as { tokens?: unknown }).tokens;
  const tokens = Array.isArray(tok) && tok.every((x) => typeof x === "number") ? (tok as number[]) : null;
  return { timings: parseTimings(json), seconds, tokens };
}

/** A process of this machine: pid and its command line. */
export interface ProcInfo {
  pid: number;
  argv: string[];
}

/** Processes (not this one) whose command line holds `--port PORT` (or `--port=PORT`): a server launch's. */
export function findPortProcesses(port: number): ProcInfo[] {
  const out: ProcInfo[] = [];
  let names: string[];
  try {
    names = readdirSync("/proc");
  } catch {
    return out;
  }
  for (const name of names) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${name}/cmdline`, "utf8").split("\0").filter((a) => a !== "");
    } catch {
      continue; // gone meanwhile
    }
    const hit = argv.some((a, i) => (a === "--port" && argv[i + 1] === String(port)) || a === `--port=${port}`);
    if (hit) out.push({ pid: Number(name), argv });
  }
  return out;
}

/** The command GNU `timeout` (proc.ts's wrapper) runs for `pid`, or `pid` itself when it is no wrapper. */
function commandPid(pid: number): number {
  try {
    if (readFileSync(`/proc/${pid}/comm`, "utf8").trim() !== "timeout") return pid;
    for (const name of readdirSync("/proc")) {
      if (!/^\d+$/.test(name)) continue;
      try {
        const stat = readFileSync(`/proc/${name}/stat`, "utf8");
        // Fields after the command name (which may hold spaces and parentheses): state ppid ...
        const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
        if (ppid === pid) return Number(name);
      } catch {
        // gone meanwhile
      }
    }
  } catch {
    // no /proc: signal what we started
  }
  return pid;
}

function within<T>(p: Promise<T>, ms: number): Promise<T | null> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const t = new Promise<null>((r) => {
    timer = setTimeout(() => r(null), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** Options of {@link startServer}. */
export interface ServerOptions {
  port: number;
  /** Environment added to ours. */
  env?: Record<string, string>;
  /** Seconds the process may live in all (GNU timeout's limit: a backstop, stop() comes first). */
  lifetimeS: number;
  /** Seconds to wait for /health to answer 200 (model load included). */
  readyTimeoutS: number;
  /** Appends the command line and its output here. */
  logFile?: string;
  /** Milliseconds between SIGTERM and SIGKILL when stopping (default 15000). */
  graceMs?: number;
  /** Milliseconds between /health polls (default 250). */
  pollMs?: number;
}

/** A server that answered /health with 200. */
export interface ServerHandle {
  argv: string[];
  /** Pid of the tracked child (GNU timeout's when it wraps the command). */
  pid: number;
  /** Seconds from start until /health answered 200. */
  readySeconds: number;
  /** Its stdout so far. */
  stdout(): string;
  /** SIGTERM, SIGKILL after the grace time; then finds and kills whatever of the launch is left. */
  stop(): Promise<StopReport & { result: StepResult | null }>;
}

/** Thrown when a server does not get ready; the process was stopped already. */
export class ServerStartError extends Error {
  constructor(message: string, readonly stop: StopReport, readonly stdout: string) {
    super(message);
    this.name = "ServerStartError";
  }
}

/**
 * Starts `argv` as a tracked child (killAll covers it) and resolves once GET /health answers 200.
 * Rejects with {@link ServerStartError} (naming the command, after stopping it) when the port is
 * taken, the process exits first, or /health is not 200 within `readyTimeoutS`.
 */
export async function startServer(argv: string[], opts: ServerOptions): Promise<ServerHandle> {
  const { port } = opts;
  const cmd = formatCommand(argv, opts.env);
  // Something already answering would be measured instead of our server.
  if ((await healthStatus(port, 1000)) !== null) {
    const who = findPortProcesses(port).map((p) => `${p.pid}: ${p.argv.join(" ").slice(0, 120)}`).join("; ");
    throw new ServerStartError(`port ${port} is in use (something answers /health${who ? `: ${who}` : ""}); not starting ${cmd}`, { exitStatus: null, seconds: 0, killed: false, orphans: 0, portFree: false }, "");
  }
  let stdout = "";
  const t0 = performance.now();
  const { child, done } = startChild(argv, { env: opts.env, timeoutS: opts.lifetimeS, logFile: opts.logFile, onStdout: (d) => (stdout += d) });
  const state: { exited: StepResult | null } = { exited: null };
  void done.then((r) => (state.exited = r));
  const stop = (): Promise<StopReport & { result: StepResult | null }> => stopServer(child, done, state, port, opts.graceMs ?? 15_000);

  let last = "no answer";
  for (;;) {
    const st = await healthStatus(port, 2000);
    if (st === 200) break;
    if (st !== null) last = `HTTP ${st}`;
    const elapsed = (performance.now() - t0) / 1000;
    const exited = state.exited as StepResult | null;
    if (exited !== null || elapsed > opts.readyTimeoutS) {
      const rep = await stop();
      const r = rep.result;
      const why = exited !== null ? `exited with status ${exitStatus(exited.code, exited.signal)} before /health answered 200` : `not ready after ${opts.readyTimeoutS} s (last /health: ${last})`;
      const { result: _r, ...report } = rep;
      throw new ServerStartError(`server ${why}: ${cmd}${r ? `; output: ${(r.stderr + r.stdout).trim().slice(-800)}` : ""}`, report, stdout);
    }
    await sleep(opts.pollMs ?? 250);
  }
  return { argv, pid: child.pid ?? -1, readySeconds: (performance.now() - t0) / 1000, stdout: () => stdout, stop };
}

async function stopServer(child: ChildProcess, done: Promise<StepResult>, state: { exited: StepResult | null }, port: number, graceMs: number): Promise<StopReport & { result: StepResult | null }> {
  const t0 = performance.now();
  let killed = false;
  if (state.exited === null && child.pid !== undefined) {
    // TERM to the command itself, not to GNU timeout: timeout would also signal its whole group,
    // so the command would get two, and both llama-server (exit 1) and `spillway run` (SIGKILL to
    // its child) take a second signal as "stop now" instead of a clean shutdown.
    try {
      process.kill(commandPid(child.pid), "SIGTERM");
    } catch {
      // gone already
    }
    if ((await within(done, graceMs)) === null) {
      killed = true;
      try {
        process.kill(-child.pid, "SIGKILL"); // timeout's own group: it and the command
      } catch {
        child.kill("SIGKILL");
      }
      await within(done, 5000);
    }
  }
  const result = state.exited ?? (await within(done, 1000));
  const seconds = (performance.now() - t0) / 1000;
  // Whatever of the launch is left (a runtime in its own process group, whose parent was killed).
  let left = findPortProcesses(port);
  for (let i = 0; i < 10 && left.length > 0; i++) {
    // A process may still be exiting right after its parent: give it a moment before killing.
    await sleep(100);
    left = findPortProcesses(port);
  }
  for (const p of left) {
    try {
      process.kill(p.pid, "SIGKILL");
    } catch {
      // gone
    }
  }
  let portFree = (await healthStatus(port, 1000)) === null;
  for (let i = 0; i < 20 && !portFree; i++) {
    await sleep(100);
    portFree = (await healthStatus(port, 1000)) === null;
  }
  return {
    exitStatus: result ? exitStatus(result.code, result.signal) : null,
    seconds,
    killed,
    orphans: left.length,
    ...(left.length > 0 ? { orphanCommands: left.map((p) => p.argv.join(" ").slice(0, 200)) } : {}),
    portFree,
    result,
  };
}

/**
 * One warm-up request (64 prompt + 8 generated tokens), then `repetitions` measured requests of
 * the same `prompt` ids + `gen` tokens, all within `budgetS` seconds.
 */
export async function measureServer(port: number, prompt: number[], gen: number, repetitions: number, budgetS: number): Promise<CompletionSample[]> {
  const until = performance.now() + budgetS * 1000;
  const leftMs = (): number => Math.max(1000, until - performance.now());
  await requestCompletion(port, prompt.slice(0, Math.min(64, prompt.length)), Math.min(8, gen), leftMs());
  const out: CompletionSample[] = [];
  for (let i = 0; i < repetitions; i++) out.push(await requestCompletion(port, prompt, gen, leftMs()));
  return out;
}

/** Prefill, decode (llama-server's timings) and end to end (our wall time per request) over the samples. */
export function serverFigures(samples: CompletionSample[]): Pick<MethodResult, "prefill" | "decode" | "endToEnd"> {
  if (samples.length === 0) return { prefill: null, decode: null, endToEnd: null };
  const tp = (xs: number[], tokens: number): Throughput => {
    const { mean, stddev } = meanStd(xs);
    return { tokens, tps: mean, stddev, samples: xs };
  };
  const first = samples[0].timings;
  const prompt = first.promptN;
  const gen = first.predictedN;
  const secs = meanStd(samples.map((s) => s.seconds));
  const perRequest = samples.map((s) => (s.timings.promptN + s.timings.predictedN) / s.seconds);
  return {
    prefill: tp(samples.map((s) => s.timings.promptTps), prompt),
    decode: tp(samples.map((s) => s.timings.predictedTps), gen),
    endToEnd: { tokens: prompt + gen, tps: (prompt + gen) / secs.mean, stddev: meanStd(perRequest).stddev, samples: perRequest, prompt, gen, seconds: secs.mean },
  };
}

/** How far two greedy token sequences agree. */
export interface TokenAgreement {
  /** Leading tokens equal in both. */
  prefix: number;
  /** Positions equal in both (over the reference's length). */
  same: number;
  total: number;
  /** `prefix` reaches `k` (or the whole reference when shorter). */
  pass: boolean;
}

/** Compares `got` with the reference tokens; passes when the first `k` agree. */
export function compareTokens(ref: number[], got: number[], k: number): TokenAgreement {
  let prefix = 0;
  while (prefix < ref.length && prefix < got.length && ref[prefix] === got[prefix]) prefix++;
  let same = 0;
  for (let i = 0; i < ref.length; i++) if (got[i] === ref[i]) same++;
  return { prefix, same, total: ref.length, pass: prefix >= Math.min(k, ref.length) && ref.length > 0 };
}

/** The check of one server method against the reference tokens. */
export function tokenCheck(ref: number[] | null, got: number[] | null, k: number, isRef: boolean): CheckResult {
  const how = `greedy tokens of the first measured request vs the all-in-VRAM server's: the first ${k} must agree`;
  if (isRef) return { mode: "none", pass: null, how: "writes the reference tokens", detail: got ? `reference (${got.length} tokens)` : "the server returned no tokens" };
  if (ref === null) return { mode: "close", pass: null, how, detail: "no reference tokens (the all-in-VRAM server did not run or failed)" };
  if (got === null) return { mode: "close", pass: false, how, detail: "the server returned no tokens" };
  const a = compareTokens(ref, got, k);
  return {
    mode: "close",
    pass: a.pass,
    how,
    detail: `first ${a.prefix} of ${a.total} tokens agree (${a.same}/${a.total} positions equal); other arithmetic (CPU experts, other batch sizes) may diverge later on random weights`,
  };
}

/** Context for a request of `prompt` + `gen` tokens: llama-server stops a slot one token short of n_ctx. */
export function serverContext(s: Pick<ServerSection, "prompt" | "gen"> & Partial<Pick<ServerSection, "slotRestore">>): number {
  // The slot-restore prompt (issue 21) and its one generated token must fit too.
  return Math.ceil((Math.max(s.prompt + s.gen, (s.slotRestore?.prompt ?? 0) + 1) + 1) / 256) * 256;
}

/** The recipe `spillway run` is given for the section (custom workload = the measured request). */
export function serverRecipe(s: ServerSection, m: ServerMethod, modelPath: string, llamaBin: string, threads: number, slotDir?: string): Record<string, unknown> {
  return {
    // Issue 21: spillway creates the slot directory itself (0700) and passes --slot-save-path.
    ...(slotDir ? { promptCache: { dir: slotDir, reuse: 0 } } : {}),
    name: `bench-${m.id}`,
    model: { path: modelPath },
    runtime: { name: "llama.cpp", binary: join(llamaBin, "llama-server"), program: "server" },
    context: serverContext(s),
    threads,
    workload: { promptTokens: s.prompt, generatedTokens: s.gen },
    placement: "auto",
    hardware: "probe",
  };
}

/** Where the programs are, for {@link serverArgv}. */
export interface ServerPrograms {
  llamaBin: string;
  node: string;
  spillwayCli: string | null;
}

/**
 * The command line of a server method. llama-server: -m -c -t, the method's flags, then
 * --port/--host and the section's args. spillway-run: `node spillway.mjs run RECIPE -- --port ...`
 * (spillway appends what follows `--` after the plan's flags; user flags win).
 */
export function serverArgv(p: ServerPrograms, s: ServerSection, m: ServerMethod, modelPath: string, threads: number, recipePath: string | null, slotDir?: string): string[] {
  const net = ["--port", String(s.port), "--host", HOST];
  if (m.config.kind === "spillway-run") {
    if (!p.spillwayCli) throw new Error("bench/.pack/spillway.mjs missing (cli.ts did not bundle): cannot run spillway");
    if (!recipePath) throw new Error("spillway-run needs a recipe file");
    return [p.node, p.spillwayCli, "run", recipePath, "--", ...net, ...s.args];
  }
  const base = [join(p.llamaBin, "llama-server"), "-m", modelPath, "-c", String(serverContext(s)), "-t", String(threads)];
  const flags = m.config.kind === "all-vram" ? ["-ngl", "99"] : m.config.kind === "flags" ? m.config.flags : [];
  return [...base, ...flags, ...(slotDir ? ["--slot-save-path", slotDir] : []), ...net, ...s.args];
}

/** The plan lines `spillway run` printed (plan, settings, why) and its launch line. */
export function spillwayRunSummary(stdout: string): { derivedFrom: string; launched: string | undefined } {
  const lines = stdout.split("\n");
  const pick = (k: string): string | undefined => lines.find((l) => l.startsWith(`${k} `))?.slice(k.length).trim();
  const parts = ["plan", "settings", "why"].map((k) => pick(k)).filter((x): x is string => x !== undefined);
  return { derivedFrom: `spillway run: ${parts.length > 0 ? parts.join("; ") : "(printed no plan)"}`.slice(0, 400), launched: pick("launch") };
}

/** What {@link runServerSection} needs from the runner. */
export interface SectionEnv {
  ctx: RunContext;
  matrix: Matrix;
  model: MatrixModel;
  info: ModelInfo;
  modelPath: string;
  results: RunResults;
  save: () => void;
  log: (s: string) => void;
  /** Seconds left in this invocation, keeping `keep` for writing results. */
  left: (keep?: number) => number;
  want: (id: string) => boolean;
}

const SHIM_LIB = "shim/build/libspillway_shim.so";

async function runServerMethod(e: SectionEnv, m: ServerMethod, prompt: number[], refTokens: number[] | null, ballast: Ballast | null, level: number | null): Promise<{ result: MethodResult; tokens: number[] | null }> {
  const { ctx, matrix } = e;
  const s = matrix.server!;
  const t0 = performance.now();
  const env: Record<string, string> = m.config.kind === "spillway-run" ? { SPILLWAY_SHIM: join(ctx.root, SHIM_LIB) } : {};
  const base: MethodResult = {
    id: m.id, label: m.label, runtime: "llama-server", model: e.model.id, freeVramGiB: level, ballastFreeBytes: ballast?.freeBytes ?? null,
    workload: `p${s.prompt}-n${s.gen}`, command: [], env,
    prefill: null, decode: null, endToEnd: null, check: { mode: "none", pass: null, how: "not run" }, seconds: 0, status: "ok",
  };
  const fail = (status: MethodResult["status"], error: string, extra: Partial<MethodResult> = {}): { result: MethodResult; tokens: null } =>
    ({ result: { ...base, ...extra, status, error, seconds: (performance.now() - t0) / 1000 }, tokens: null });
  const budget = Math.min(s.timeoutS, e.left());
  if (budget < 30) return fail("skipped", "no time left in this invocation");
  let recipe: string | null = null;
  // Issue 21: a fresh slot directory per method; llama-server needs it to exist, spillway makes its own.
  const slotDir = s.slotRestore ? join(ctx.work, `slots-${m.id}`) : undefined;
  if (slotDir) {
    rmSync(slotDir, { recursive: true, force: true });
    if (m.config.kind !== "spillway-run") mkdirSync(slotDir, { mode: 0o700 });
  }
  if (m.config.kind === "spillway-run") {
    recipe = join(ctx.work, `recipe-${m.id}.json`);
    writeFileSync(recipe, JSON.stringify(serverRecipe(s, m, e.modelPath, ctx.llamaBin, matrix.threads, slotDir), null, 2));
  }
  let argv: string[];
  try {
    argv = serverArgv(ctx, s, m, e.modelPath, matrix.threads, recipe, slotDir);
  } catch (err) {
    return fail("failed", (err as Error).message);
  }
  base.command = argv;
  e.log(`${m.id}: ${formatCommand(argv.slice(m.config.kind === "spillway-run" ? 1 : 0), env)}`);
  const deadline = performance.now() + budget * 1000;
  const secondsLeft = (): number => Math.max(5, (deadline - performance.now()) / 1000);
  let handle: ServerHandle;
  try {
    // The stop (up to 15 s grace + 5 s) must fit in the step too.
    handle = await startServer(argv, { port: s.port, env, lifetimeS: budget + 30, readyTimeoutS: Math.max(10, budget - 25), logFile: ctx.logFile });
  } catch (err) {
    const se = err as ServerStartError;
    const extra: Partial<MethodResult> = { server: { config: m.config.kind, port: s.port, readySeconds: null, stop: se.stop ?? null } };
    if (m.config.kind === "spillway-run" && se.stdout) {
      const sum = spillwayRunSummary(se.stdout);
      extra.derivedFrom = sum.derivedFrom;
      extra.server!.launched = sum.launched;
    }
    return fail(/not ready after/.test(se.message) ? "timeout" : "failed", se.message, extra);
  }
  e.log(`${m.id}: ready in ${handle.readySeconds.toFixed(1)} s`);
  let samples: CompletionSample[] = [];
  let error: string | undefined;
  try {
    samples = await measureServer(s.port, prompt, s.gen, s.repetitions, Math.max(5, secondsLeft() - 20));
  } catch (err) {
    error = (err as Error).message;
  }
  let slotRestore: MethodResult["slotRestore"];
  if (s.slotRestore && !error) {
    const ids = promptTokenIds(s.slotRestore.prompt, e.info.vocabSize, 2);
    try {
      slotRestore = await measureSlotRestore(s.port, ids, `restore-${m.id}.bin`, Math.max(5, secondsLeft() - 20) * 1000);
      e.log(`${m.id}: slot restore of ${ids.length} tokens: ready in ${slotRestore.readyMs.toFixed(0)} ms vs recompute ${slotRestore.recomputeMs.toFixed(0)} ms (${slotRestore.ratio.toFixed(3)})`);
    } catch (err) {
      slotRestore = { error: (err as Error).message };
    }
  }
  const stop = await handle.stop();
  if (slotDir) rmSync(slotDir, { recursive: true, force: true });
  const { result: step, ...stopReport } = stop;
  const stdout = step?.stdout ?? handle.stdout();
  const summary = m.config.kind === "spillway-run" ? spillwayRunSummary(stdout) : null;
  const tokens = samples[0]?.tokens ?? null;
  const figures = serverFigures(samples);
  const check = error ? { mode: "close" as const, pass: null, how: "not run", detail: "no measurement" } : tokenCheck(refTokens, tokens, s.agreeTokens, m.config.kind === "all-vram");
  let status: MethodResult["status"] = error ? (/no answer within/.test(error) ? "timeout" : "failed") : "ok";
  const counted = samples[0]?.timings;
  if (counted && (counted.promptN !== s.prompt || counted.predictedN !== s.gen)) {
    e.results.notes.push(`${m.id}: llama-server processed ${counted.promptN} prompt tokens and generated ${counted.predictedN} (asked ${s.prompt} + ${s.gen})`);
  }
  if (stopReport.orphans > 0 || !stopReport.portFree) {
    // A launch that outlives its stop is a bug of that launch, even when its numbers are good.
    status = "failed";
    const what = `after stop: ${stopReport.orphans} process(es) of the launch still alive (killed)${stopReport.portFree ? "" : `, port ${s.port} still answering`}`;
    error = error ? `${error}; ${what}` : what;
  }
  if (!error && step && stopReport.exitStatus !== null && stopReport.exitStatus !== 0 && stopReport.exitStatus !== 143) {
    e.results.notes.push(`${m.id}: exited with status ${stopReport.exitStatus} after SIGTERM`);
  }
  if (error && step) error = `${error}; output: ${(step.stderr + step.stdout).trim().slice(-600)}`;
  e.log(`${m.id}: ${status} pp=${figures.prefill?.tps.toFixed(1)} tg=${figures.decode?.tps.toFixed(2)} e2e=${figures.endToEnd?.tps.toFixed(1)} check=${check.pass} stop=${stopReport.exitStatus}${stopReport.killed ? " (killed)" : ""} orphans=${stopReport.orphans}`);
  const result: MethodResult = {
    ...base,
    ...(summary ? { derivedFrom: summary.derivedFrom } : { derivedFrom: m.config.kind === "default" ? "llama-server defaults (its fit on), only -m -c -t --port --host" : m.config.kind === "all-vram" ? "all layers on the GPU (-ngl 99), no ballast" : "fixed flags from the matrix" }),
    ...figures,
    check,
    server: {
      config: m.config.kind,
      port: s.port,
      readySeconds: handle.readySeconds,
      ...(tokens ? { tokens } : {}),
      ...(summary?.launched ? { launched: summary.launched } : {}),
      stop: stopReport,
    },
    ...(slotRestore ? { slotRestore } : {}),
    seconds: (performance.now() - t0) / 1000,
    status,
    ...(error ? { error } : {}),
  };
  return { result, tokens };
}

/**
 * Runs the server section for its model: the methods without a ballast first (the all-in-VRAM
 * reference gives the tokens the others are checked against), then those with one under a single
 * ballast at the matrix's first free-VRAM level. Appends one result per method and saves after each.
 */
export async function runServerSection(e: SectionEnv): Promise<void> {
  const s = e.matrix.server;
  if (!s || s.model !== e.model.id) return;
  const methods = s.methods.filter((m) => e.want(m.id));
  if (methods.length === 0) return;
  const prompt = promptTokenIds(s.prompt, e.info.vocabSize, 1);
  let ref: number[] | null = null;
  const keep = (m: ServerMethod, r: { result: MethodResult; tokens: number[] | null }): void => {
    if (m.config.kind === "all-vram" && ref === null && r.result.status === "ok") ref = r.tokens;
    e.results.results.push(r.result);
    e.save();
  };
  for (const m of methods.filter((x) => !x.ballast)) keep(m, await runServerMethod(e, m, prompt, ref, null, null));
  const withBallast = methods.filter((x) => x.ballast);
  if (withBallast.length === 0) return;
  const level = e.matrix.freeVramGiB[0];
  let ballast: Ballast;
  const tb = performance.now();
  try {
    ballast = await startBallast(join(e.ctx.root, "bench/gpu/ballast.py"), level, { python: e.ctx.python, lifetimeS: Math.max(30, e.left(0)), logFile: e.ctx.logFile });
  } catch (err) {
    e.results.notes.push(`server section: ballast ${level} GiB failed: ${(err as Error).message}`);
    e.save();
    return;
  }
  e.results.phases[`ballast-${level}-server`] = (performance.now() - tb) / 1000;
  e.log(`ballast (server section): ${(ballast.freeBytes / 2 ** 30).toFixed(2)} GiB free (pid ${ballast.pid})`);
  try {
    for (const m of withBallast) keep(m, await runServerMethod(e, m, prompt, ref, ballast, level));
  } finally {
    await ballast.stop();
  }
}

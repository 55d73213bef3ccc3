/**
 * `spillway run`.
 *
 * `run <recipe> [-- extra args]`: make the model file when the recipe asks for a synthetic one,
 * read its headers, resolve the hardware, plan, show the plan on one screen, launch the runtime
 * with the plan applied (in process for node-llama-cpp), forward signals, and exit with the
 * child's status. `--dry-run` prints the exact argv and environment instead of launching.
 *
 * `run -- prog args...` (no recipe) wraps any command: llama.cpp programs with `-m` are planned
 * (the user's own flags win over planned ones); anything else runs under the shim when there is
 * a GPU and the shim is built.
 *
 * @module
 */
import { withInterrupt } from "../core/interrupt.ts";
import { existsSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname } from "node:path";
import process from "node:process";
import { ModelFileError, PlanError, RecipeSchemaError } from "../core/errors.ts";
import { resolveHardware } from "../engine/hardware/mod.ts";
import { launch, type LaunchHandle } from "../engine/launch/mod.ts";
import { startPlannedNodes } from "../engine/launch/rpc_servers.ts";
import { RuntimeCrashedError } from "../engine/runtimes/node_llama_cpp_process.ts";
import { readModel } from "../engine/model/mod.ts";
import { synthesize, type SynthQuant } from "../engine/model/synth.ts";
import { formatBytes } from "../core/bytes.ts";
import { commandLine } from "../core/shell.ts";
import { type PlannedRecipe, planRecipe } from "../engine/recipe_plan.ts";
import { type CalibrationRecord, recordRun } from "../engine/planner/calibration.ts";
import { plan as makePlan } from "../engine/planner/plan.ts";
import { loadRecipe } from "../engine/recipe/mod.ts";
import type { Recipe } from "../engine/recipe/types.ts";
import { runRecipeOf, type RunRecipe, type RuntimeAdapter } from "../engine/runtimes/adapter.ts";
import { adapterFor, wrappedCommandOf } from "../engine/runtimes/mod.ts";
import { type GenerationResult, PROMPT_REPETITIONS } from "../engine/runtimes/node_llama_cpp.ts";
import { locateShim, shimEnv } from "../shim/build.ts";
import { defaultShimPath } from "../engine/runtimes/shim_path.ts";
import { isAssistMap, isPythonCommand, pythonAssist, weightsBudgetFor } from "../engine/runtimes/python_assist.ts";
import type { HardwareProfile, LaunchSpec, Plan } from "../core/types.ts";
import { progressBar, type Progress } from "../core/progress.ts";

/** Options of {@link runCommand}. */
export interface RunCommandOptions {
  /** Print the plan and the exact argv/env, launch nothing. */
  dryRun?: boolean;
  /** Machine-readable output: one JSON object on stdout. */
  json?: boolean;
  /** Hardware profile name (or `probe`) overriding the recipe's. */
  hardware?: string;
  /** Shim library path (default: the built shim). */
  shimPath?: string;
  /** Where text goes (default: process.stdout / process.stderr). */
  out?: (text: string) => void;
  err?: (text: string) => void;
}

/** What `run` resolved and did; also the `--json` output. */
export interface RunReport {
  recipe: string | null;
  plan: Plan | null;
  launch: { inProcess: boolean; argv: string[]; env: Record<string, string> };
  result?: GenerationResult;
  exitStatus?: number;
  /** Why the run failed, when its runtime crashed (in-process runtimes run in a worker process). */
  error?: string;
  /** A synthetic model file the run makes first (set when it does not exist yet). */
  synthesize?: { shape: string; quant: string; path: string; bytes: number };
  /** What the run measured against the prediction, as recorded for later plans (in-process runs). */
  calibration?: CalibrationRecord | null;
}

const write = (s: string): void => void process.stdout.write(s);
const writeErr = (s: string): void => void process.stderr.write(s);

/** One paste-able line: env assignments then argv. */
export function formatCommand(spec: LaunchSpec): string {
  return commandLine(spec.argv, spec.env, true);
}

/** The plan on one screen: model, machine, choice and why, memory per tier, predicted speed, runners-up. */
export function formatPlanScreen(plan: Plan, hardware?: HardwareProfile): string {
  const c = plan.candidates.find((x) => x.id === plan.chosen);
  const lines: string[] = [];
  lines.push(`model     ${plan.model.path}`);
  lines.push(`          ${plan.model.architecture} ${plan.model.quantization}, ${formatBytes(plan.model.bytes)}`);
  const gpu = hardware?.gpu ? `${hardware.gpu.name}, ${formatBytes(hardware.gpu.freeVramBytes)} VRAM free` : "no GPU";
  lines.push(`machine   ${plan.hardware.name} (${plan.hardware.source}${hardware ? `; ${gpu}; ${hardware.host.cpuCores} cores` : ""})`);
  for (const n of plan.notes ?? hardware?.notes ?? []) lines.push(`          note: ${n}`);
  lines.push(`runtime   ${plan.runtime}`);
  lines.push(`workload  ${plan.workload.objective}: ${plan.workload.promptTokens} prompt + ${plan.workload.generatedTokens} generated tokens`);
  lines.push(`plan      ${plan.chosen}${c ? ` (${c.label})` : ""}`);
  const m = plan.memory;
  lines.push(`memory    vram ${formatBytes(m.vram)} | host mapped ${formatBytes(m.host_mapped)} | host cpu ${formatBytes(m.host_cpu)} | disk ${formatBytes(m.disk)}`);
  lines.push(`predicted prefill ${plan.predicted.prefillTps.toFixed(1)} t/s, decode ${plan.predicted.decodeTps.toFixed(1)} t/s, ${plan.predicted.totalSeconds.toFixed(2)} s per request`);
  const s = plan.settings;
  const knobs = [`ctx ${s.contextLength}`, `batch ${s.batch}/${s.ubatch}`, `threads ${s.threads}`, `gpu layers ${s.gpuLayers}`];
  if (s.cpuMoeLayers) knobs.push(`cpu-moe ${s.cpuMoeLayers}`);
  if (s.kvOnHost) knobs.push("kv on host");
  knobs.push(`load ${s.loadMode}`);
  if (s.shim) knobs.push(`shim (budget ${s.shim.vramBudgetBytes !== undefined ? formatBytes(s.shim.vramBudgetBytes) : "auto"}, ${s.shim.backing})`);
  lines.push(`settings  ${knobs.join(", ")}`);
  lines.push(`why       ${plan.reason}`);
  const others = plan.candidates.filter((x) => x.id !== plan.chosen).slice(0, 3);
  if (others.length) {
    lines.push("also      " + others.map((o) => `${o.id}: ${o.fits ? `${o.predicted.totalSeconds.toFixed(2)} s` : "does not fit"}`).join("; "));
  }
  return lines.join("\n");
}

/** Makes the recipe's synthetic model file when it is missing (with a progress bar). */
export async function ensureModelFile(recipe: Recipe, err: (s: string) => void = writeErr): Promise<string> {
  const m = recipe.model;
  if (existsSync(m.path)) return m.path;
  if (!m.synth) {
    throw new ModelFileError(
      m.path,
      `model file not found (model in ${recipe.file}); download it there, or set model.synth: true to run a synthetic file of its shape`,
    );
  }
  if (!m.shape) {
    throw new RecipeSchemaError(recipe.file, "model.synth", "a synthetic model needs a known model id (its shape); a path alone has no shape");
  }
  const quant = (m.quant ?? "q8_0").toUpperCase() as SynthQuant;
  mkdirSync(dirname(m.path), { recursive: true });
  err(`synthesizing ${m.shape} ${quant} -> ${m.path} (first use)\n`);
  const bar: Progress = progressBar("synth", "bytes");
  try {
    await withInterrupt(`synthesizing ${m.path}`, (signal) =>
      synthesize({ shape: m.shape!, quant, out: m.path, signal, onProgress: (done, total) => bar.update(done, total) }));
  } finally {
    bar.stop();
  }
  return m.path;
}

/**
 * `spillway run`. Returns the exit status (the child's, or 130 after Ctrl-C of an in-process run).
 * @param recipePath recipe file, or null to wrap `extraArgs` as a command.
 * @param extraArgs arguments after `--`: appended to the runtime's (recipe) or the command (no recipe).
 */
export async function runCommand(recipePath: string | null, extraArgs: string[], options: RunCommandOptions = {}): Promise<number> {
  const out = options.out ?? write;
  const err = options.err ?? writeErr;
  const adapterOptions = options.shimPath ? { shimPath: options.shimPath } : {};
  let report: RunReport;
  let hardware: HardwareProfile | undefined;
  let runRecipe: RunRecipe | null;
  let planned: PlannedRecipe | undefined;
  // The adapter resolved here is the one launch() uses (it does not look it up again).
  let adapter: RuntimeAdapter | undefined;

  if (recipePath !== null) {
    const recipe = await loadRecipe(recipePath);
    // A dry run makes nothing: a synthetic model not made yet is planned from its shape.
    if (!options.dryRun) await ensureModelFile(recipe, err);
    planned = await planRecipe(recipe, options.hardware ? { hardware: options.hardware } : {});
    hardware = planned.hardware;
    runRecipe = runRecipeOf(planned.recipe);
    if (extraArgs.length) runRecipe.args = [...(runRecipe.args ?? []), ...extraArgs];
    adapter = adapterFor(planned.plan.runtime, recipe.file);
    const spec = adapter.toLaunchSpec(planned.plan, runRecipe, adapterOptions);
    report = { recipe: recipe.file, plan: planned.plan, launch: { inProcess: adapter.capabilities.inProcess, ...spec } };
    // A dry run makes nothing, but says what the real run would make first.
    if (options.dryRun && recipe.model.synth && recipe.model.shape && !existsSync(recipe.model.path)) {
      const quant = (recipe.model.quant ?? "q8_0").toUpperCase();
      report.synthesize = { shape: recipe.model.shape, quant, path: recipe.model.path, bytes: planned.plan.model.bytes };
    }
  } else {
    if (extraArgs.length === 0) throw new RecipeSchemaError("spillway run", "(arguments)", "give a recipe file, or a command after `--` (e.g. spillway run -- llama-server -m model.gguf)");
    ({ report, hardware, runRecipe, adapter } = await wrapCommand(extraArgs, options, adapterOptions));
  }

  if (!options.json) {
    if (report.plan) out(formatPlanScreen(report.plan, hardware) + "\n");
    const syn = report.synthesize;
    if (syn) out(`model     not made yet: the run first synthesizes ${syn.shape} ${syn.quant} (random weights, about ${formatBytes(syn.bytes)}) at ${syn.path}\n`);
    out(`${options.dryRun ? "command" : "launch"}   ${report.launch.inProcess ? "(in process) " : ""}${formatCommand(report.launch)}\n`);
  }
  if (options.dryRun) {
    if (options.json) out(JSON.stringify(report, null, 2) + "\n");
    return 0;
  }

  // The shim is built on first use (a few seconds with gcc), before anything starts.
  const preload = report.launch.env.LD_PRELOAD;
  if (preload && !existsSync(preload) && preload === defaultShimPath()) await locateShim();
  // With --json our stdout carries only the report: the child's output goes to stderr.
  const stdio = options.json ? "stderr" as const : undefined;
  const progress = loadProgress();
  // rpc-servers the plan's split uses (issue 19): started or checked now, stopped when the run ends.
  const rpcNodes = await startPlannedNodes(planned?.recipe.hardware ?? null, report.plan, { err });
  let handle: LaunchHandle;
  try {
    handle = report.plan
      ? launch(report.plan, runRecipe, { ...adapterOptions, adapter, spec: report.launch, onProgress: progress, stdio })
      : launch(null, runRecipe, { ...adapterOptions, spec: report.launch, stdio });
  } catch (e) {
    await rpcNodes?.stop();
    throw e;
  }
  const status = await handle.exited;
  await rpcNodes?.stop();
  // A bar left open by a crash or an interrupt would keep its timer (and the process) alive.
  progress.stop();
  report.exitStatus = status;
  // The placement map written for a Python command is ours: gone with the run.
  if (isAssistMap(report.launch.env.SPILLWAY_PLACEMENT)) rmSync(report.launch.env.SPILLWAY_PLACEMENT!, { force: true });
  let result: GenerationResult | undefined;
  if (handle.result) {
    try {
      result = await handle.result;
    } catch (e) {
      // A crashed worker is reported with the worker's status (128 + signal); an interrupted run
      // exits with its signal status; any other failure is an error to report.
      if (e instanceof RuntimeCrashedError) {
        report.error = e.message;
        err(`spillway: ${e.message}\n`);
      } else if (status === 1) throw e;
    }
  }
  if (result) {
    report.result = result;
    if (!options.json) out(formatResult(result) + "\n");
    // Predicted against measured, and the measurement recorded so later plans on this machine
    // predict with its fixed costs (engine/planner/calibration.ts).
    if (planned && status === 0) {
      // The typical token (median), not the few that waited for a CPU another process held.
      const check = recordRun(planned, { decodeTps: result.genTpsMedian ?? result.genTps, prefillTps: result.promptTps });
      report.calibration = check.record;
      if (!options.json) out(check.lines.join("\n") + "\n");
    }
  }
  if (options.json) out(JSON.stringify(report, null, 2) + "\n");
  return status;
}

/** The speeds of an in-process generation, two lines. */
export function formatResult(r: GenerationResult): string {
  return [
    `prompt    ${r.promptTokens} tokens in ${r.promptSeconds.toFixed(3)} s: ${r.promptTps.toFixed(1)} t/s (prefill, fastest of ${PROMPT_REPETITIONS} passes)`,
    `generate  ${r.genTokens} tokens in ${r.genSeconds.toFixed(3)} s: ${r.genTps.toFixed(1)} t/s (decode, ${r.backend}; load ${r.loadSeconds.toFixed(2)} s)` +
    (r.genTpsMedian !== undefined ? `; median token ${r.genTpsMedian.toFixed(1)} t/s` : ""),
  ].join("\n");
}

/** The progress bars of an in-process run; `stop()` ends the current one (a failed run leaves it open). */
function loadProgress(): ((phase: "load" | "prompt" | "generate", done: number, total: number) => void) & { stop(): void } {
  let bar: Progress | null = null;
  let phase = "";
  const onProgress = (p: "load" | "prompt" | "generate", done: number, total: number): void => {
    if (p !== phase) {
      bar?.stop();
      phase = p;
      bar = progressBar(p, p === "load" ? "fraction" : "tokens");
    }
    bar?.update(done, total);
    if (p === "generate" && done >= total) bar?.stop();
  };
  return Object.assign(onProgress, { stop: () => bar?.stop() });
}

async function wrapCommand(
  argv: string[],
  options: RunCommandOptions,
  adapterOptions: { shimPath?: string },
): Promise<{ report: RunReport; hardware: HardwareProfile | undefined; runRecipe: RunRecipe | null; adapter?: RuntimeAdapter }> {
  const program = argv[0]!;
  // A runtime's own program on a model (llama-server -m ...): planned by its adapter.
  const found = wrappedCommandOf(argv);
  if (found) {
    const { adapter, wrapped } = found;
    const info = await readModel(wrapped.modelPath);
    const hardware = await resolveHardware({ kind: "probe" }, options.hardware ? { override: options.hardware } : {});
    let plan: Plan;
    try {
      plan = makePlan(info, hardware, wrapped.planInputs, { capabilities: adapter.capabilities });
    } catch (e) {
      if (!(e instanceof PlanError)) throw e;
      throw new PlanError(`${e.message}\n(to run the command exactly as given, run it without spillway)`, { cause: e });
    }
    plan.model.path = wrapped.modelPath;
    const planned = adapter.toLaunchSpec(plan, wrapped.runRecipe, adapterOptions);
    // Planned flags the user did not give, then the user's arguments exactly as typed.
    const spec: LaunchSpec = { argv: [program, ...wrapped.mergeArgs(planned.argv.slice(1))], env: planned.env };
    return { report: { recipe: null, plan, launch: { inProcess: false, ...spec } }, hardware, runRecipe: { ...wrapped.runRecipe, command: spec.argv }, adapter };
  }
  // Any other program: under the shim with its defaults when there is a GPU to spill from.
  const hardware = await resolveHardware({ kind: "probe" }, options.hardware ? { override: options.hardware } : {});
  const env = hardware.gpu
    ? shimEnv({ reserveBytes: 2 ** 30, minSpillBytes: 32 * 2 ** 20, backing: "auto", report: "vram+host" }, adapterOptions.shimPath ?? defaultShimPath())
    : {};
  if (!hardware.gpu) (options.err ?? writeErr)("note: no GPU: running the command without the shim\n");
  // Python: environment PyTorch honours and the access-aware placement map of the model it names.
  if (hardware.gpu && isPythonCommand(argv)) {
    const assist = pythonAssist(argv, process.env, {
      vramForWeights: weightsBudgetFor(hardware.gpu.freeVramBytes, 2 ** 30),
      minSpill: 32 * 2 ** 20,
      mapDir: options.dryRun ? null : tmpdir(),
    });
    Object.assign(env, assist.env);
    for (const h of assist.hints) (options.err ?? writeErr)(h + "\n");
  }
  const spec: LaunchSpec = { argv, env };
  return { report: { recipe: null, plan: null, launch: { inProcess: false, ...spec } }, hardware, runRecipe: { command: argv } };
}


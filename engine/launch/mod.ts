/**
 * launch(): a plan started with its runtime's adapter, as a child process (child.ts) or, for
 * node-llama-cpp, in its worker (in_process.ts). The child-process launcher and its helpers are
 * re-exported from here.
 *
 * @module
 */
import type { LaunchSpec, Plan } from "../../core/types.ts";
import type { AdapterOptions, RunRecipe, RuntimeAdapter } from "../runtimes/adapter.ts";
import { commandLaunchSpec } from "../runtimes/command_adapter.ts";
import { adapterFor } from "../runtimes/mod.ts";
import { missingProgramHint } from "../runtimes/hint.ts";
import { nodeLlamaCppRun, type InProcessHooks } from "../runtimes/node_llama_cpp.ts";
import { childEnv, launchSpec, type LaunchHandle, type LaunchOptions, resolveExecutable } from "./child.ts";
import { launchInProcess } from "./in_process.ts";

export { childEnv, cleanupStatsFiles, launchSpec, type LaunchHandle, type LaunchOptions, presentButNotExecutable, resolveExecutable } from "./child.ts";
export { exitStatus } from "../../core/exit_status.ts";
export { type InProcessLaunchOptions, launchInProcess } from "./in_process.ts";

/** Options of {@link launch}. */
export interface PlanLaunchOptions extends LaunchOptions, AdapterOptions {
  /** Launch this spec instead of the adapter's (a wrapped command line already merged with the plan). */
  spec?: LaunchSpec;
  /** The adapter the caller already resolved for `plan` (spillway run); default: the plan's runtime's. */
  adapter?: RuntimeAdapter;
  /** Progress of an in-process run (load fraction, prompt, generated tokens). */
  onProgress?: InProcessHooks["onProgress"];
}

/**
 * Launches `plan` with its runtime's adapter: a child process for every runtime but
 * node-llama-cpp, which runs in a worker process of spillway's own runtime (`result` holds its speeds;
 * a native crash there rejects it with RuntimeCrashedError and `exited` is the worker's status).
 * `plan` null runs the recipe's `command` (or `options.spec`) as is.
 *
 * @example
 * ```ts
 * const handle = launch(plan, { program: "server" });
 * setTimeout(() => handle.stop(), 60_000);
 * const status = await handle.exited;
 * ```
 */
export function launch(plan: Plan | null, recipe: RunRecipe | null = null, options: PlanLaunchOptions = {}): LaunchHandle {
  if (plan === null) {
    const spec = options.spec ?? commandLaunchSpec(null, recipe, options);
    return launchSpec(spec, { runtime: "command", ...options });
  }
  const adapter = options.adapter ?? adapterFor(plan.runtime, recipe?.file);
  if (adapter.capabilities.inProcess) {
    return launchInProcess(nodeLlamaCppRun(plan, recipe), options);
  }
  const spec = options.spec ?? adapter.toLaunchSpec(plan, recipe, options);
  // A plan that needs another build (llama.cpp's patched one for hybrid plans): when its program is
  // missing, say how to build it.
  const build = adapter.planBuild?.(plan.settings) ?? null;
  const hint = build ? build.hint() : missingProgramHint(adapter.binaryHint.hint, recipe);
  // What the program needs besides itself (Python packages), checked before anything starts.
  if (adapter.preflight && resolveExecutable(spec.argv[0] ?? "", childEnv(spec).PATH ?? "") !== null) adapter.preflight(spec, childEnv(spec));
  return launchSpec(spec, { runtime: adapter.name, hint, ...options });
}


/**
 * node-llama-cpp launched like a child: its run in a worker of spillway's own runtime (node-llama-cpp
 * is a library, not a program), with the same handle shape and signal behaviour as launchSpec().
 *
 * @module
 */
import process from "node:process";
import { exitStatus } from "../../core/exit_status.ts";
import { type nodeLlamaCppRun, type InProcessHooks } from "../runtimes/node_llama_cpp.ts";
import { RuntimeCrashedError, startNodeLlamaCppWorker } from "../runtimes/node_llama_cpp_process.ts";
import { FORWARDED, type LaunchHandle } from "./child.ts";
import { guardedArgv } from "./parent_death.ts";
import { signalEcho } from "./signal_echo.ts";

/** Options of {@link launchInProcess} (a subset of launch()'s). */
export interface InProcessLaunchOptions {
  /** Catch SIGINT/SIGTERM/SIGHUP and stop the run (default true). */
  forwardSignals?: boolean;
  /** Progress of the run (load fraction, prompt, generated tokens). */
  onProgress?: InProcessHooks["onProgress"];
  /** Milliseconds between stopping the worker and killing it. */
  killGraceMs?: number;
}

/** node-llama-cpp in its worker process, with the same handle shape and signal behaviour as a child. */
export function launchInProcess(run: ReturnType<typeof nodeLlamaCppRun>, options: InProcessLaunchOptions = {}): LaunchHandle {
  const ac = new AbortController();
  let caught: NodeJS.Signals | null = null;
  const handlers = new Map<NodeJS.Signals, () => void>();
  const isEcho = signalEcho();
  const onSignal = (sig: NodeJS.Signals): void => {
    if (isEcho(sig)) return;
    if (caught !== null) {
      // Second signal: the native evaluation may not return soon; leave now.
      process.exit(exitStatus(null, sig));
    }
    caught = sig;
    ac.abort(new Error(`interrupted by ${sig}`));
  };
  if (options.forwardSignals ?? true) {
    for (const sig of FORWARDED) {
      const h = (): void => onSignal(sig);
      handlers.set(sig, h);
      process.on(sig, h);
    }
  }
  // In a worker process: a native abort in llama.cpp must not take spillway down unreported.
  // Under the parent-death guard like every child (issue 18 item 13): a SIGKILLed spillway takes it along.
  const worker = startNodeLlamaCppWorker(run, {
    signal: ac.signal,
    onProgress: options.onProgress,
    killGraceMs: options.killGraceMs,
    wrapArgv: (file, args) => guardedArgv(file, file, args),
  });
  const result = worker.result;
  // `exited` reports the status; callers read the error from `result`.
  result.catch(() => {});
  const exited = result.then(
    () => 0,
    (e) => (e instanceof RuntimeCrashedError ? e.status : caught !== null ? exitStatus(null, caught) : ac.signal.aborted ? 130 : 1),
  ).finally(() => {
    for (const [sig, h] of handlers) process.off(sig, h);
  });
  return {
    pid: worker.pid,
    argv: ["node-llama-cpp", run.modelPath],
    stats: () => null,
    stop: () => {
      ac.abort(new Error("stopped"));
      return exited;
    },
    exited,
    stdout: null,
    stderr: null,
    result,
  };
}

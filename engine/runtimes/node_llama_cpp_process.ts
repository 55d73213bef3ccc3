/**
 * Runs node-llama-cpp in a worker process (engine/runtimes/node_llama_cpp_worker.ts) instead of
 * spillway's own: llama.cpp aborts the whole process on an internal assertion (GGML_ASSERT), and a
 * worker turns that into a reported failure, {@link RuntimeCrashedError} ("runtime crashed: signal
 * SIGABRT ..." with the worker's last output), while spillway stays alive to say so. The worker runs
 * in the same JavaScript runtime as spillway (node, bun or deno).
 *
 * @example
 * ```ts
 * const w = startNodeLlamaCppWorker(nodeLlamaCppRun(plan, null), { onProgress: (p, d, t) => {} });
 * const result = await w.result; // GenerationResult, or rejects (RuntimeCrashedError on a crash)
 * ```
 *
 * @module
 */
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import process from "node:process";
import { fileURLToPath, pathToFileURL } from "node:url";
import { LaunchError } from "../../core/errors.ts";
import { exitStatus } from "../../core/exit_status.ts";
import type { GenerationResult, InProcessHooks, NodeLlamaCppRun } from "./node_llama_cpp.ts";
import { parseWorkerLine, type WorkerMessage } from "./node_llama_cpp_protocol.ts";

/** The worker died without reporting (a native abort, a segfault, the OOM killer). */
export class RuntimeCrashedError extends LaunchError {
  constructor(
    /** Exit status as a shell reports it (128 + signal number for a signal). */
    readonly status: number,
    readonly signal: string | null,
    /** The worker's last lines of output (stderr and non-protocol stdout). */
    readonly lastLines: string[],
    readonly pid: number,
    model: string,
  ) {
    const how = signal ? `signal ${signal} (exit status ${status})` : `exit status ${status}`;
    const tail = lastLines.length ? `; its last output:\n${lastLines.map((l) => `  ${l}`).join("\n")}` : "; it printed nothing";
    super(`runtime crashed: ${how} in the node-llama-cpp worker process (pid ${pid}) running ${model}${tail}`);
  }
}

/** Options of {@link startNodeLlamaCppWorker}. */
export interface WorkerOptions extends InProcessHooks {
  /** Milliseconds between the stop signal and SIGKILL (default 5000). */
  killGraceMs?: number;
  /** Told when the worker had to be killed after the grace time (default: a line on stderr). */
  onForceKill?: (message: string) => void;
  /** Lines of output kept for a crash report (default 12). */
  tailLines?: number;
  /**
   * Rewrites the worker's program and arguments before it is spawned: the launcher passes its
   * parent-death guard here, so a SIGKILLed spillway does not leave the worker generating.
   */
  wrapArgv?: (file: string, args: string[]) => [string, string[]];
}

/** A running worker. */
export interface WorkerHandle {
  pid: number;
  /** The generation's speeds; rejects with the worker's error or a {@link RuntimeCrashedError}. */
  result: Promise<GenerationResult>;
  /** Sends `signal` (default SIGTERM) and SIGKILL after the grace time. */
  stop(signal?: NodeJS.Signals): void;
}

/** argv that runs the worker in this JavaScript runtime (source .ts or built .js). */
export function workerCommand(): string[] {
  const here = fileURLToPath(import.meta.url);
  const fromSource = here.endsWith(".ts");
  const worker = join(dirname(here), fromSource ? "node_llama_cpp_worker.ts" : "node_llama_cpp_worker.js");
  if (process.versions.bun) return [process.execPath, worker];
  if (process.versions.deno) return [process.execPath, "run", "-A", worker];
  if (!fromSource) return [process.execPath, worker];
  // Node on the sources: the TypeScript loader spillway itself runs under.
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href;
  return [process.execPath, "--import", tsx, worker];
}

/** Starts the worker for `run`. */
export function startNodeLlamaCppWorker(run: NodeLlamaCppRun, options: WorkerOptions = {}): WorkerHandle {
  const [cmd, ...args] = workerCommand();
  const [file, argv] = options.wrapArgv ? options.wrapArgv(cmd!, [...args, JSON.stringify(run)]) : [cmd!, [...args, JSON.stringify(run)]];
  const child = spawn(file, argv, { stdio: ["ignore", "pipe", "pipe"] });
  const keep = options.tailLines ?? 12;
  const tail: string[] = [];
  const remember = (line: string): void => {
    if (line.trim() === "") return;
    tail.push(line.trimEnd());
    if (tail.length > keep) tail.shift();
  };
  let final: WorkerMessage | null = null;
  const lines = (onLine: (l: string) => void) => {
    let buf = "";
    return {
      data: (chunk: Buffer | string) => {
        buf += chunk.toString();
        let i: number;
        while ((i = buf.indexOf("\n")) >= 0) {
          onLine(buf.slice(0, i));
          buf = buf.slice(i + 1);
        }
      },
      end: () => {
        if (buf) onLine(buf);
        buf = "";
      },
    };
  };
  const out = lines((l) => {
    const m = parseWorkerLine(l);
    if (m === null) return remember(l);
    if (m.type === "progress") options.onProgress?.(m.phase, m.done, m.total);
    else final = m;
  });
  const err = lines(remember);
  child.stdout!.on("data", out.data);
  child.stderr!.on("data", err.data);

  let killTimer: ReturnType<typeof setTimeout> | null = null;
  let stopped = false;
  const stop = (signal: NodeJS.Signals = "SIGTERM"): void => {
    stopped = true;
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill(signal);
    if (killTimer) return;
    const grace = options.killGraceMs ?? 5000;
    killTimer = setTimeout(() => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const msg = `spillway: the node-llama-cpp worker (pid ${child.pid}) did not stop ${(grace / 1000).toFixed(grace % 1000 ? 1 : 0)} s after ${signal}; killed it (SIGKILL)`;
      (options.onForceKill ?? ((m: string) => process.stderr.write(m + "\n")))(msg);
      child.kill("SIGKILL");
    }, grace);
  };
  // Never leave the worker behind when spillway exits.
  const onExit = (): void => {
    child.kill("SIGKILL");
  };
  process.on("exit", onExit);
  const onAbort = (): void => stop("SIGTERM");
  options.signal?.addEventListener("abort", onAbort, { once: true });

  const result = new Promise<GenerationResult>((resolve, reject) => {
    child.on("error", (e) => reject(new LaunchError(`could not start the node-llama-cpp worker (${cmd}): ${e.message}`, { cause: e })));
    child.on("close", (code, signal) => {
      out.end();
      err.end();
      if (killTimer) clearTimeout(killTimer);
      process.off("exit", onExit);
      options.signal?.removeEventListener("abort", onAbort);
      const m = final as WorkerMessage | null;
      if (m?.type === "result") return resolve(m.result);
      if (m?.type === "error") {
        const e = new LaunchError(m.message);
        if (m.aborted) Object.defineProperty(e, "name", { value: "AbortError" });
        return reject(e);
      }
      // Ended by a stop signal we sent, or by the terminal's Ctrl-C that reached us too: an
      // interruption (it may come before the worker's own handlers are installed), not a crash.
      const interrupted = (stopped || options.signal?.aborted) && (signal === "SIGINT" || signal === "SIGTERM" || signal === "SIGHUP" || signal === "SIGKILL");
      if (interrupted) {
        const e = new LaunchError(`the node-llama-cpp worker was stopped (${signal})`);
        Object.defineProperty(e, "name", { value: "AbortError" });
        return reject(e);
      }
      reject(new RuntimeCrashedError(exitStatus(code, signal), signal, tail.slice(), child.pid ?? 0, run.modelPath));
    });
  });
  return { pid: child.pid ?? 0, result, stop };
}

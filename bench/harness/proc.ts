/**
 * Time-boxed child processes for the harness. Every child runs under GNU `timeout -k` (its own
 * process group, killed after the grace period) when `timeout` exists, is tracked by pid, and is
 * ended by {@link killAll} on exit or signal. No new sessions (no `detached`): a harness killed
 * outright still takes its children with it when the caller ends its session.
 *
 * @module
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, appendFileSync } from "node:fs";
import { commandLine } from "../../core/shell.ts";

/** The outcome of one time-boxed command. */
export interface StepResult {
  argv: string[];
  code: number | null;
  signal: string | null;
  timedOut: boolean;
  seconds: number;
  stdout: string;
  stderr: string;
}

/** Options of {@link runStep}. */
export interface StepOptions {
  /** Environment added to the harness's own. */
  env?: Record<string, string>;
  /** Seconds before the command is stopped (TERM, then KILL 10 s later). */
  timeoutS: number;
  cwd?: string;
  /** Appends the command line, stdout and stderr here. */
  logFile?: string;
  /** Called with each chunk of stdout (e.g. to wait for a ready line). */
  onStdout?: (chunk: string) => void;
}

const live = new Set<ChildProcess>();
const HAS_TIMEOUT = existsSync("/usr/bin/timeout") || existsSync("/bin/timeout");

/** Children started by this process and still running. */
export function liveChildren(): number[] {
  return [...live].map((c) => c.pid ?? -1).filter((p) => p > 0);
}

/** Starts a tracked child; the returned promise resolves when it exits. */
export function startChild(argv: string[], opts: StepOptions): { child: ChildProcess; done: Promise<StepResult> } {
  const t0 = performance.now();
  const wrapped = HAS_TIMEOUT ? ["timeout", "-k", "10", String(Math.max(1, Math.round(opts.timeoutS))), ...argv] : argv;
  if (opts.logFile) appendFileSync(opts.logFile, `\n$ ${formatCommand(argv, opts.env)}\n`);
  const child = spawn(wrapped[0], wrapped.slice(1), {
    cwd: opts.cwd,
    env: { ...process.env, ...(opts.env ?? {}) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  live.add(child);
  let stdout = "";
  let stderr = "";
  // Without GNU timeout (not Linux), a timer stands in for it.
  const timer = HAS_TIMEOUT ? null : setTimeout(() => child.kill("SIGKILL"), opts.timeoutS * 1000);
  child.stdout!.setEncoding("utf8");
  child.stderr!.setEncoding("utf8");
  child.stdout!.on("data", (d: string) => {
    stdout += d;
    if (opts.logFile) appendFileSync(opts.logFile, d);
    opts.onStdout?.(d);
  });
  child.stderr!.on("data", (d: string) => {
    stderr += d;
    if (opts.logFile) appendFileSync(opts.logFile, d);
  });
  const done = new Promise<StepResult>((resolve) => {
    const finish = (code: number | null, signal: string | null): void => {
      if (timer) clearTimeout(timer);
      live.delete(child);
      resolve({
        argv,
        code,
        signal,
        // GNU timeout exits 124 when it stopped the command, 137 when it had to KILL it.
        timedOut: HAS_TIMEOUT ? code === 124 || code === 137 : signal === "SIGKILL",
        seconds: (performance.now() - t0) / 1000,
        stdout,
        stderr,
      });
    };
    child.on("error", (e) => {
      stderr += String(e);
      finish(127, null);
    });
    child.on("close", finish);
  });
  return { child, done };
}

/** Runs one command to completion under a time limit. */
export function runStep(argv: string[], opts: StepOptions): Promise<StepResult> {
  return startChild(argv, opts).done;
}

/** Sends TERM to every tracked child (GNU timeout forwards it), KILL to those left after `graceMs`. */
export async function killAll(graceMs = 3000): Promise<void> {
  const kids = [...live];
  for (const c of kids) c.kill("SIGTERM");
  const t0 = Date.now();
  while (live.size > 0 && Date.now() - t0 < graceMs) await new Promise((r) => setTimeout(r, 50));
  for (const c of live) c.kill("SIGKILL");
}

/** Installs SIGINT/SIGTERM/exit handlers that end every tracked child. */
export function killChildrenOnExit(): void {
  const onSignal = (sig: NodeJS.Signals): void => {
    void killAll(2000).then(() => process.exit(sig === "SIGINT" ? 130 : 143));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  process.once("exit", () => {
    for (const c of live) c.kill("SIGKILL");
  });
}

/** A shell-like rendering of a command for logs and results (never executed through a shell). */
export function formatCommand(argv: string[], env?: Record<string, string>): string {
  return commandLine(argv, env);
}

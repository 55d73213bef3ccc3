/**
 * Runs a {@link LaunchSpec} as a child process, never through a shell: forwards SIGINT, SIGTERM
 * and SIGHUP to it, resolves with its exit status (128 + signal number when a signal ended it),
 * removes the shim stats records it (or its children) left behind, and never
 * leaves a child running when spillway exits.
 *
 * Process groups: when stdin is not a terminal the child gets its own process group, so a signal
 * (and the final cleanup) reaches its whole tree. When stdin is a terminal the child stays in the
 * terminal's foreground group so it can read the terminal; Ctrl-C then reaches it from the
 * terminal directly and spillway does not send a second SIGINT (a second Ctrl-C kills it).
 *
 * @module
 */
import { spawn, type ChildProcess } from "node:child_process";
import { accessSync, constants, statSync } from "node:fs";
import { delimiter, isAbsolute, join, resolve } from "node:path";
import process from "node:process";
import type { Readable } from "node:stream";
import { LaunchError, RuntimeMissingError } from "../../core/errors.ts";
import { exitStatus } from "../../core/exit_status.ts";
import type { LaunchSpec } from "../../core/types.ts";
import { readProcessStats, type ProcessStats } from "../monitor.ts";
import { pruneShimStats } from "../../shim/stats.ts";
import { guardedArgv, guardError, parentDeathGuard } from "./parent_death.ts";
import { signalEcho } from "./signal_echo.ts";
import { type GenerationResult } from "../runtimes/node_llama_cpp.ts";

/** How to launch. */
export interface LaunchOptions {
  /** Runtime name for a missing-program error (e.g. `llama.cpp`). */
  runtime?: string;
  /** How to get the program when it is missing. */
  hint?: string;
  /**
   * Child stdio: `inherit` (default), `pipe` (stdout/stderr readable on the handle), `ignore`, or
   * `stderr` (stdin inherited, the child's stdout sent to our stderr: keeps our stdout for JSON).
   */
  stdio?: "inherit" | "pipe" | "ignore" | "stderr";
  /** Forward SIGINT/SIGTERM/SIGHUP received by this process to the child (default true). */
  forwardSignals?: boolean;
  /** Put the child in its own process group (default: when stdin is not a terminal). */
  newProcessGroup?: boolean;
  /** Milliseconds between a stop signal and SIGKILL (default 10000). */
  killGraceMs?: number;
  /** Told when the child is killed with SIGKILL (grace time over, or a second signal); default: a line on stderr. */
  onForceKill?: (message: string) => void;
  /** Where the shim writes its records, `spillway-<euid>/` below it (default: spec env SPILLWAY_STATS_DIR, else /dev/shm). */
  statsDir?: string;
}

/** A running child. */
export interface LaunchHandle {
  /** Child process id. */
  pid: number;
  /** The argv it runs. */
  argv: string[];
  /** Live shim statistics of the child, or null when it has none (no shim, or not yet). */
  stats(): ProcessStats | null;
  /** Sends `signal` (default SIGTERM), then SIGKILL after the grace time; resolves with the exit status. */
  stop(signal?: NodeJS.Signals): Promise<number>;
  /** Resolves with the exit status once the child is gone and cleaned up. Never rejects after spawn. */
  exited: Promise<number>;
  /** Child stdout/stderr when stdio is `pipe`. */
  stdout: Readable | null;
  stderr: Readable | null;
  /** In-process runs: the measured speeds (rejects with the run's error; aborted runs reject too). */
  result?: Promise<GenerationResult>;
}

/** The signals spillway passes on to what it launched. */
export const FORWARDED: NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP"];

/**
 * For a program {@link resolveExecutable} did not find: the file that is there but cannot be run
 * (with why), or null when nothing of that name exists.
 */
export function presentButNotExecutable(program: string, pathVar: string = process.env.PATH ?? ""): { path: string; why: string } | null {
  const paths = program.includes("/")
    ? [isAbsolute(program) ? program : resolve(program)]
    : pathVar.split(delimiter).filter((d) => d).map((d) => join(d, program));
  for (const p of paths) {
    let st;
    try {
      st = statSync(p);
    } catch {
      continue;
    }
    if (st.isDirectory()) return { path: p, why: "is a directory, not a program" };
    const mode = (st.mode & 0o777).toString(8).padStart(3, "0");
    return { path: p, why: `exists but is not executable (mode ${mode}): \`chmod +x\` it, or run it with its interpreter (e.g. spillway run -- sh ${p})` };
  }
  return null;
}

/** Absolute path of `program` (a path, or a name looked up in `PATH`), or null when not executable. */
export function resolveExecutable(program: string, pathVar: string = process.env.PATH ?? ""): string | null {
  const executable = (p: string): boolean => {
    try {
      accessSync(p, constants.X_OK);
      return statSync(p).isFile();
    } catch {
      return false;
    }
  };
  if (program.includes("/")) {
    const p = isAbsolute(program) ? program : resolve(program);
    return executable(p) ? p : null;
  }
  for (const dir of pathVar.split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, program);
    if (executable(p)) return p;
  }
  return null;
}

let notedNoGuard = false;
function noteNoGuard(): void {
  if (notedNoGuard) return;
  notedNoGuard = true;
  process.stderr.write(`spillway: note: ${guardError()}; a SIGKILL of spillway would leave the program it runs running\n`);
}

/** Child environment: ours, then the spec's; LD_PRELOAD from the spec goes first, ours after it. */
export function childEnv(spec: LaunchSpec, base: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(base)) if (v !== undefined) env[k] = v;
  for (const [k, v] of Object.entries(spec.env)) {
    env[k] = k === "LD_PRELOAD" && base.LD_PRELOAD ? `${v}:${base.LD_PRELOAD}` : v;
  }
  return env;
}

/**
 * Removes the shim's stats records under `dir` whose process is gone (the child's own, its
 * children's, or any other dead process's of this user: a record names its process by pid and
 * start time, so a live one is never taken). Returns the paths removed.
 */
export function cleanupStatsFiles(dir: string): string[] {
  return pruneShimStats(dir);
}

/**
 * Starts `spec.argv` with `spec.env` added to this process's environment.
 * Throws RuntimeMissingError (naming the program and how to get it) when the program is not
 * found, before anything is started.
 */
export function launchSpec(spec: LaunchSpec, options: LaunchOptions = {}): LaunchHandle {
  const program = spec.argv[0];
  if (!program) throw new LaunchError("nothing to launch: empty argv");
  const env = childEnv(spec);
  const resolved = resolveExecutable(program, env.PATH ?? "");
  if (resolved === null) {
    // There but not runnable (a data file, a script without +x, a directory): say so, not "install it".
    const present = presentButNotExecutable(program, env.PATH ?? "");
    if (present) throw new LaunchError(`${options.runtime ?? program}: '${present.path}' ${present.why}`);
    throw new RuntimeMissingError(options.runtime ?? program, program, options.hint ?? `Install '${program}' or put it on PATH.`);
  }
  const group = options.newProcessGroup ?? !process.stdin.isTTY;
  const stdio = options.stdio ?? "inherit";
  const statsDir = options.statsDir ?? spec.env.SPILLWAY_STATS_DIR ?? process.env.SPILLWAY_STATS_DIR ?? "/dev/shm";
  const graceMs = options.killGraceMs ?? 10_000;

  let child: ChildProcess;
  try {
    // Under the exec guard (parent_death.c): the kernel kills the program if spillway dies, even by SIGKILL.
    const guard = parentDeathGuard();
    if (!guard) noteNoGuard();
    const [file, args] = guardedArgv(resolved, program, spec.argv.slice(1), guard);
    child = spawn(file, args, {
      argv0: program,
      env,
      cwd: spec.cwd,
      stdio: stdio === "inherit"
        ? ["inherit", "inherit", "inherit"]
        : stdio === "stderr"
        ? ["inherit", 2, "inherit"]
        : stdio === "pipe"
        ? ["ignore", "pipe", "pipe"]
        : "ignore",
      detached: group,
      shell: false,
    });
  } catch (e) {
    throw new LaunchError(`could not start ${program}: ${(e as Error).message}`, { cause: e });
  }
  const pid = child.pid;
  if (pid === undefined) {
    // spawn reports ENOENT/EACCES asynchronously; pid undefined means it failed.
    throw new LaunchError(`could not start ${program} (${resolved})`);
  }

  let done = false;
  let killTimer: ReturnType<typeof setTimeout> | undefined;
  const target = group ? -pid : pid;
  const send = (sig: NodeJS.Signals): void => {
    try {
      process.kill(target, sig);
    } catch {
      // Already gone.
    }
  };
  // A SIGKILL is never silent: the user learns the program did not stop by itself.
  const forceKill = (why: string): void => {
    if (done) return;
    (options.onForceKill ?? ((m: string) => void process.stderr.write(m + "\n")))(`spillway: ${program} (pid ${pid}) ${why}; killed it (SIGKILL)`);
    send("SIGKILL");
  };
  let stopSignal: NodeJS.Signals = "SIGTERM";
  const escalate = (): void => {
    if (killTimer || done) return;
    killTimer = setTimeout(() => forceKill(`did not stop ${graceMs / 1000} s after ${stopSignal}`), graceMs);
    (killTimer as { unref?: () => void }).unref?.();
  };

  const received = new Map<string, number>();
  const isEcho = signalEcho();
  const onSignal = (sig: NodeJS.Signals): void => {
    if (isEcho(sig)) return;
    const n = (received.get(sig) ?? 0) + 1;
    received.set(sig, n);
    if (n >= 2) {
      forceKill(`was still running at a second ${sig}`);
      return;
    }
    stopSignal = sig;
    // From a terminal, Ctrl-C already reached a child in the foreground group.
    if (!(sig === "SIGINT" && !group && process.stdin.isTTY)) send(sig);
    escalate();
  };
  const handlers = new Map<NodeJS.Signals, () => void>();
  if (options.forwardSignals ?? true) {
    for (const sig of FORWARDED) {
      const h = (): void => onSignal(sig);
      handlers.set(sig, h);
      process.on(sig, h);
    }
  }
  // Whatever makes spillway exit, the child does not outlive it.
  const onExit = (): void => {
    if (!done) {
      send("SIGKILL");
      cleanupStatsFiles(statsDir);
    }
  };
  process.on("exit", onExit);

  const exited = new Promise<number>((resolveExit) => {
    let spawnError: Error | undefined;
    child.on("error", (e) => {
      spawnError = e;
    });
    child.on("close", (code, signal) => {
      done = true;
      if (killTimer) clearTimeout(killTimer);
      for (const [sig, h] of handlers) process.off(sig, h);
      process.off("exit", onExit);
      // Grandchildren left in the child's group would be orphans: end them.
      if (group) {
        try {
          process.kill(-pid, "SIGKILL");
        } catch {
          // Group empty.
        }
      }
      cleanupStatsFiles(statsDir);
      if (spawnError && code === null && signal === null) {
        process.stderr.write(`spillway: ${program}: ${spawnError.message}\n`);
        resolveExit(127);
        return;
      }
      resolveExit(exitStatus(code, signal));
    });
  });

  return {
    pid,
    argv: spec.argv,
    stats: () => {
      if (done) return null;
      try {
        return readProcessStats(pid, statsDir);
      } catch {
        return null; // a record being created, or not the shim's
      }
    },
    stop: (signal: NodeJS.Signals = "SIGTERM") => {
      if (!done) {
        stopSignal = signal;
        send(signal);
        escalate();
      }
      return exited;
    },
    exited,
    stdout: child.stdout ?? null,
    stderr: child.stderr ?? null,
  };
}

/**
 * Runs the spillway CLI from the sources as a user would run it (`spillway ARGS`), in the runtime
 * running the test: node --import tsx cli.ts, bun cli.ts, deno run -A cli.ts. bin/spillway.mjs
 * runs dist/ when built, which may be older than the sources under test; this runs cli.ts itself.
 *
 * @example
 * ```ts
 * const r = runCli(["plan", "recipes/demo.json5"]);
 * console.log(r.status, r.stdout);
 * ```
 *
 * @module
 */
import { spawn, spawnSync, type ChildProcess, type SpawnSyncReturns } from "node:child_process";
import { join } from "node:path";
import process from "node:process";
import { ROOT } from "./_native.ts";

/** argv running the TypeScript file `script` (relative to the project root) in the runtime running this test. */
export function scriptArgv(script: string, args: string[]): string[] {
  const file = join(ROOT, script);
  if (process.versions.bun) return [process.execPath, file, ...args];
  if (process.versions.deno) return [process.execPath, "run", "-A", file, ...args];
  return [process.execPath, "--import", "tsx", file, ...args];
}

/** argv running test/run_driver.ts in the runtime running this test. */
export function driverArgv(args: string[]): string[] {
  return scriptArgv(join("test", "run_driver.ts"), args);
}

/** argv running cli.ts in the runtime running this test. */
export function cliArgv(args: string[]): string[] {
  return scriptArgv("cli.ts", args);
}

/** Runs `spillway ARGS` to completion (no shell); stdout/stderr as text. */
export function runCli(args: string[], options: { env?: Record<string, string>; timeoutMs?: number; cwd?: string } = {}): SpawnSyncReturns<string> {
  const [cmd, ...rest] = cliArgv(args);
  return spawnSync(cmd!, rest, {
    cwd: options.cwd ?? ROOT,
    encoding: "utf8",
    timeout: options.timeoutMs ?? 120_000,
    env: { ...process.env, NO_COLOR: "1", ...options.env },
  });
}

/** Starts `spillway ARGS` (no shell) with piped stdio. */
export function startCli(args: string[], options: { env?: Record<string, string>; cwd?: string } = {}): ChildProcess {
  const [cmd, ...rest] = cliArgv(args);
  return spawn(cmd!, rest, { cwd: options.cwd ?? ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, NO_COLOR: "1", ...options.env } });
}

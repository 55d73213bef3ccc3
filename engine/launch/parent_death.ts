/**
 * The exec guard that keeps a launched program from outliving spillway: `parent_death.c`, built with
 * gcc at first use into `<cache>/bin/parent_death-<hash of source and flags>`, sets
 * PR_SET_PDEATHSIG(SIGKILL), checks that spillway is still its parent and execs the program (same
 * pid, same argv). A SIGKILL of spillway then takes the program with it; exit handlers cannot.
 *
 * @example
 * ```ts
 * import { guardedArgv } from "./parent_death.ts";
 * const [file, args] = guardedArgv("/usr/bin/llama-server", "llama-server", ["-m", "x.gguf"]);
 * // spawn(file, args) runs llama-server, killed by the kernel if this process dies
 * ```
 *
 * @module
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { cacheDir } from "../../core/paths.ts";

const FLAGS = ["-O2", "-Wall", "-Wextra"];
let built: string | null | undefined;
let buildError = "";

/** Path of the source (next to this module, also in a bundle that keeps `engine/launch/`). */
function sourcePath(): string | null {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const p of [join(here, "parent_death.c"), join(here, "engine", "launch", "parent_death.c"), join(here, "..", "engine", "launch", "parent_death.c")]) {
    if (existsSync(p)) return p;
  }
  return null;
}

/**
 * The built guard, or null when it cannot be built here (no gcc, not Linux): {@link guardError}
 * then says why. Built once per process, reused across processes through the cache.
 */
export function parentDeathGuard(cache: string = cacheDir()): string | null {
  if (built !== undefined) return built;
  built = null;
  if (process.platform !== "linux") {
    buildError = "PR_SET_PDEATHSIG is Linux only";
    return built;
  }
  const src = sourcePath();
  if (!src) {
    buildError = "parent_death.c is not shipped with this copy of spillway";
    return built;
  }
  const hash = createHash("sha256").update(readFileSync(src)).update(FLAGS.join("\0")).digest("hex").slice(0, 12);
  const out = join(cache, "bin", `parent_death-${hash}`);
  if (existsSync(out)) return (built = out);
  const tmp = `${out}.tmp${process.pid}`;
  try {
    mkdirSync(dirname(out), { recursive: true });
    execFileSync(process.env.CC || "gcc", [...FLAGS, "-o", tmp, src], { stdio: "pipe" });
    renameSync(tmp, out); // a concurrent launch never runs a half-written file
    built = out;
  } catch (e) {
    rmSync(tmp, { force: true });
    const stderr = (e as { stderr?: Uint8Array }).stderr;
    buildError = `cannot build ${src}: ${stderr && stderr.length ? new TextDecoder().decode(stderr).trim() : (e as Error).message}`;
  }
  return built;
}

/** Why {@link parentDeathGuard} returned null ("" when it did not). */
export function guardError(): string {
  return buildError;
}

/**
 * The file and arguments to spawn so that `path` runs as `argv0 args...` under the guard (or
 * directly, when there is no guard: then a SIGKILL of spillway leaves it running).
 */
export function guardedArgv(path: string, argv0: string, args: readonly string[], guard: string | null = parentDeathGuard()): [string, string[]] {
  // Deno's node:child_process rewrites a spawn argument that equals its own binary's path (seen
  // with deno 2.9: the worker then ran the deno binary as a script); "//path" names the same file.
  const target = process.versions.deno && path === process.execPath && path.startsWith("/") ? `/${path}` : path;
  return guard ? [guard, [String(process.pid), target, argv0, ...args]] : [path, [...args]];
}

/**
 * Building and locating the shim library, and the environment that applies it to a program.
 *
 * The library is built with gcc alone (no make, no CUDA toolkit) into a cache directory named by a
 * hash of its sources, so a changed source builds anew and an unchanged one is reused:
 * `<cache>/shim-<hash>/libspillway_shim.so`, cache = SPILLWAY_CACHE, else
 * $XDG_CACHE_HOME/spillway, else ~/.cache/spillway. SPILLWAY_SHIM names a prebuilt library instead.
 *
 * @example
 * ```ts
 * import { locateShim, shimEnv } from "./build.ts";
 * const lib = await locateShim();
 * const env = shimEnv({ reserveBytes: 1 << 30, minSpillBytes: 32 << 20, backing: "auto", report: "vram+host" }, lib);
 * // spawn the program with { env: { ...process.env, ...env } }
 * ```
 *
 * @module
 */
import { existsSync, readdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { LaunchError } from "../core/errors.ts";
import { compile, sourceHash } from "../core/native_build.ts";
import { cacheDir } from "../core/paths.ts";
import type { ShimSettings } from "../core/types.ts";

/** File name of the library. */
export const SHIM_LIBRARY_NAME = "libspillway_shim.so";

/**
 * The shim's source directory. From source this file sits in it; from a bundle (dist/, a packed
 * CLI) the first ancestor directory holding `shim/src` is the package root.
 */
export const SHIM_DIR: string = findShimDir(dirname(fileURLToPath(import.meta.url)));

function findShimDir(start: string): string {
  if (existsSync(join(start, "src", "alloc.c"))) return start;
  for (let dir = start; ; dir = dirname(dir)) {
    if (existsSync(join(dir, "shim", "src"))) return join(dir, "shim");
    if (dirname(dir) === dir) return start;
  }
}

const UAPI_HEADER = resolve(SHIM_DIR, "..", "kmod", "include", "uapi", "spillway.h");

/** gcc flags; the same as shim/Makefile's. */
export const SHIM_CFLAGS: readonly string[] = [
  "-O2", "-g", "-std=gnu11", "-fPIC", "-fvisibility=hidden", "-Wall", "-Wextra", "-Wno-unused-parameter",
  "-shared", "-Wl,-z,defs", `-Wl,-soname,${SHIM_LIBRARY_NAME}`,
];

/** Every file the library is built from (sources, headers, the kernel module's uapi header when present). */
export function shimSourceFiles(): string[] {
  const list = (sub: string, ext: string[]) =>
    readdirSync(join(SHIM_DIR, sub)).filter((f) => ext.some((e) => f.endsWith(e))).sort().map((f) => join(SHIM_DIR, sub, f));
  const files = [...list("src", [".c", ".h"]), ...list("include", [".h"])];
  if (existsSync(UAPI_HEADER)) files.push(UAPI_HEADER);
  return files;
}

/** Content hash of the sources and flags: names the cache directory. */
export function shimContentHash(): string {
  return sourceHash(shimSourceFiles(), SHIM_CFLAGS, { root: SHIM_DIR, length: 16 });
}

/** The cache root: spillway's cache directory (core/paths.ts). */
export function shimCacheDir(): string {
  return cacheDir();
}

/** Where {@linkcode locateShim} puts (or finds) the library for the current sources. */
export function shimLibraryPath(cacheDir: string = shimCacheDir()): string {
  if (process.env.SPILLWAY_SHIM) return process.env.SPILLWAY_SHIM;
  return join(cacheDir, `shim-${shimContentHash()}`, SHIM_LIBRARY_NAME);
}

/** Options of {@linkcode locateShim}. */
export interface LocateShimOptions {
  /** Cache root instead of {@linkcode shimCacheDir}. */
  cacheDir?: string;
  /** C compiler (default: $CC or gcc). */
  cc?: string;
}

/**
 * Compile the library with gcc into `outPath` (written under a temporary name, then renamed, so a
 * concurrent reader never sees half a file).
 * @throws LaunchError naming the compiler and its output when the build fails.
 */
export async function buildShim(outPath: string, cc: string = process.env.CC || "gcc"): Promise<string> {
  const sources = shimSourceFiles().filter((f) => f.endsWith(".c"));
  const failed = await compile(cc, (tmp) => [...SHIM_CFLAGS, `-I${join(SHIM_DIR, "include")}`, `-I${resolve(SHIM_DIR, "..", "kmod", "include")}`,
    "-o", tmp, ...sources, "-ldl", "-lpthread"], outPath);
  if (failed?.missingCompiler) {
    throw new LaunchError(`cannot build the spillway shim: '${cc}' could not be run (${failed.output}); install gcc or set SPILLWAY_SHIM to a built ${SHIM_LIBRARY_NAME}`, { cause: failed.cause });
  }
  if (failed) throw new LaunchError(`cannot build the spillway shim with ${cc} (exit ${failed.code}):\n${failed.output}`);
  return outPath;
}

/**
 * Path of a shim library built from the current sources: SPILLWAY_SHIM when set, else the cached
 * build, building it first when there is none.
 * @throws LaunchError when SPILLWAY_SHIM names a missing file or the build fails.
 */
export async function locateShim(options: LocateShimOptions = {}): Promise<string> {
  const env = process.env.SPILLWAY_SHIM;
  if (env) {
    if (!existsSync(env)) throw new LaunchError(`SPILLWAY_SHIM=${env}: no such file; unset it to build the shim`);
    return env;
  }
  const path = shimLibraryPath(options.cacheDir ?? shimCacheDir());
  if (existsSync(path)) return path;
  return await buildShim(path, options.cc ?? (process.env.CC || "gcc"));
}

function bytes(name: string, n: number): string {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`shim setting ${name} must be a non-negative whole byte count, got ${n}`);
  return String(n);
}

/**
 * The environment that applies the shim with `settings` to a program (docs/contracts.md "Shim
 * environment"): LD_PRELOAD plus SPILLWAY_* variables, sizes as plain byte counts. `libraryPath`
 * defaults to {@linkcode shimLibraryPath} (call {@linkcode locateShim} first so it exists). An
 * LD_PRELOAD already in `inherit` is kept after the shim.
 */
export function shimEnv(
  settings: ShimSettings,
  libraryPath: string = shimLibraryPath(),
  inherit: Record<string, string | undefined> = {},
): Record<string, string> {
  const env: Record<string, string> = {
    LD_PRELOAD: inherit.LD_PRELOAD ? `${libraryPath}:${inherit.LD_PRELOAD}` : libraryPath,
    SPILLWAY_RESERVE: bytes("reserveBytes", settings.reserveBytes),
    SPILLWAY_MIN_SPILL: bytes("minSpillBytes", settings.minSpillBytes),
    SPILLWAY_BACKING: settings.backing,
    SPILLWAY_REPORT: typeof settings.report === "number" ? bytes("report", settings.report) : settings.report,
  };
  if (settings.vramBudgetBytes !== undefined) env.SPILLWAY_VRAM_BUDGET = bytes("vramBudgetBytes", settings.vramBudgetBytes);
  if (settings.hostLimitBytes !== undefined) env.SPILLWAY_HOST_LIMIT = bytes("hostLimitBytes", settings.hostLimitBytes);
  if (settings.placementMapFile) env.SPILLWAY_PLACEMENT = settings.placementMapFile;
  if (settings.log) env.SPILLWAY_LOG = settings.log;
  return env;
}

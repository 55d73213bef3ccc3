/**
 * Builds C fixtures for tests with gcc, once per content: outputs are cached by a hash of the
 * sources and flags under node_modules/.cache/spillway-test/, so the three runtimes share them.
 *
 * @module
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { probeHost } from "../engine/hardware/probe.ts";

/** Repository root. */
export const ROOT: string = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** Cache directory for built fixtures. */
export const CACHE_DIR: string = join(ROOT, "node_modules", ".cache", "spillway-test");

/**
 * Compile `sources` (paths relative to the repo root) with gcc into `name` and return its path.
 * Use `-shared -fPIC` in `flags` for a library.
 */
export function buildC(name: string, sources: string[], flags: string[] = []): string {
  const hash = createHash("sha256");
  for (const s of sources) hash.update(s).update(readFileSync(join(ROOT, s)));
  hash.update(flags.join("\0"));
  const dir = join(CACHE_DIR, hash.digest("hex").slice(0, 16));
  const out = join(dir, name);
  if (existsSync(out)) return out;
  mkdirSync(dir, { recursive: true });
  // Build to a temporary name and rename, so a concurrent test never sees a half-written file.
  const tmp = `${out}.tmp${process.pid}`;
  execFileSync("gcc", ["-O2", "-Wall", "-o", tmp, ...sources.map((s) => join(ROOT, s)), ...flags], { stdio: "pipe" });
  renameSync(tmp, out);
  return out;
}

/**
 * Whether patch 0006's four-stream kernel is compiled in a native build here: it needs AVX2, F16C
 * and FMA, and every AVX2 CPU has the other two.
 */
export function hasMatvecStreams(): boolean {
  return probeHost().avx2;
}

/**
 * The patched llama.cpp's CPU-only build with the RPC backend (runtimes/llama.cpp/build.sh, cached in
 * {@link CACHE_DIR} by the source and the patches; the first test to need it builds it, ~8 minutes on
 * 2 cores): the folder of its binaries. One target list for every caller, so they share one entry.
 */
export function patchedCpuBuild(): string {
  const script = join(ROOT, "runtimes", "llama.cpp", "build.sh");
  return execFileSync("bash", [script, "--cpu-only", "--rpc", "--targets", "llama-perplexity llama-bench ggml-rpc-server", "--cache", CACHE_DIR], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], maxBuffer: 16 << 20 })
    .trim().split("\n").pop()!;
}

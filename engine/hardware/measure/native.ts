/**
 * Locating the benchmark's shipped assets (PTX kernel, C helper sources) and building the C
 * helpers with gcc at first use into the cache directory, keyed by a hash of source and flags.
 * @module
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { HardwareProbeError } from "../../../core/errors.ts";

const ASSET_DIR = join("engine", "hardware", "measure");

/**
 * Path of a file shipped next to this module (`read_kernel.ptx`, `cpu_bw.c`, `disk_bw.c`).
 * Also works from a bundle (dist/, bench/.pack/): it then looks for `engine/hardware/measure/<name>`
 * in the bundle's directory and up to four levels above it.
 * @throws HardwareProbeError when the file is nowhere to be found.
 */
export function assetPath(name: string): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const tried = [join(here, name)];
  let dir = here;
  for (let i = 0; i < 5; i++) {
    tried.push(join(dir, ASSET_DIR, name));
    dir = resolve(dir, "..");
  }
  for (const p of tried) if (existsSync(p)) return p;
  throw new HardwareProbeError(`benchmark asset ${name} not found; looked in: ${tried.join(", ")}`);
}

/**
 * Build a C helper (`cpu_bw` from `cpu_bw.c`, ...) with gcc into `<cacheDir>/bin/` unless a build
 * of the same source and flags is already there; returns the executable's path.
 * @throws HardwareProbeError when gcc is missing or the build fails (with gcc's message).
 */
export function buildHelper(name: string, cacheDir: string, flags: readonly string[] = []): string {
  const src = assetPath(`${name}.c`);
  const source = readFileSync(src);
  const hash = createHash("sha256").update(source).update(flags.join("\0")).digest("hex").slice(0, 12);
  const binDir = join(cacheDir, "bin");
  const out = join(binDir, `${name}-${hash}`);
  if (existsSync(out)) return out;
  mkdirSync(binDir, { recursive: true });
  // Temporary name + rename: a concurrent bench never runs a half-written binary.
  const tmp = `${out}.tmp${process.pid}`;
  const attempt = (extra: readonly string[]): Error | null => {
    try {
      execFileSync("gcc", ["-O3", ...extra, ...flags, "-o", tmp, src], { stdio: "pipe" });
      return null;
    } catch (e) {
      return e as Error;
    }
  };
  // -march=native helps the summing loop; fall back for compilers/CPUs that reject it.
  let err = attempt(["-march=native"]);
  if (err) err = attempt([]);
  if (err) {
    rmSync(tmp, { force: true });
    const stderr = (err as { stderr?: Uint8Array }).stderr;
    const detail = stderr && stderr.length ? new TextDecoder().decode(stderr).trim() : err.message;
    const missing = (err as { code?: string }).code === "ENOENT";
    throw new HardwareProbeError(
      missing
        ? `cannot build ${name}: gcc was not found. Install a C compiler (e.g. apt-get install gcc) to run this measurement.`
        : `cannot build ${name} from ${src}: ${detail}`,
      { cause: err },
    );
  }
  renameSync(tmp, out);
  return out;
}

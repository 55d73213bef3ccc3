/**
 * Locating the benchmark's shipped assets (PTX kernel, C helper sources) and building the C
 * helpers with gcc at first use into the cache directory, keyed by a hash of source and flags.
 * @module
 */
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { HardwareProbeError } from "../../../core/errors.ts";
import { compileSync, sourceHash } from "../../../core/native_build.ts";

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
  const hash = sourceHash([src], flags, { length: 12 });
  const out = join(cacheDir, "bin", `${name}-${hash}`);
  if (existsSync(out)) return out;
  // -march=native helps the summing loop; fall back for compilers/CPUs that reject it.
  const failed = compileSync("gcc", [
    (tmp) => ["-O3", "-march=native", ...flags, "-o", tmp, src],
    (tmp) => ["-O3", ...flags, "-o", tmp, src],
  ], out);
  if (failed) {
    throw new HardwareProbeError(
      failed.missingCompiler
        ? `cannot build ${name}: gcc was not found. Install a C compiler (e.g. apt-get install gcc) to run this measurement.`
        : `cannot build ${name} from ${src}: ${failed.output}`,
      { cause: failed.cause },
    );
  }
  return out;
}

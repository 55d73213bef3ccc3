/**
 * The harness's `concurrent` command: the concurrent tier figure of `spillway bench`
 * (engine/hardware/measure/concurrent.ts), alone, in ~20 s instead of the tiers' 2 minutes, so a run
 * over PCIe (issue 22's hybrid matrices) can be read against the machine's own link. bench/gpu/entry.sh
 * runs it before the matrix when SPILLWAY_BENCH_CONCURRENT=1.
 *
 * Usage: harness concurrent [--out DIR] [--work DIR] [--bytes B] [--seconds S] [--libcuda PATH]
 * -> DIR/concurrent.json (the measurement, GB/s min/median/max of each path alone and together)
 *
 * @example
 * await concurrentCommand({ out: "/tmp/out", work: "/tmp/w", bytes: String(1 << 30) }); // 0 on success
 * @module
 */
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { measureConcurrent } from "../../engine/hardware/measure/concurrent.ts";
import { writeJsonAtomic } from "./results.ts";

/** Positive number from an option, or the default; a bad value names the option. */
function positive(o: Record<string, string>, key: string, fallback: number): number {
  if (o[key] === undefined) return fallback;
  const v = Number(o[key]);
  if (!(v > 0) || !Number.isFinite(v)) throw new Error(`harness concurrent: --${key} must be a positive number, got ${JSON.stringify(o[key])}`);
  return v;
}

/** Measure and write OUT/concurrent.json; resolves to the exit code. */
export async function concurrentCommand(o: Record<string, string>): Promise<number> {
  const out = resolve(o.out ?? "bench/.out");
  const bytes = positive(o, "bytes", 4 * 1024 ** 3);
  const r = await measureConcurrent({
    cacheDir: resolve(o.work ?? join(out, ".work")),
    libcuda: o.libcuda,
    cpuBytes: bytes,
    gpuBytes: bytes,
    seconds: positive(o, "seconds", 1.5),
  });
  mkdirSync(out, { recursive: true });
  writeJsonAtomic(join(out, "concurrent.json"), r);
  console.log(JSON.stringify(r));
  return 0;
}

/**
 * The harness's `concurrent` command: the concurrent tier figure of `spillway bench`
 * (engine/hardware/measure/concurrent.ts), alone, in ~20 s instead of the tiers' 2 minutes, so a run
 * over PCIe (issue 22's hybrid matrices) can be read against the machine's own link. bench/gpu/entry.sh
 * runs it before the matrix when SPILLWAY_BENCH_CONCURRENT=1. It also records the CPU's two summing
 * loops (engine/hardware/measure/cpu.ts: tuned and plain) in DIR/cpu_ram.json, which
 * bench/harness/implied_cpu_rate.ts sets beside the rate llama.cpp's stock rows imply.
 *
 * Usage: harness concurrent [--out DIR] [--work DIR] [--bytes B] [--seconds S] [--libcuda PATH]
 * -> DIR/concurrent.json (the measurement, GB/s min/median/max of each path alone and together),
 *    DIR/cpu_ram.json (the CPU loops, GB/s min/median/max, over the same buffer size)
 *
 * @example
 * await concurrentCommand({ out: "/tmp/out", work: "/tmp/w", bytes: String(1 << 30) }); // 0 on success
 * @module
 */
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { measureConcurrent } from "../../engine/hardware/measure/concurrent.ts";
import { measureCpuRam } from "../../engine/hardware/measure/cpu.ts";
import { writeJsonAtomic } from "./results.ts";

/** Positive number from an option, or the default; a bad value names the option. */
function positive(o: Record<string, string>, key: string, fallback: number): number {
  if (o[key] === undefined) return fallback;
  const v = Number(o[key]);
  if (!(v > 0) || !Number.isFinite(v)) throw new Error(`harness concurrent: --${key} must be a positive number, got ${JSON.stringify(o[key])}`);
  return v;
}

/** Measure and write OUT/concurrent.json and OUT/cpu_ram.json; resolves to the exit code. */
export async function concurrentCommand(o: Record<string, string>): Promise<number> {
  const out = resolve(o.out ?? "bench/.out");
  const bytes = positive(o, "bytes", 4 * 1024 ** 3);
  const cacheDir = resolve(o.work ?? join(out, ".work"));
  const r = await measureConcurrent({
    cacheDir,
    libcuda: o.libcuda,
    cpuBytes: bytes,
    gpuBytes: bytes,
    seconds: positive(o, "seconds", 1.5),
  });
  // Both loops, so a run can tell which one tracks llama.cpp's CPU experts on its machine.
  const cpu = await measureCpuRam({ cacheDir, bytes, repeats: 3, simple: true });
  mkdirSync(out, { recursive: true });
  writeJsonAtomic(join(out, "concurrent.json"), r);
  writeJsonAtomic(join(out, "cpu_ram.json"), cpu);
  console.log(JSON.stringify(r));
  return 0;
}

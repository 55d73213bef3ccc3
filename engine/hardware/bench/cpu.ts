/**
 * CPU RAM read bandwidth with all cores: runs the cpu_bw C helper (built at first use).
 * @module
 */
import { execFile } from "node:child_process";
import { availableParallelism } from "node:os";
import type { Measured } from "../../types.ts";
import { HardwareProbeError } from "../../errors.ts";
import { parseHelperOutput } from "./helper_output.ts";
import { buildHelper } from "./native.ts";
import { summarize } from "./stats.ts";

/** Options of {@linkcode measureCpuRam}. */
export interface CpuRamOptions {
  /** Where the helper is built (`<cacheDir>/bin`). */
  cacheDir: string;
  /** Threads; default all cores. */
  threads?: number;
  /** Buffer bytes; default 2 GiB (well past any CPU cache), at most a quarter of free RAM. */
  bytes?: number;
  /** Repeats; default 5. */
  repeats?: number;
}

/** Result of {@linkcode measureCpuRam}. */
export interface CpuRamResult {
  ramGBps: Measured;
  threads: number;
  bytes: number;
}

/** Run a program and return its stdout; failures become HardwareProbeError with its stderr. */
export function runHelper(path: string, args: string[], timeoutMs = 300_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(path, args, { timeout: timeoutMs, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      if (err) {
        const detail = String(stderr).trim() || err.message;
        reject(new HardwareProbeError(`${path} ${args.join(" ")}: ${detail}`, { cause: err }));
      } else resolve(String(stdout));
    });
  });
}

/** Measure RAM read bandwidth of all cores (GB/s per repeat, summarized). */
export async function measureCpuRam(opts: CpuRamOptions): Promise<CpuRamResult> {
  const threads = opts.threads ?? availableParallelism();
  const bytes = opts.bytes ?? 2 * 1024 ** 3;
  const repeats = opts.repeats ?? 5;
  const exe = buildHelper("cpu_bw", opts.cacheDir, ["-pthread"]);
  const out = parseHelperOutput("cpu_bw", await runHelper(exe, [String(threads), String(bytes), String(repeats)]));
  return { ramGBps: summarize(out.gbps, "GB/s"), threads: out.threads ?? threads, bytes: out.bytes };
}

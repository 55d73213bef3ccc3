/**
 * CPU RAM read bandwidth with all cores: runs the cpu_bw C helper (built at first use).
 * @module
 */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { availableParallelism, freemem } from "node:os";
import type { Measured } from "../../../core/types.ts";
import { HardwareProbeError } from "../../../core/errors.ts";
import { parseHelperOutput } from "./helper_output.ts";
import { buildHelper } from "./native.ts";
import { summarize } from "./stats.ts";

/** Options of {@linkcode measureCpuRam}. */
export interface CpuRamOptions {
  /** Where the helper is built (`<cacheDir>/bin`). */
  cacheDir: string;
  /** Threads; default all cores. */
  threads?: number;
  /** Buffer bytes; default {@linkcode defaultCpuBufferBytes}. */
  bytes?: number;
  /** Repeats; default 5. */
  repeats?: number;
  /**
   * Also measure the `simple` loop (one scalar accumulator, buffer filled by one thread), the way
   * a plain summing program reads RAM; default true.
   */
  simple?: boolean;
}

/** Result of {@linkcode measureCpuRam}. */
export interface CpuRamResult {
  /** The tuned loop (first touch per thread, eight accumulators): what the cores can stream. */
  ramGBps: Measured;
  /** The simple loop, when measured: comparable with figures of plain summing programs. */
  simpleGBps?: Measured;
  threads: number;
  bytes: number;
}

/** Last-level cache size from sysfs (bytes), or null. */
export function l3CacheBytes(): number | null {
  try {
    const t = readFileSync("/sys/devices/system/cpu/cpu0/cache/index3/size", "utf8").trim();
    const m = /^(\d+)([KMG]?)$/.exec(t);
    if (!m) return null;
    return Number(m[1]) * ({ "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 } as Record<string, number>)[m[2]];
  } catch {
    return null;
  }
}

/**
 * Default buffer: max(2 GiB, 8 x L3), so caches cannot serve a noticeable share of the reads
 * (server L3s reach hundreds of MiB), but at most a quarter of free RAM and at least 256 MiB.
 */
export function defaultCpuBufferBytes(): number {
  const want = Math.max(2 * 1024 ** 3, 8 * (l3CacheBytes() ?? 0));
  const cap = Math.max(256 * 1024 ** 2, Math.floor(freemem() / 4));
  return Math.floor(Math.min(want, cap) / 4096) * 4096;
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
  const bytes = opts.bytes ?? defaultCpuBufferBytes();
  const repeats = opts.repeats ?? 5;
  const exe = buildHelper("cpu_bw", opts.cacheDir, ["-pthread"]);
  const out = parseHelperOutput("cpu_bw", await runHelper(exe, [String(threads), String(bytes), String(repeats), "tuned"]));
  const result: CpuRamResult = { ramGBps: summarize(out.gbps, "GB/s"), threads: out.threads ?? threads, bytes: out.bytes };
  if (opts.simple ?? true) {
    const simple = parseHelperOutput("cpu_bw", await runHelper(exe, [String(threads), String(bytes), String(repeats), "simple"]));
    result.simpleGBps = summarize(simple.gbps, "GB/s");
  }
  return result;
}

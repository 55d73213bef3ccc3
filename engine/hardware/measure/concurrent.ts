/**
 * The concurrent tier figure: do the CPU's path to host memory and the GPU's zero-copy path over
 * PCIe add up when both read at the same time? Runs the concurrent_bw C helper (built at first use;
 * it loads the CUDA driver with dlopen and runs read_kernel.ptx): CPU threads summing one pinned
 * buffer, a GPU kernel reading another, host-mapped buffer, each alone and both together; then the
 * same with the copy engine copying that buffer into VRAM instead of the kernel reading it in place.
 * The planner's hybrid strategy (engine/planner/hybrid.ts) splits expert reads by these rates.
 *
 * @example
 * const r = await measureConcurrent({ cacheDir: "/tmp/spillway", gpuBytes: 1 << 30, cpuBytes: 1 << 30 });
 * console.log(r.cpuTogetherGBps.median + r.gpuTogetherGBps.median); // e.g. 129 on an H200 machine
 * @module
 */
import { availableParallelism } from "node:os";
import type { Measured } from "../../../core/types.ts";
import { HardwareProbeError } from "../../../core/errors.ts";
import { runHelper } from "./cpu.ts";
import { assetPath, buildHelper } from "./native.ts";
import { summarize } from "./stats.ts";

/** Options of {@linkcode measureConcurrent}. */
export interface ConcurrentOptions {
  /** Where the helper is built (`<cacheDir>/bin`). */
  cacheDir: string;
  /** CUDA driver library the helper opens; default `libcuda.so.1`. */
  libcuda?: string;
  /** CPU threads; default all cores. */
  threads?: number;
  /** Bytes of the buffer the CPU sums; default 1 GiB. */
  cpuBytes?: number;
  /** Bytes of the host-mapped buffer the GPU reads; default 1 GiB. */
  gpuBytes?: number;
  /** Seconds of each window (alone and together); default 1.5. */
  seconds?: number;
  /** Repeats of the three windows; default 3. */
  repeats?: number;
  device?: number;
}

/** What {@linkcode measureConcurrent} found (GB/s = 1e9 bytes/s). */
export interface ConcurrentResult {
  threads: number;
  cpuBytes: number;
  gpuBytes: number;
  cpuAloneGBps: Measured;
  gpuAloneGBps: Measured;
  /** The CPU's rate while the GPU reads too (same window). */
  cpuTogetherGBps: Measured;
  /** The GPU's rate while the CPU reads too (same window). */
  gpuTogetherGBps: Measured;
  /**
   * The GPU alone with llama.cpp's one-token Q8_0 mat-vec load pattern (16-bit loads of 34-byte
   * blocks, one row per CTA) instead of 16-byte words: what its own kernels can get from host memory
   * in place. Absent when the helper's PTX has no such kernel.
   */
  gpuQ8AloneGBps?: Measured;
  /**
   * The copy engine alone: the GPU's buffer copied into VRAM in 2 MiB pieces queued on one stream,
   * as llama.cpp copies a block's experts for the GPU. Absent from older helpers' output, as are the
   * next two (all three or none).
   */
  copyAloneGBps?: Measured;
  /** The copy engine's rate while the CPU threads sum their buffer (same window). */
  copyTogetherGBps?: Measured;
  /** The CPU's rate in that window: what the CPU part keeps while the experts of the GPU part are copied. */
  cpuWithCopyGBps?: Measured;
  /** Median CPU + median GPU rate together. */
  sumTogetherGBps: number;
  /** sumTogether / max(cpu alone, gpu alone): 1 means the paths share one limit, 2 that they add fully. */
  gainVsBestAlone: number;
  /**
   * The same for the copy engine: (CPU beside the copies + copies beside the CPU) / max(CPU alone,
   * copies alone). What splitting the host experts between the CPU and copies into VRAM can gain at
   * best over the faster path alone. Present with the copy passes.
   */
  copyGainVsBestAlone?: number;
}

/** The probe's rates without its bookkeeping: what a saved probe file holds (see {@link readConcurrentJson}). */
export type ConcurrentRates = Pick<ConcurrentResult, "cpuAloneGBps" | "gpuAloneGBps" | "cpuTogetherGBps" | "gpuTogetherGBps" | "gpuQ8AloneGBps" | "copyAloneGBps" | "copyTogetherGBps" | "cpuWithCopyGBps">;

/**
 * The most running two paths at once can gain over the faster one alone, from the probe's medians:
 * through zero-copy reads, and through the copy engine where the copy passes ran. A perfect
 * overlap of a split's two parts reads host experts at most this much faster.
 *
 * @example
 * const { zeroCopy, copy } = overlapGains(result); // e.g. 1.09, 1.06
 */
export function overlapGains(c: ConcurrentRates): { zeroCopy: number; copy?: number } {
  const zeroCopy = (c.cpuTogetherGBps.median + c.gpuTogetherGBps.median) / Math.max(c.cpuAloneGBps.median, c.gpuAloneGBps.median);
  if (!c.copyAloneGBps || !c.copyTogetherGBps || !c.cpuWithCopyGBps) return { zeroCopy };
  return { zeroCopy, copy: (c.cpuWithCopyGBps.median + c.copyTogetherGBps.median) / Math.max(c.cpuAloneGBps.median, c.copyAloneGBps.median) };
}

const FIELDS = ["cpuAloneGBps", "gpuAloneGBps", "cpuTogetherGBps", "gpuTogetherGBps"] as const;
const COPY_FIELDS = ["copyAloneGBps", "copyTogetherGBps", "cpuWithCopyGBps"] as const;

/**
 * Parse concurrent_bw's stdout (its last non-empty line is one JSON object).
 * @throws HardwareProbeError naming the field that is missing or wrong.
 */
export function parseConcurrentOutput(stdout: string): ConcurrentResult {
  const line = stdout.trim().split("\n").pop() ?? "";
  let obj: unknown;
  try {
    obj = JSON.parse(line);
  } catch (e) {
    throw new HardwareProbeError(`concurrent_bw: output is not JSON: ${JSON.stringify(line.slice(0, 200))}`, { cause: e });
  }
  if (typeof obj !== "object" || obj === null || Array.isArray(obj)) throw new HardwareProbeError("concurrent_bw: output is not a JSON object");
  return concurrentFromHelper(obj as Record<string, unknown>);
}

/** The helper's JSON object (one value per repeat in each array) summarized. */
function concurrentFromHelper(o: Record<string, unknown>): ConcurrentResult {
  for (const k of ["threads", "cpuBytes", "gpuBytes"] as const) {
    if (typeof o[k] !== "number" || !((o[k] as number) > 0)) {
      throw new HardwareProbeError(`concurrent_bw: field ${k} must be a positive number, got ${JSON.stringify(o[k])}`);
    }
  }
  const lists: Record<string, number[]> = {};
  let n = -1;
  for (const k of FIELDS) {
    const v = o[k];
    if (!Array.isArray(v) || v.length === 0 || !v.every((x) => typeof x === "number" && Number.isFinite(x) && x > 0)) {
      throw new HardwareProbeError(`concurrent_bw: field ${k} must be a non-empty array of positive numbers, got ${JSON.stringify(v)}`);
    }
    if (n >= 0 && v.length !== n) throw new HardwareProbeError(`concurrent_bw: field ${k} has ${v.length} repeats, the others ${n}`);
    n = v.length;
    lists[k] = v as number[];
  }
  const m = Object.fromEntries(FIELDS.map((k) => [k, summarize(lists[k], "GB/s")])) as Record<(typeof FIELDS)[number], Measured>;
  const sum = m.cpuTogetherGBps.median + m.gpuTogetherGBps.median;
  // Optional figures (older helpers lack them): one value per repeat; the copy passes come as a group.
  const optional = (k: string): Measured | undefined => {
    const v = o[k];
    if (v === undefined) return undefined;
    if (!Array.isArray(v) || v.length !== n || !v.every((x) => typeof x === "number" && Number.isFinite(x) && x > 0)) {
      throw new HardwareProbeError(`concurrent_bw: field ${k} must be an array of ${n} positive numbers, got ${JSON.stringify(v)}`);
    }
    return summarize(v as number[], "GB/s");
  };
  const q8 = optional("gpuQ8AloneGBps");
  const present = COPY_FIELDS.filter((k) => o[k] !== undefined);
  if (present.length > 0 && present.length < COPY_FIELDS.length) {
    throw new HardwareProbeError(`concurrent_bw: fields ${COPY_FIELDS.join(", ")} come together; got only ${present.join(", ")}`);
  }
  const copy = Object.fromEntries(present.map((k) => [k, optional(k)!]));
  const gains = overlapGains({ ...m, ...copy });
  return {
    threads: o.threads as number,
    cpuBytes: o.cpuBytes as number,
    gpuBytes: o.gpuBytes as number,
    ...m,
    ...(q8 !== undefined ? { gpuQ8AloneGBps: q8 } : {}),
    ...copy,
    sumTogetherGBps: sum,
    gainVsBestAlone: gains.zeroCopy,
    ...(gains.copy !== undefined ? { copyGainVsBestAlone: gains.copy } : {}),
  };
}

/**
 * The probe's rates from a saved file: the helper's own output (one repeat per array entry, as
 * older runs committed it) or a saved {@link ConcurrentResult} (min/median/max of each rate).
 * @throws HardwareProbeError naming the field that is missing or wrong.
 *
 * @example
 * const probe = readConcurrentJson(readFileSync("bench/results/2026-12-07-hybrid-launch/concurrent.json", "utf8"));
 * overlapGains(probe).copy; // 1.16
 */
export function readConcurrentJson(text: string): ConcurrentRates {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(text);
  } catch (e) {
    throw new HardwareProbeError(`concurrent probe file: not JSON (${(e as Error).message})`, { cause: e });
  }
  if (typeof o !== "object" || o === null || Array.isArray(o)) throw new HardwareProbeError("concurrent probe file: not a JSON object");
  if (Array.isArray(o.cpuAloneGBps)) return concurrentFromHelper(o);
  const out: Record<string, Measured> = {};
  for (const k of [...FIELDS, "gpuQ8AloneGBps", ...COPY_FIELDS] as const) {
    const v = o[k] as Measured | undefined;
    if (v === undefined && !(FIELDS as readonly string[]).includes(k)) continue;
    if (typeof v !== "object" || v === null || !(typeof v.median === "number" && v.median > 0)) {
      throw new HardwareProbeError(`concurrent probe file: field ${k} must have a positive median, got ${JSON.stringify(v)}`);
    }
    out[k] = v;
  }
  const copies = COPY_FIELDS.filter((k) => k in out).length;
  if (copies > 0 && copies < COPY_FIELDS.length) throw new HardwareProbeError(`concurrent probe file: fields ${COPY_FIELDS.join(", ")} come together`);
  return out as ConcurrentRates;
}

/** Measure the two host-memory paths alone and together (needs gcc and a CUDA driver). */
export async function measureConcurrent(opts: ConcurrentOptions): Promise<ConcurrentResult> {
  const exe = buildHelper("concurrent_bw", opts.cacheDir, ["-pthread", "-ldl"]);
  const args = [
    opts.libcuda ?? "libcuda.so.1",
    assetPath("read_kernel.ptx"),
    "--threads", String(opts.threads ?? availableParallelism()),
    "--cpu-bytes", String(opts.cpuBytes ?? 1024 ** 3),
    "--gpu-bytes", String(opts.gpuBytes ?? 1024 ** 3),
    "--seconds", String(opts.seconds ?? 1.5),
    "--repeats", String(opts.repeats ?? 3),
    "--device", String(opts.device ?? 0),
  ];
  return parseConcurrentOutput(await runHelper(exe, args));
}

/**
 * Sequential read bandwidth of a filesystem with O_DIRECT: reads the model file when one is given,
 * else writes a scratch file in the target directory, reads it, and removes it.
 * @module
 */
import { rmSync, statSync } from "node:fs";
import { join } from "node:path";
import type { Measured } from "../../../core/types.ts";
import { HardwareProbeError } from "../../../core/errors.ts";
import { runHelper } from "./cpu.ts";
import { parseHelperOutput } from "./helper_output.ts";
import { buildHelper } from "./native.ts";
import { summarize } from "./stats.ts";

/** Options of {@linkcode measureDiskRead}. */
export interface DiskReadOptions {
  cacheDir: string;
  /** A model file (read in place) or a directory on the filesystem to measure (scratch file). */
  target: string;
  /** Bytes read per repeat; default 1 GiB (less when the file is smaller). */
  bytes?: number;
  /** Read size; default 16 MiB. */
  block?: number;
  repeats?: number;
}

/** Result of {@linkcode measureDiskRead}. */
export interface DiskReadResult {
  readGBps: Measured;
  /** false when the filesystem refused O_DIRECT (then cached pages were dropped before each read). */
  direct: boolean;
  bytes: number;
  /** The file that was read. */
  file: string;
  /** Whether it was a scratch file spillway wrote. */
  scratch: boolean;
}

/** Measure O_DIRECT sequential reads on the filesystem of `opts.target`. */
export async function measureDiskRead(opts: DiskReadOptions): Promise<DiskReadResult> {
  const block = opts.block ?? 16 * 1024 * 1024;
  let bytes = opts.bytes ?? 1024 ** 3;
  bytes = Math.max(block, Math.floor(bytes / block) * block);
  const repeats = opts.repeats ?? 3;
  let st;
  try {
    st = statSync(opts.target);
  } catch (e) {
    throw new HardwareProbeError(`disk benchmark target ${opts.target}: ${(e as Error).message}`, { cause: e });
  }
  const exe = buildHelper("disk_bw", opts.cacheDir);
  const scratch = st.isDirectory();
  const file = scratch ? join(opts.target, `.spillway-bench-${process.pid}.tmp`) : opts.target;
  try {
    if (scratch) await runHelper(exe, ["write", file, String(bytes), String(block)]);
    const out = parseHelperOutput("disk_bw", await runHelper(exe, ["read", file, String(bytes), String(block), String(repeats)]));
    return { readGBps: summarize(out.gbps, "GB/s"), direct: out.direct ?? false, bytes: out.bytes, file, scratch };
  } finally {
    if (scratch) rmSync(file, { force: true });
  }
}

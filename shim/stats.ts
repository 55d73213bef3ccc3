/**
 * The shim's per-process statistics record, mirrored from shim/include/spillway_stats.h: where each
 * field lives ({@linkcode STATS_LAYOUT}), decoding a record, and reading the records the running
 * processes keep in `<SPILLWAY_STATS_DIR>/spillway.<pid>` (default /dev/shm).
 *
 * test/shim_layout.test.ts compiles a C program printing sizeof/offsetof of the C struct and compares
 * them with this file.
 *
 * @example
 * ```ts
 * import { listShimStats } from "./stats.ts";
 * for (const s of listShimStats()) console.log(s.pid, s.tiers[0].bytes, s.spills);
 * ```
 *
 * @module
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { SpillwayError } from "../core/errors.ts";

/** "SPILLSWT" as a little-endian u64. */
export const STATS_MAGIC = 0x5457534c4c495053n;
/** Layout version this file decodes. */
export const STATS_VERSION = 1;
/** Bytes of the record. */
export const STATS_SIZE = 296;
/** Tier indices of `tiers`. */
export const TIER = { vram: 0, hostVmm: 1, hostMapped: 2, hostKmod: 3 } as const;
/** Names of the tiers, by index. */
export const TIER_NAMES: readonly string[] = ["vram", "host_vmm", "host_mapped", "host_kmod"];
/** Names of `backing` values, by value. */
export const BACKING_NAMES: readonly string[] = ["auto", "kmod", "vmm", "mapped"];
/** Names of `reportMode` values, by value. */
export const REPORT_NAMES: readonly string[] = ["vram", "vram+host", "size"];
/** `flags` bits. */
export const STATS_FLAG = { disabled: 1, vmmHostUnsupported: 2 } as const;

/** Byte offset of every field (tiers: the first tier; each tier is 32 bytes: bytes, allocs, peak, total). */
export const STATS_LAYOUT = {
  magic: 0,
  version: 8,
  size: 12,
  pid: 16,
  backing: 20,
  seq: 24,
  start_ns: 32,
  update_ns: 40,
  vram_budget: 48,
  reserve: 56,
  min_spill: 64,
  host_limit: 72,
  report_mode: 80,
  flags: 84,
  report_size: 88,
  tiers: 96,
  allocs: 224,
  frees: 232,
  passthrough_frees: 240,
  spills: 248,
  splits: 256,
  failures: 264,
  host_failures: 272,
  largest_alloc: 280,
  largest_spill: 288,
} as const;
/** Size of one tier entry and the offsets inside it. */
export const TIER_LAYOUT = { size: 32, bytes: 0, allocs: 8, peak_bytes: 16, total_bytes: 24 } as const;

/** One memory tier of a process. */
export interface TierStats {
  /** Bytes placed in the tier now. */
  bytes: bigint;
  /** Live allocations holding bytes in the tier. */
  allocs: bigint;
  peakBytes: bigint;
  /** Bytes ever placed (cumulative). */
  totalBytes: bigint;
}

/** A decoded stats record. 64-bit counters are bigint. */
export interface ShimStats {
  version: number;
  pid: number;
  backing: number;
  /** `auto`, `kmod`, `vmm` or `mapped`. */
  backingName: string;
  seq: bigint;
  /** CLOCK_REALTIME nanoseconds. */
  startNs: bigint;
  updateNs: bigint;
  vramBudget: bigint;
  reserve: bigint;
  minSpill: bigint;
  hostLimit: bigint;
  reportMode: number;
  /** `vram`, `vram+host` or `size`. */
  reportModeName: string;
  reportSize: bigint;
  flags: number;
  disabled: boolean;
  /** The driver refused host VMM allocations; the shim fell back to mapped pinned memory. */
  vmmHostUnsupported: boolean;
  /** Indexed by {@linkcode TIER}. */
  tiers: TierStats[];
  allocs: bigint;
  frees: bigint;
  passthroughFrees: bigint;
  spills: bigint;
  splits: bigint;
  failures: bigint;
  hostFailures: bigint;
  largestAlloc: bigint;
  largestSpill: bigint;
}

/**
 * Decode a record. `origin` names it in errors.
 * @throws SpillwayError when the bytes are not a spillway stats record of a version this code reads.
 */
export function decodeShimStats(bytes: Uint8Array, origin = "stats record"): ShimStats {
  if (bytes.length < 16) throw new SpillwayError(`${origin}: ${bytes.length} bytes, too short for a spillway stats record`);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const u64 = (o: number) => v.getBigUint64(o, true);
  const u32 = (o: number) => v.getUint32(o, true);
  const L = STATS_LAYOUT;
  if (u64(L.magic) !== STATS_MAGIC) throw new SpillwayError(`${origin}: not a spillway stats record (bad magic)`);
  const version = u32(L.version), size = u32(L.size);
  if (version !== STATS_VERSION) {
    throw new SpillwayError(`${origin}: stats layout version ${version}, this spillway reads ${STATS_VERSION}: use matching shim and tools`);
  }
  if (size !== STATS_SIZE || bytes.length < STATS_SIZE) {
    throw new SpillwayError(`${origin}: record of ${bytes.length} bytes declaring ${size}, expected ${STATS_SIZE}`);
  }
  const tiers: TierStats[] = [];
  for (let i = 0; i < TIER_NAMES.length; i++) {
    const o = L.tiers + i * TIER_LAYOUT.size;
    tiers.push({
      bytes: u64(o + TIER_LAYOUT.bytes),
      allocs: u64(o + TIER_LAYOUT.allocs),
      peakBytes: u64(o + TIER_LAYOUT.peak_bytes),
      totalBytes: u64(o + TIER_LAYOUT.total_bytes),
    });
  }
  const backing = u32(L.backing), reportMode = u32(L.report_mode), flags = u32(L.flags);
  return {
    version,
    pid: u32(L.pid),
    backing,
    backingName: BACKING_NAMES[backing] ?? `unknown(${backing})`,
    seq: u64(L.seq),
    startNs: u64(L.start_ns),
    updateNs: u64(L.update_ns),
    vramBudget: u64(L.vram_budget),
    reserve: u64(L.reserve),
    minSpill: u64(L.min_spill),
    hostLimit: u64(L.host_limit),
    reportMode,
    reportModeName: REPORT_NAMES[reportMode] ?? `unknown(${reportMode})`,
    reportSize: u64(L.report_size),
    flags,
    disabled: (flags & STATS_FLAG.disabled) !== 0,
    vmmHostUnsupported: (flags & STATS_FLAG.vmmHostUnsupported) !== 0,
    tiers,
    allocs: u64(L.allocs),
    frees: u64(L.frees),
    passthroughFrees: u64(L.passthrough_frees),
    spills: u64(L.spills),
    splits: u64(L.splits),
    failures: u64(L.failures),
    hostFailures: u64(L.host_failures),
    largestAlloc: u64(L.largest_alloc),
    largestSpill: u64(L.largest_spill),
  };
}

/** Default directory of the records: SPILLWAY_STATS_DIR or /dev/shm. */
export function defaultStatsDir(): string {
  return process.env.SPILLWAY_STATS_DIR || "/dev/shm";
}

/** Path of a process's record. */
export function shimStatsPath(pid: number, dir: string = defaultStatsDir()): string {
  return join(dir, `spillway.${pid}`);
}

function seqOf(bytes: Uint8Array): bigint {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(STATS_LAYOUT.seq, true);
}

/**
 * Read the record of process `pid`, or null when it has none (not running under the shim, or
 * gone). Copies are retried until the writer's sequence number shows a consistent one.
 * @throws SpillwayError when the file exists but is not a readable record.
 */
export function readShimStats(pid: number, dir: string = defaultStatsDir()): ShimStats | null {
  const path = shimStatsPath(pid, dir);
  let last: Uint8Array | null = null;
  for (let attempt = 0; attempt < 100; attempt++) {
    let a: Uint8Array, b: Uint8Array;
    try {
      a = readFileSync(path);
      b = readFileSync(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw new SpillwayError(`${path}: cannot read the shim stats record: ${(e as Error).message}`, { cause: e });
    }
    last = a;
    if (a.length < STATS_SIZE || b.length < STATS_SIZE) break; // decode reports it
    const sa = seqOf(a);
    if (sa % 2n === 0n && sa === seqOf(b)) return decodeShimStats(a, path);
  }
  // A writer that never settles (or a short file): decode what there is, which names the problem.
  return decodeShimStats(last ?? new Uint8Array(0), path);
}

/** Records of every process in `dir` (also of processes that died without removing theirs); unreadable files are skipped. */
export function listShimStats(dir: string = defaultStatsDir()): ShimStats[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const out: ShimStats[] = [];
  for (const name of names) {
    const m = /^spillway\.(\d+)$/.exec(name);
    if (!m) continue;
    try {
      const s = readShimStats(Number(m[1]), dir);
      if (s) out.push(s);
    } catch {
      // another program's file of the same name pattern, or one being created: not ours to report
    }
  }
  return out.sort((x, y) => x.pid - y.pid);
}

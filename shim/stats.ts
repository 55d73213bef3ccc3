/**
 * The shim's per-process statistics record, mirrored from shim/include/spillway_stats.h: where each
 * field lives ({@linkcode STATS_LAYOUT}), decoding a record, and reading the records the running
 * processes keep in `<SPILLWAY_STATS_DIR>/spillway-<euid>/<pid>-<start ticks>-<pid namespace inode>`
 * (default /dev/shm; the directory is the user's own, mode 0700, files 0600). Listing removes the
 * records of processes that are gone (killed, crashed, `_exit`, or the program replaced by exec).
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
import { closeSync, constants, fstatSync, lstatSync, openSync, readdirSync, readFileSync, readSync, statSync, unlinkSync } from "node:fs";
import process from "node:process";
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
  /** The file it was read from and its process's state, when read through {@linkcode listShimStats} or {@linkcode readShimStats}. */
  record?: StatsRecordFile;
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

function euid(): number {
  return typeof process.geteuid === "function" ? process.geteuid() : -1;
}

/** The directory of one user's records under `dir` (the shim's: `spillway-<euid>`). */
export function statsUserDir(dir: string = defaultStatsDir(), uid: number = euid()): string {
  return join(dir, `spillway-${uid}`);
}

/** What a record's file name says about its process. */
export interface RecordName {
  pid: number;
  /** Start time in clock ticks after boot (field 22 of /proc/<pid>/stat); 0 when the shim could not read it. */
  startTicks: bigint;
  /** Inode of the process's pid namespace; 0 when unknown. */
  pidNamespace: bigint;
}

/** Parse `<pid>-<start ticks>-<pid namespace inode>`; null for any other name. */
export function parseRecordName(name: string): RecordName | null {
  const m = /^(\d{1,10})-(\d{1,20})-(\d{1,20})$/.exec(name);
  return m ? { pid: Number(m[1]), startTicks: BigInt(m[2]!), pidNamespace: BigInt(m[3]!) } : null;
}

let ownNamespace: bigint | null | undefined;
function ourPidNamespace(): bigint | null {
  if (ownNamespace === undefined) {
    try {
      ownNamespace = BigInt(statSync("/proc/self/ns/pid", { bigint: true }).ino);
    } catch {
      ownNamespace = null;
    }
  }
  return ownNamespace;
}

/** Start time (field 22 of /proc/<pid>/stat) of a running process, null when there is none. */
function startTicksOf(pid: number): bigint | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "latin1");
  } catch {
    return null;
  }
  // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  const v = fields[22 - 3];
  return v !== undefined && /^\d+$/.test(v) ? BigInt(v) : null;
}

/**
 * Whether the process a record names is still the one that wrote it: `alive`, `dead` (no such
 * process, another process with its pid, or the same process after an exec into a program that
 * no longer maps the record), or `unknown` (another pid namespace: its pids mean nothing here).
 */
export function recordState(path: string, name: RecordName): "alive" | "dead" | "unknown" {
  const ours = ourPidNamespace();
  if (name.pidNamespace !== 0n && ours !== null && name.pidNamespace !== ours) return "unknown";
  const ticks = startTicksOf(name.pid);
  if (ticks === null) return "dead";
  if (name.startTicks !== 0n && ticks !== name.startTicks) return "dead";
  // Same process: it still maps its record unless exec replaced the program (the shim maps the
  // record for the process's whole life). Unreadable maps (another user's process): trust the pid.
  let maps: string;
  let ino: bigint;
  try {
    ino = BigInt(lstatSync(path, { bigint: true }).ino);
    maps = readFileSync(`/proc/${name.pid}/maps`, "latin1");
  } catch {
    return "alive";
  }
  const inode = ino.toString();
  for (const line of maps.split("\n")) {
    if (line.split(/\s+/, 6)[4] === inode) return "alive";
  }
  return "dead";
}

/** The user directories to read: one's own, and as root every user's. Symbolic links and directories not owned by their uid are skipped. */
function userDirs(dir: string): string[] {
  const me = euid();
  let names: string[];
  if (me === 0) {
    try {
      names = readdirSync(dir).filter((n) => /^spillway-\d+$/.test(n));
    } catch {
      return [];
    }
  } else {
    names = [`spillway-${me}`];
  }
  const out: string[] = [];
  for (const n of names) {
    const p = join(dir, n);
    try {
      const st = lstatSync(p);
      // The shim writes only into a directory that is its user's own (lstat: no link), mode 0700.
      if (st.isDirectory() && st.uid === Number(n.slice("spillway-".length)) && (st.mode & 0o077) === 0) out.push(p);
    } catch {
      // none
    }
  }
  return out;
}

/** A record on disk and what its name says. */
export interface StatsRecordFile extends RecordName {
  path: string;
  state: "alive" | "dead" | "unknown";
}

/**
 * The record files under `dir` (every user's when root), with the state of their processes.
 * `prune` (default true) removes the files of dead processes; those are not returned.
 */
export function listRecordFiles(dir: string = defaultStatsDir(), prune = true): StatsRecordFile[] {
  const out: StatsRecordFile[] = [];
  for (const udir of userDirs(dir)) {
    let names: string[];
    try {
      names = readdirSync(udir);
    } catch {
      continue;
    }
    for (const n of names) {
      const name = parseRecordName(n);
      if (!name) continue;
      const path = join(udir, n);
      try {
        if (!lstatSync(path).isFile()) continue; // a link, FIFO or directory under a record's name: not the shim's
      } catch {
        continue;
      }
      const state = recordState(path, name);
      if (state === "dead" && prune) {
        try {
          unlinkSync(path);
        } catch {
          // removed meanwhile (by the shim at exit, or another reader)
        }
        continue;
      }
      out.push({ ...name, path, state });
    }
  }
  return out.sort((a, b) => a.pid - b.pid);
}

/** Remove the records of processes that are gone; returns the paths removed. */
export function pruneShimStats(dir: string = defaultStatsDir()): string[] {
  const dead = listRecordFiles(dir, false).filter((r) => r.state === "dead");
  for (const r of dead) {
    try {
      unlinkSync(r.path);
    } catch {
      // removed meanwhile
    }
  }
  return dead.map((r) => r.path);
}

/**
 * The bytes of a record file, read without following a link and without blocking: root reads other
 * users' directories, where a link, a FIFO or a huge file could stand under a record's name.
 */
function readRecordBytes(path: string): Uint8Array {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  try {
    if (!fstatSync(fd).isFile()) throw new SpillwayError(`${path}: not a regular file`);
    const buf = new Uint8Array(STATS_SIZE * 2); // more than a record: decode names a wrong size
    let n = 0;
    for (let r; n < buf.length && (r = readSync(fd, buf, n, buf.length - n, n)) > 0; ) n += r;
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

function seqOf(bytes: Uint8Array): bigint {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(STATS_LAYOUT.seq, true);
}

/**
 * Read one record file. Copies are retried until the writer's sequence number shows a consistent
 * one. Null when the file is gone.
 * @throws SpillwayError when the file exists but is not a readable record.
 */
export function readShimStatsFile(path: string): ShimStats | null {
  let last: Uint8Array | null = null;
  for (let attempt = 0; attempt < 100; attempt++) {
    let a: Uint8Array, b: Uint8Array;
    try {
      a = readRecordBytes(path);
      b = readRecordBytes(path);
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

/**
 * Read the record of the running process `pid`, or null when it has none (not running under the
 * shim, not yet, or gone).
 * @throws SpillwayError when its file exists but is not a readable record.
 */
export function readShimStats(pid: number, dir: string = defaultStatsDir()): ShimStats | null {
  const mine = listRecordFiles(dir, false).filter((r) => r.pid === pid && r.state === "alive");
  for (const r of mine) {
    const s = readShimStatsFile(r.path);
    if (s) return { ...s, record: r };
  }
  return null;
}

/**
 * Records of every running process under `dir` (also those of other pid namespaces, whose pids are
 * theirs); the files of processes that are gone are removed. Unreadable files are skipped.
 */
export function listShimStats(dir: string = defaultStatsDir()): ShimStats[] {
  const out: ShimStats[] = [];
  for (const r of listRecordFiles(dir)) {
    try {
      const s = readShimStatsFile(r.path);
      if (s) out.push({ ...s, record: r });
    } catch {
      // another program's file of the same name pattern, or one being created: not ours to report
    }
  }
  return out.sort((x, y) => x.pid - y.pid);
}

/**
 * Live state of every spillway process for `spillway top` and launch handles: the shim's
 * per-process stats records (`<SPILLWAY_STATS_DIR>/spillway-<euid>/<pid>-<start>-<pidns>`, default
 * /dev/shm; shim/stats.ts reads them and removes those of dead processes) and the kernel module's
 * sysfs when it is loaded.
 *
 * @module
 */
import { readFileSync } from "node:fs";
import { formatBytes } from "../core/bytes.ts";
import { moduleStatus, type ModuleStatus, type StatusPaths } from "../kmod/loader.ts";
import { listShimStats, readShimStats, type ShimStats } from "../shim/stats.ts";

/** Bytes of one memory tier of one process. */
export interface TierUse {
  bytes: number;
  peakBytes: number;
  allocs: number;
}

/** One process's view for `top`. */
export interface ProcessStats {
  pid: number;
  /** Command line from /proc (empty when the process is gone). */
  command: string;
  alive: boolean;
  startedAt: number;
  updatedAt: number;
  vramBudget: number;
  backing: string;
  tiers: { vram: TierUse; hostVmm: TierUse; hostMapped: TierUse; hostKmod: TierUse };
  /** Host bytes of all spill tiers. */
  hostBytes: number;
  spills: number;
  splits: number;
  failures: number;
  allocs: number;
  frees: number;
  /** The raw record, as shim/stats.ts decodes it. */
  raw: ShimStats;
}

/** Everything `top` shows at one instant. */
export interface Snapshot {
  /** Milliseconds since the epoch. */
  time: number;
  statsDir: string;
  processes: ProcessStats[];
  kmod: ModuleStatus;
}

/** Whether process `pid` exists (EPERM: it exists but belongs to someone else). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

function commandOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean).join(" ");
  } catch {
    return "";
  }
}

function tier(t: ShimStats["tiers"][number] | undefined): TierUse {
  return { bytes: Number(t?.bytes ?? 0), peakBytes: Number(t?.peakBytes ?? 0), allocs: Number(t?.allocs ?? 0) };
}

/** The monitor's view of a decoded shim record. */
export function toProcessStats(s: ShimStats): ProcessStats {
  const [vram, hostVmm, hostMapped, hostKmod] = [0, 1, 2, 3].map((i) => tier(s.tiers[i]));
  // A record of another pid namespace (a container sharing /dev/shm): its pid is not one of ours.
  const foreign = s.record?.state === "unknown";
  return {
    pid: s.pid,
    command: foreign ? "(another pid namespace)" : commandOf(s.pid),
    alive: s.record ? s.record.state !== "dead" : processAlive(s.pid),
    startedAt: Number(s.startNs / 1_000_000n),
    updatedAt: Number(s.updateNs / 1_000_000n),
    vramBudget: Number(s.vramBudget),
    backing: s.backingName,
    tiers: { vram: vram!, hostVmm: hostVmm!, hostMapped: hostMapped!, hostKmod: hostKmod! },
    hostBytes: hostVmm!.bytes + hostMapped!.bytes + hostKmod!.bytes,
    spills: Number(s.spills),
    splits: Number(s.splits),
    failures: Number(s.failures),
    allocs: Number(s.allocs),
    frees: Number(s.frees),
    raw: s,
  };
}

/** Default stats directory (SPILLWAY_STATS_DIR or /dev/shm). */
export function statsDirectory(): string {
  return process.env.SPILLWAY_STATS_DIR || "/dev/shm";
}

/** Stats of one process, or null when it has no readable record. */
export function readProcessStats(pid: number, dir: string = statsDirectory()): ProcessStats | null {
  const s = readShimStats(pid, dir);
  return s ? toProcessStats(s) : null;
}

/** Where {@link snapshot} reads. */
export interface SnapshotOptions {
  statsDir?: string;
  kmodPaths?: StatusPaths;
}

/** Every spillway process and the kernel module's pool, now. */
export function snapshot(options: SnapshotOptions = {}): Snapshot {
  const statsDir = options.statsDir ?? statsDirectory();
  const processes = listShimStats(statsDir).map(toProcessStats).sort((a, b) => a.pid - b.pid);
  return { time: Date.now(), statsDir, processes, kmod: moduleStatus(options.kmodPaths) };
}

function pad(s: string, n: number, right = false): string {
  if (s.length > n) return s.slice(0, n - 1) + "…";
  return right ? s.padStart(n) : s.padEnd(n);
}

/** Plain-text table of a snapshot (what `spillway top` redraws every second). */
export function renderSnapshot(s: Snapshot, width = 100): string {
  const lines: string[] = [];
  const when = new Date(s.time).toISOString().replace("T", " ").slice(0, 19);
  lines.push(`spillway top  ${when}  ${s.processes.length} process(es) with shim stats in ${s.statsDir}`);
  lines.push(
    s.kmod.loaded
      ? `kmod pool: ${formatBytes(s.kmod.usedBytes ?? 0)} used of ${formatBytes(s.kmod.limitBytes ?? 0)}, ${s.kmod.buffers ?? 0} buffers, pressure ${s.kmod.pressure ?? "?"}`
      : "kmod: not loaded",
  );
  lines.push("");
  const head = [pad("PID", 8), pad("VRAM", 11, true), pad("/BUDGET", 11, true), pad("HOST VMM", 11, true), pad("MAPPED", 11, true), pad("KMOD", 11, true), pad("SPILLS", 7, true), pad("FAIL", 5, true), "  COMMAND"];
  lines.push(head.join(" "));
  for (const p of s.processes) {
    const row = [
      pad(String(p.pid) + (p.alive ? "" : "†"), 8),
      pad(formatBytes(p.tiers.vram.bytes), 11, true),
      pad(formatBytes(p.vramBudget), 11, true),
      pad(formatBytes(p.tiers.hostVmm.bytes), 11, true),
      pad(formatBytes(p.tiers.hostMapped.bytes), 11, true),
      pad(formatBytes(p.tiers.hostKmod.bytes), 11, true),
      pad(String(p.spills), 7, true),
      pad(String(p.failures), 5, true),
    ].join(" ");
    lines.push(`${row}  ${pad(p.command || "(gone)", Math.max(10, width - row.length - 2))}`);
  }
  if (s.processes.length === 0) lines.push("(no process is running under the spillway shim)");
  if (s.processes.some((p) => !p.alive)) lines.push("† process gone");
  return lines.join("\n");
}

/** JSON-safe form of a snapshot (bigints of the raw record as strings). */
export function snapshotJson(s: Snapshot): unknown {
  return JSON.parse(JSON.stringify(s, (_k, v) => (typeof v === "bigint" ? v.toString() : v)));
}

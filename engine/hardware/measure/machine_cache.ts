/**
 * The measured-profile cache: `~/.cache/spillway/hardware.json` (or `$XDG_CACHE_HOME/spillway/`),
 * one entry per machine, keyed by GPU name, driver version and host (hostname, CPU model, RAM in
 * GiB), so a driver upgrade, another GPU or another host is measured afresh.
 *
 * The file's top level is itself a HardwareProfile (source "bench": the latest measurement), so a
 * reader that wants "the measured profile" can read it as one; `machine` says which machine it
 * belongs to and `machines` holds every machine's entry (a home directory shared between hosts):
 * ```json
 * { ...HardwareProfile, "cacheVersion": 1,
 *   "machine": { "key": "...", "ids": {...}, "measuredAt": "ISO date" },
 *   "machines": { "<key>": { "key": "...", "ids": {...}, "measuredAt": "...", "profile": {...}, "details": {...} } } }
 * ```
 * Use {@linkcode findBenchEntry} to get this machine's entry (it checks the identity).
 * @module
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { cpus, hostname, totalmem } from "node:os";
import { dirname, join } from "node:path";
import type { HardwareProfile } from "../../../core/types.ts";
import { HardwareProbeError } from "../../../core/errors.ts";
import { cacheDir as sharedCacheDir } from "../../../core/paths.ts";

/** What identifies a machine for the cache. */
export interface MachineIds {
  /** GPU name as the driver reports it (`NVIDIA H200`), or `none`. */
  gpuName: string;
  /** NVIDIA driver version (`580.65.06`), else `cuda <x.y>`, else `none`. */
  driver: string;
  hostname: string;
  cpuName: string;
  /** MemTotal rounded to whole GiB (the exact figure moves slightly between boots). */
  ramGiB: number;
}

/** One cached measurement. */
export interface CacheEntry {
  key: string;
  ids: MachineIds;
  measuredAt: string;
  profile: HardwareProfile;
  /** Everything else the bench recorded (sizes, threads, O_DIRECT, ...). */
  details?: Record<string, unknown>;
}

/** The cache file: the latest profile at the top level, all machines under `machines`. */
export type CacheFile = Partial<HardwareProfile> & {
  cacheVersion: 1;
  machine?: Omit<CacheEntry, "profile" | "details">;
  machines: Record<string, CacheEntry>;
};

/** spillway's cache directory: `$XDG_CACHE_HOME/spillway` or `~/.cache/spillway`. */
export function cacheDir(): string {
  return sharedCacheDir();
}

/** The cache key of a machine. */
export function machineKey(ids: MachineIds): string {
  return `${ids.gpuName} | driver ${ids.driver} | ${ids.hostname} | ${ids.cpuName} | ${ids.ramGiB} GiB`;
}

/** CPU model name from /proc/cpuinfo (node's os.cpus() as fallback). */
export function cpuModelName(): string {
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"));
    if (m) return m[1].trim();
  } catch { /* not Linux: fall through */ }
  return cpus()[0]?.model?.trim() || "unknown CPU";
}

/** NVIDIA kernel driver version from /proc/driver/nvidia/version, or null. */
export function nvidiaDriverVersion(): string | null {
  try {
    const m = /Kernel Module(?: for [^ ]+)?\s+([0-9][0-9.]+)/.exec(readFileSync("/proc/driver/nvidia/version", "utf8"));
    return m ? m[1] : null;
  } catch {
    return null;
  }
}

/** Host part of the machine identity (the GPU part comes from whoever found the GPU). */
export function hostIds(): Pick<MachineIds, "hostname" | "cpuName" | "ramGiB"> {
  return { hostname: hostname(), cpuName: cpuModelName(), ramGiB: Math.round(totalmem() / 1024 ** 3) };
}

/**
 * Read the cache file. A missing file is an empty cache; so is a bare profile without `machines`
 * (no machine identity to trust).
 * @throws HardwareProbeError naming the file when it exists but is not JSON or has a bad `machines`.
 */
export function readCache(file: string = join(cacheDir(), "hardware.json")): CacheFile {
  if (!existsSync(file)) return { cacheVersion: 1, machines: {} };
  let obj: unknown;
  try {
    obj = JSON.parse(readFileSync(file, "utf8"));
  } catch (e) {
    throw new HardwareProbeError(`${file}: not valid JSON (${(e as Error).message}); delete it to re-measure`, { cause: e });
  }
  if (typeof obj !== "object" || obj === null || Array.isArray(obj)) {
    throw new HardwareProbeError(`${file}: not a JSON object; delete it to re-measure`);
  }
  const o = obj as Record<string, unknown>;
  if (o.machines === undefined) return { cacheVersion: 1, machines: {} };
  if (typeof o.machines !== "object" || o.machines === null || Array.isArray(o.machines)) {
    throw new HardwareProbeError(`${file}: field machines must be an object keyed by machine; delete the file to re-measure`);
  }
  for (const [k, e] of Object.entries(o.machines as Record<string, unknown>)) {
    const ent = e as Partial<CacheEntry> | null;
    if (!ent || typeof ent.ids !== "object" || typeof ent.measuredAt !== "string" || typeof ent.profile !== "object") {
      throw new HardwareProbeError(`${file}: machines[${JSON.stringify(k)}] needs ids, measuredAt and profile; delete the file to re-measure`);
    }
  }
  return o as unknown as CacheFile;
}

/** Store an entry (replacing the same machine's) and make it the top-level profile; atomic. */
export function writeCacheEntry(entry: CacheEntry, file: string = join(cacheDir(), "hardware.json")): void {
  const machines = { ...readCache(file).machines, [entry.key]: entry };
  const out: CacheFile = {
    ...entry.profile,
    cacheVersion: 1,
    machine: { key: entry.key, ids: entry.ids, measuredAt: entry.measuredAt },
    machines,
  };
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.tmp${process.pid}`;
  writeFileSync(tmp, JSON.stringify(out, null, 2) + "\n");
  renameSync(tmp, file);
}

/**
 * The cached bench entry of this machine, or null. Host identity must match exactly; GPU name and
 * driver are compared where the caller knows them (`gpuName: "none"` asks for a GPU-less entry).
 * For the planner: `findBenchEntry({ gpuName: probed.gpu?.name ?? "none", driver: probedDriver })`.
 */
export function findBenchEntry(
  gpu: { gpuName?: string; driver?: string } = {},
  file: string = join(cacheDir(), "hardware.json"),
  host: Pick<MachineIds, "hostname" | "cpuName" | "ramGiB"> = hostIds(),
): CacheEntry | null {
  const cache = readCache(file);
  let best: CacheEntry | null = null;
  for (const e of Object.values(cache.machines)) {
    const ids = e.ids;
    if (!ids || ids.hostname !== host.hostname || ids.cpuName !== host.cpuName || ids.ramGiB !== host.ramGiB) continue;
    if (gpu.gpuName !== undefined && ids.gpuName !== gpu.gpuName) continue;
    if (gpu.driver !== undefined && ids.driver !== gpu.driver) continue;
    if (!best || e.measuredAt > best.measuredAt) best = e;
  }
  return best;
}

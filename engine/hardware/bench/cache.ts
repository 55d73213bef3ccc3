/**
 * The measured-profile cache: `~/.cache/spillway/hardware.json` (or `$XDG_CACHE_HOME/spillway/`),
 * one entry per machine, keyed by GPU name, driver version and host (hostname, CPU model, RAM in
 * GiB), so a driver upgrade, another GPU or another host is measured afresh.
 *
 * File shape (version 1):
 * ```json
 * { "version": 1, "machines": { "<key>": { "key": "...", "ids": {...}, "measuredAt": "ISO date",
 *   "profile": { ...HardwareProfile, "source": "bench" }, "details": {...} } } }
 * ```
 * @module
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { cpus, homedir, hostname, totalmem } from "node:os";
import { dirname, join } from "node:path";
import type { HardwareProfile } from "../../types.ts";
import { HardwareProbeError } from "../../errors.ts";

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

/** The cache file. */
export interface CacheFile {
  version: 1;
  machines: Record<string, CacheEntry>;
}

/** spillway's cache directory: `$XDG_CACHE_HOME/spillway` or `~/.cache/spillway`. */
export function cacheDir(): string {
  const xdg = process.env.XDG_CACHE_HOME;
  return join(xdg && xdg.startsWith("/") ? xdg : join(homedir(), ".cache"), "spillway");
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
 * Read the cache file. A missing file is an empty cache.
 * @throws HardwareProbeError naming the file when it exists but is not a cache file.
 */
export function readCache(file: string = join(cacheDir(), "hardware.json")): CacheFile {
  if (!existsSync(file)) return { version: 1, machines: {} };
  let obj: unknown;
  try {
    obj = JSON.parse(readFileSync(file, "utf8"));
  } catch (e) {
    throw new HardwareProbeError(`${file}: not valid JSON (${(e as Error).message}); delete it to re-measure`, { cause: e });
  }
  const o = obj as Partial<CacheFile> | null;
  if (!o || o.version !== 1 || typeof o.machines !== "object" || o.machines === null) {
    throw new HardwareProbeError(`${file}: not a spillway hardware cache (expected version 1 with "machines"); delete it to re-measure`);
  }
  return o as CacheFile;
}

/** Store an entry (replacing the same machine's), writing atomically. */
export function writeCacheEntry(entry: CacheEntry, file: string = join(cacheDir(), "hardware.json")): void {
  const cache = readCache(file);
  cache.machines[entry.key] = entry;
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.tmp${process.pid}`;
  writeFileSync(tmp, JSON.stringify(cache, null, 2) + "\n");
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

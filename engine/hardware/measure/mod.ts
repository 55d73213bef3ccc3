/**
 * `spillway bench`: measured memory tiers of this machine, cached per machine, as a
 * HardwareProfile with source "bench"; and the predicted-versus-measured chart of autotune.
 * @module
 */
export { type BenchOptions, type BenchReport, formatBenchTable, runBench } from "./run.ts";
export { type CacheEntry, cacheDir, type CacheFile, findBenchEntry, hostIds, machineKey, type MachineIds, readCache, writeCacheEntry } from "./machine_cache.ts";
export { benchProfile, type BenchParts } from "./profile.ts";
export { summarize } from "./stats.ts";

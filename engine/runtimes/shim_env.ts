/**
 * Shim settings -> the child's environment (LD_PRELOAD + SPILLWAY_* per docs/contracts.md
 * "Shim environment"). Sizes are written as plain byte counts so no suffix convention is involved.
 *
 * @module
 */
import type { ShimSettings } from "../types.ts";

/**
 * Environment that applies the shim with `settings` to a child process.
 * `LD_PRELOAD` holds only the shim; the launcher appends any LD_PRELOAD the parent already had.
 */
export function shimEnvFor(settings: ShimSettings, shimPath: string): Record<string, string> {
  const env: Record<string, string> = { LD_PRELOAD: shimPath };
  if (settings.vramBudgetBytes !== undefined) env.SPILLWAY_VRAM_BUDGET = bytes(settings.vramBudgetBytes);
  env.SPILLWAY_RESERVE = bytes(settings.reserveBytes);
  env.SPILLWAY_MIN_SPILL = bytes(settings.minSpillBytes);
  if (settings.hostLimitBytes !== undefined) env.SPILLWAY_HOST_LIMIT = bytes(settings.hostLimitBytes);
  env.SPILLWAY_BACKING = settings.backing;
  env.SPILLWAY_REPORT = typeof settings.report === "number" ? bytes(settings.report) : settings.report;
  if (settings.placementMapFile) env.SPILLWAY_PLACEMENT = settings.placementMapFile;
  if (settings.log) env.SPILLWAY_LOG = settings.log;
  return env;
}

function bytes(n: number): string {
  if (!Number.isFinite(n) || n < 0) throw new RangeError(`shim size must be a non-negative byte count, got ${n}`);
  return String(Math.floor(n));
}

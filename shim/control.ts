/**
 * The control API the shim library exports, through the FFI core: its version, this process's stats
 * record, and the VRAM budget for later allocations. Opening the library in a process that already
 * runs under the shim (LD_PRELOAD) reaches that instance, so a program can read and steer its own shim.
 *
 * @example
 * ```ts
 * import { locateShim } from "./build.ts";
 * import { openShimControl } from "./control.ts";
 * const shim = await openShimControl(await locateShim());
 * console.log(shim.version(), shim.stats().tiers[0].bytes);
 * shim.setBudget(8n << 30n);
 * ```
 *
 * @module
 */
import { loadFfi } from "../ffi/mod.ts";
import { SpillwayError } from "../core/errors.ts";
import { decodeShimStats, type ShimStats, STATS_SIZE } from "./stats.ts";

const SYMBOLS = {
  spillway_shim_version: { args: [], result: "u32" },
  spillway_shim_stats: { args: ["buffer", "u64"], result: "i32" },
  spillway_shim_set_budget: { args: ["i32", "u64"], result: "i32" },
} as const;

/** The shim's control API. */
export interface ShimControl {
  /** Library path. */
  readonly path: string;
  /** Version of the shim library. */
  version(): { major: number; minor: number; patch: number };
  /** A consistent copy of this process's stats record. */
  stats(): ShimStats;
  /**
   * Set the VRAM budget of `device` (-1: all devices) for later allocations.
   * @throws RangeError on a device out of range or a negative budget.
   */
  setBudget(bytes: bigint, device?: number): void;
  close(): void;
}

/**
 * Open the control API of the shim library at `path`.
 * @throws FfiLoadError when the library cannot be loaded or lacks the control symbols.
 */
export async function openShimControl(path: string): Promise<ShimControl> {
  const lib = (await loadFfi()).open(path, SYMBOLS);
  const s = lib.symbols;
  return {
    path,
    version() {
      const v = s.spillway_shim_version();
      return { major: v >>> 16, minor: (v >>> 8) & 0xff, patch: v & 0xff };
    },
    stats() {
      const buf = new Uint8Array(STATS_SIZE);
      const size = s.spillway_shim_stats(buf, BigInt(buf.length));
      if (size !== STATS_SIZE) {
        throw new SpillwayError(`${path}: the shim's stats record is ${size} bytes, this spillway reads ${STATS_SIZE}: use a matching shim`);
      }
      return decodeShimStats(buf, `${path} (spillway_shim_stats)`);
    },
    setBudget(bytes: bigint, device = -1) {
      if (bytes < 0n) throw new RangeError(`VRAM budget must not be negative, got ${bytes}`);
      const r = s.spillway_shim_set_budget(device, bytes);
      if (r !== 0) throw new RangeError(`spillway_shim_set_budget: device ${device} is out of range (-1 or 0..15)`);
    },
    close: () => lib.close(),
  };
}

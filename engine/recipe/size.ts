/**
 * Byte sizes as recipes and the shim environment write them: plain numbers (bytes) or strings with
 * a suffix. `K`, `M`, `G`, `T` (and `KiB`...`TiB`) are binary (1024-based), as in the shim's
 * SPILLWAY_* variables; `KB`, `MB`, `GB`, `TB` are decimal (1000-based), as GPU spec sheets write them.
 *
 * @module
 */

const BINARY: Record<string, number> = { "": 1, b: 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };
const DECIMAL: Record<string, number> = { kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12 };

/**
 * Parse a size: `12G` = 12 GiB, `512M`, `4096K`, `1.5GiB`, `32GB` = 32e9, `1048576` or a number.
 * Returns null for anything else (the caller names the field in its error).
 */
export function parseSize(value: unknown): number | null {
  if (typeof value === "number") return Number.isFinite(value) && value >= 0 ? Math.round(value) : null;
  if (typeof value !== "string") return null;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(value);
  if (m === null) return null;
  const n = Number(m[1]);
  let unit = m[2].toLowerCase();
  if (unit.endsWith("ib")) unit = unit.slice(0, -2);
  const factor = BINARY[unit] ?? DECIMAL[unit];
  if (factor === undefined) return null;
  return Math.round(n * factor);
}

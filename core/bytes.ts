/**
 * The one byte formatter: binary units (B, KiB, MiB, GiB, TiB) for people.
 *
 * @example
 * ```ts
 * import { formatBytes } from "./bytes.ts";
 * formatBytes(12.5 * 2 ** 30); // "12.50 GiB"
 * formatBytes(512 * 2 ** 20); // "512.0 MiB"
 * formatBytes(2 ** 30, "short"); // "1 GiB"
 * formatBytes(1536 * 1024, "short"); // "1.5 MiB"
 * ```
 *
 * @module
 */

/**
 * Decimals after scaling: `auto` (2 below 100, 1 from 100: tables and plans), `short` (none for a
 * whole number, else 1: sizes the user chose, like bench buffers), or a fixed count.
 */
export type ByteDecimals = "auto" | "short" | number;

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

/** `bytes` in the largest binary unit that keeps the number at least 1 (bytes themselves unscaled). */
export function formatBytes(bytes: number, decimals: ByteDecimals = "auto"): string {
  let v = bytes;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  if (i === 0) return `${v} B`;
  const d = decimals === "auto" ? (v >= 100 ? 1 : 2) : decimals === "short" ? (Number.isInteger(v) ? 0 : 1) : decimals;
  return `${v.toFixed(d)} ${UNITS[i]}`;
}

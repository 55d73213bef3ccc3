/**
 * min/median/max of repeated measurements.
 * @module
 */
import type { Measured } from "../../../core/types.ts";

/**
 * Summarize repeats as min/median/max (median of an even count is the mean of the middle two).
 * @throws RangeError when `values` is empty or holds a non-finite number.
 */
export function summarize(values: readonly number[], unit: string): Measured {
  if (values.length === 0) throw new RangeError(`no measurements to summarize (${unit})`);
  for (const v of values) {
    if (!Number.isFinite(v)) throw new RangeError(`measurement is not a finite number: ${v} (${unit})`);
  }
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  return { min: s[0], median, max: s[s.length - 1], unit };
}

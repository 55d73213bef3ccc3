/**
 * Parsing of the C helpers' one-line JSON output (cpu_bw, disk_bw), with errors that name the
 * helper and what was wrong.
 * @module
 */
import { HardwareProbeError } from "../../../core/errors.ts";

/** What cpu_bw and disk_bw print. */
export interface HelperResult {
  /** GB/s (1e9 bytes/s) per repeat. */
  gbps: number[];
  /** Bytes read per repeat. */
  bytes: number;
  /** cpu_bw: threads used. */
  threads?: number;
  /** disk_bw: whether O_DIRECT was in effect. */
  direct?: boolean;
}

/**
 * Parse a helper's stdout (the last non-empty line must be its JSON object).
 * @throws HardwareProbeError naming `helper` when the output is not what it prints.
 */
export function parseHelperOutput(helper: string, stdout: string): HelperResult {
  const line = stdout.trim().split("\n").pop() ?? "";
  let obj: unknown;
  try {
    obj = JSON.parse(line);
  } catch (e) {
    throw new HardwareProbeError(`${helper}: output is not JSON: ${JSON.stringify(line.slice(0, 200))}`, { cause: e });
  }
  if (typeof obj !== "object" || obj === null) throw new HardwareProbeError(`${helper}: output is not a JSON object`);
  const o = obj as Record<string, unknown>;
  if (!Array.isArray(o.gbps) || o.gbps.length === 0 || !o.gbps.every((v) => typeof v === "number" && v > 0 && Number.isFinite(v))) {
    throw new HardwareProbeError(`${helper}: field gbps must be a non-empty array of positive numbers, got ${JSON.stringify(o.gbps)}`);
  }
  if (typeof o.bytes !== "number" || !(o.bytes > 0)) {
    throw new HardwareProbeError(`${helper}: field bytes must be a positive number, got ${JSON.stringify(o.bytes)}`);
  }
  const r: HelperResult = { gbps: o.gbps as number[], bytes: o.bytes };
  if (typeof o.threads === "number") r.threads = o.threads;
  if (typeof o.direct === "boolean") r.direct = o.direct;
  return r;
}

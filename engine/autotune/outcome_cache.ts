/**
 * The autotune cache: `~/.cache/spillway/autotune.json`, the measured choice per model, hardware and
 * workload (plus a fingerprint of the fitting candidates, which changes with free VRAM), so the next
 * plan or run starts from what was measured.
 * @module
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { Plan, RuntimeSettings, Workload } from "../../core/types.ts";
import { HardwareProbeError } from "../../core/errors.ts";
import { cacheDir } from "../hardware/measure/machine_cache.ts";

/** One candidate's trial, predicted and measured side by side. */
export interface AutotuneRow {
  id: string;
  label: string;
  strategy: string;
  /** The plan's prediction (before calibration). */
  predicted: { prefillTps: number; decodeTps: number; totalSeconds: number };
  /** Measured on the real model; null when the trial failed (see `error`). */
  measured: { prefillTps: number; decodeTps: number; totalSeconds: number } | null;
  /** Prediction with the calibrated constants (fitted to all trials). */
  calibrated?: { prefillTps: number; decodeTps: number; totalSeconds: number };
  /** Prediction with constants fitted to the other trials only (leave-one-out). */
  heldOut?: { prefillTps: number; decodeTps: number; totalSeconds: number };
  /** llama-bench command line of the trial. */
  argv: string[];
  env: Record<string, string>;
  wallSeconds?: number;
  error?: string;
}

/** A stored autotune outcome. */
export interface AutotuneEntry {
  key: string;
  measuredAt: string;
  model: Plan["model"];
  hardware: Plan["hardware"];
  workload: Workload;
  /** Candidate id the plan predicted best, and the one measured best. */
  predictedChoice: string;
  chosen: string;
  settings: RuntimeSettings;
  rows: AutotuneRow[];
  /** Cost-model constants fitted to the trials, when calibration ran. */
  calibration?: { constants: Record<string, unknown>; changed: Record<string, { from: number; to: number }>; lossBefore: number; lossAfter: number };
}

/** The file. */
export interface AutotuneFile {
  version: 1;
  entries: Record<string, AutotuneEntry>;
}

/** Default path: `<cache dir>/autotune.json`. */
export function autotunePath(): string {
  return join(cacheDir(), "autotune.json");
}

/** Cache key of a plan: model, hardware, workload, context/batch/threads and the set of fitting candidates. */
export function autotuneKey(plan: Plan): string {
  const fitting = plan.candidates.filter((c) => c.fits).map((c) => c.id).sort();
  const fp = createHash("sha256").update(fitting.join("\n")).digest("hex").slice(0, 12);
  const w = plan.workload;
  // Two recipes differing only in context, batch or threads measure differently.
  const s = plan.settings;
  return `${plan.model.path} (${plan.model.bytes} B) | ${plan.runtime} | ${plan.hardware.name} | ${w.objective} ${w.promptTokens}+${w.generatedTokens} | ctx ${s.contextLength} b ${s.batch} t ${s.threads} | candidates ${fp}`;
}

/**
 * Read the file; missing means empty.
 * @throws HardwareProbeError naming the file when it is not an autotune cache.
 */
export function readAutotune(file: string = autotunePath()): AutotuneFile {
  if (!existsSync(file)) return { version: 1, entries: {} };
  let o: unknown;
  try {
    o = JSON.parse(readFileSync(file, "utf8"));
  } catch (e) {
    throw new HardwareProbeError(`${file}: not valid JSON (${(e as Error).message}); delete it to autotune afresh`, { cause: e });
  }
  const f = o as Partial<AutotuneFile> | null;
  if (!f || f.version !== 1 || typeof f.entries !== "object" || f.entries === null) {
    throw new HardwareProbeError(`${file}: not a spillway autotune cache (expected version 1 with "entries"); delete it to autotune afresh`);
  }
  return f as AutotuneFile;
}

/** Store an entry (atomically, replacing the same key). */
export function writeAutotune(entry: AutotuneEntry, file: string = autotunePath()): void {
  const f = readAutotune(file);
  f.entries[entry.key] = entry;
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.tmp${process.pid}`;
  writeFileSync(tmp, JSON.stringify(f, null, 2) + "\n");
  renameSync(tmp, file);
}

/** The stored outcome for this plan, or null. */
export function findAutotune(plan: Plan, file: string = autotunePath()): AutotuneEntry | null {
  return readAutotune(file).entries[autotuneKey(plan)] ?? null;
}

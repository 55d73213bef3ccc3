/**
 * Calibration of the cost model's fixed costs from measured runs. `spillway run` of an in-process
 * runtime (the demo) measures prefill and decode speed; {@link recordCalibration} stores, per
 * machine, runtime, backend and thread count, how much the fixed per-pass costs (graph build,
 * launches, thread-pool syncs: the part of the prediction that is not bytes or FLOPs) must be scaled
 * to match the measurement; {@link calibratedConstants} applies the median of the last runs to
 * later predictions. The bytes-and-FLOPs part of the model is never scaled: a calibration from a
 * tiny model does not distort a large one's bandwidth-bound prediction.
 *
 * Stored in `<cache>/calibration.json` (see core/paths.ts), written atomically with private modes.
 *
 * @example
 * ```ts
 * const { constants, note } = calibratedConstants(DEFAULT_CONSTANTS, { hardware, runtime: "node-llama-cpp", threads: 1 });
 * const p = plan(model, hardware, recipe, { constants });
 * ```
 *
 * @module
 */
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync, constants as fsc } from "node:fs";
import { dirname, join } from "node:path";
import process from "node:process";
import { cacheDir } from "../../core/paths.ts";
import type { HardwareProfile, ModelInfo, Plan } from "../../core/types.ts";
import { hostIds } from "../hardware/measure/machine_cache.ts";
import { capabilitiesFor } from "./capabilities.ts";
import { type CostConstants, DEFAULT_CONSTANTS } from "./cost.ts";
import { plan, type PlanRecipe } from "./plan.ts";

/** Decode and prefill speeds, tokens/s. */
export interface Speeds {
  decodeTps: number;
  prefillTps: number;
}

/** One measured run against its prediction. */
export interface CalibrationRecord {
  at: string;
  /** Predicted and measured tokens/s (prediction made with the scales then in force). */
  predicted: Speeds;
  measured: Speeds;
  /** The prediction's bytes-and-FLOPs part, seconds per decoded token and per prompt. */
  work: { decodeSeconds: number; prefillSeconds: number };
  /** The fixed-cost scales that reproduce the measurement (what later plans use, as a median). */
  scale: { decode: number; prefill: number };
  promptTokens: number;
  layers: number;
}

/** The calibration file: records by key (machine | backend | runtime | threads). */
export interface CalibrationFile {
  version: 1;
  entries: Record<string, CalibrationRecord[]>;
}

/** Which runs a calibration applies to. */
export interface CalibrationKey {
  hardware: HardwareProfile;
  runtime: string;
  threads: number;
}

/** Records kept per key (the median of these is used). */
const KEEP = 8;
/** Scales outside this range mean a broken measurement, not a slow machine. */
const SCALE_RANGE: [number, number] = [0.05, 50];

/** `<cache>/calibration.json`. */
export function calibrationPath(): string {
  return join(cacheDir(), "calibration.json");
}

/** The key: this host (name, CPU, RAM), the backend (GPU name or cpu), runtime, threads. */
export function calibrationKey(k: CalibrationKey): string {
  const h = hostIds();
  const backend = k.hardware.gpu ? `gpu ${k.hardware.gpu.name}` : "cpu";
  return `${h.hostname} | ${h.cpuName} | ${h.ramGiB} GiB | ${backend} | ${k.runtime} | ${k.threads} threads`;
}

/** Reads the file; a missing or unreadable file is an empty calibration (it is only a cache). */
export function readCalibration(path: string = calibrationPath()): CalibrationFile {
  if (!existsSync(path)) return { version: 1, entries: {} };
  try {
    const o = JSON.parse(readFileSync(path, "utf8")) as Partial<CalibrationFile>;
    if (o.version !== 1 || typeof o.entries !== "object" || o.entries === null) return { version: 1, entries: {} };
    return { version: 1, entries: o.entries };
  } catch {
    return { version: 1, entries: {} };
  }
}

function median(xs: number[]): number {
  const a = [...xs].sort((x, y) => x - y);
  const m = a.length >> 1;
  return a.length % 2 ? a[m]! : (a[m - 1]! + a[m]!) / 2;
}

/** The scales to apply for `key` (median of its records), or null when nothing was measured. */
export function calibrationScales(key: CalibrationKey, path: string = calibrationPath()): { decode: number; prefill: number; runs: number } | null {
  const recs = readCalibration(path).entries[calibrationKey(key)] ?? [];
  const ok = recs.filter((r) => r && r.scale && Number.isFinite(r.scale.decode) && Number.isFinite(r.scale.prefill));
  if (ok.length === 0) return null;
  return { decode: median(ok.map((r) => r.scale.decode)), prefill: median(ok.map((r) => r.scale.prefill)), runs: ok.length };
}

/**
 * `base` with this machine's measured fixed-cost scales for the runtime and thread count, and a
 * note saying so; `base` itself (note null) when nothing was measured here.
 */
export function calibratedConstants(base: CostConstants, key: CalibrationKey, path: string = calibrationPath()): { constants: CostConstants; note: string | null } {
  const s = calibrationScales(key, path);
  if (!s) return { constants: base, note: null };
  return {
    constants: { ...base, overheadScale: { decode: s.decode, prefill: s.prefill } },
    note: `fixed costs calibrated from ${s.runs} measured ${key.runtime} run${s.runs > 1 ? "s" : ""} on this machine ` +
      `(decode x${s.decode.toFixed(2)}, prefill x${s.prefill.toFixed(2)}; ${path})`,
  };
}

/**
 * The fixed-cost scale that makes `predictedSeconds = work + overhead` equal `measuredSeconds`,
 * given the scale `current` the prediction was made with: (measured - work) / (overhead at scale 1).
 */
export function fitScale(measuredSeconds: number, predictedSeconds: number, workSeconds: number, current: number): number {
  const overhead1 = (predictedSeconds - workSeconds) / Math.max(current, 1e-9);
  if (!(overhead1 > 0)) return current;
  // At least a tenth of the measurement is fixed cost: keeps the fit sane when work is over-predicted.
  const s = Math.max(measuredSeconds - workSeconds, measuredSeconds * 0.1) / overhead1;
  return Math.min(SCALE_RANGE[1], Math.max(SCALE_RANGE[0], s));
}

/** What a run measured, with the prediction it is compared with. */
export interface RunMeasurement {
  predicted: Speeds;
  /** The same candidate predicted without fixed costs (bytes and FLOPs only). */
  workOnly: Speeds;
  measured: Speeds;
  /** The scales the prediction was made with (1 when uncalibrated). */
  current: { decode: number; prefill: number };
  promptTokens: number;
  layers: number;
}

/**
 * Stores one run's measurement under `key` (the last few per key are kept) and returns the record.
 * The file is replaced atomically: written to a new private temporary file (O_EXCL|O_NOFOLLOW,
 * mode 0600) then renamed.
 */
export function recordCalibration(key: CalibrationKey, m: RunMeasurement, path: string = calibrationPath()): CalibrationRecord {
  const P = Math.max(1, m.promptTokens);
  const work = { decodeSeconds: 1 / m.workOnly.decodeTps, prefillSeconds: P / m.workOnly.prefillTps };
  const rec: CalibrationRecord = {
    at: new Date().toISOString(),
    predicted: m.predicted,
    measured: m.measured,
    work,
    scale: {
      decode: fitScale(1 / m.measured.decodeTps, 1 / m.predicted.decodeTps, work.decodeSeconds, m.current.decode),
      prefill: fitScale(P / m.measured.prefillTps, P / m.predicted.prefillTps, work.prefillSeconds, m.current.prefill),
    },
    promptTokens: m.promptTokens,
    layers: m.layers,
  };
  const file = readCalibration(path);
  const k = calibrationKey(key);
  file.entries[k] = [...(file.entries[k] ?? []), rec].slice(-KEEP);
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.${Date.now()}.tmp`;
  const fd = openSync(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
  try {
    writeSync(fd, JSON.stringify(file, null, 2) + "\n");
  } finally {
    closeSync(fd);
  }
  try {
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
  return rec;
}

/** What {@link recordRun} needs of a planned recipe (engine/recipe_plan.ts PlannedRecipe). */
export interface PlannedRun {
  recipe: PlanRecipe;
  model: ModelInfo;
  hardware: HardwareProfile;
  plan: Plan;
  /** The constants the plan was made with (default: DEFAULT_CONSTANTS). */
  constants?: CostConstants;
}

/** Measured prefill and decode tokens/s of a run. */
export interface MeasuredSpeed {
  decodeTps: number;
  prefillTps: number;
}

/**
 * Compares a run's measured speed with its plan's prediction, records the calibration (unless
 * `record` is false) and returns the record and two lines for the user:
 * `check     decode predicted 3161 t/s, measured 2907 t/s (+9%); prefill ...` and where it was stored.
 */
export function recordRun(planned: PlannedRun, measured: MeasuredSpeed, options: { path?: string; record?: boolean } = {}): { record: CalibrationRecord | null; lines: string[] } {
  const path = options.path ?? calibrationPath();
  const p = planned.plan;
  const constants = planned.constants ?? DEFAULT_CONSTANTS;
  const threads = p.settings.threads;
  const pct = (pred: number, meas: number): string => `${pred >= meas ? "+" : ""}${Math.round((pred / meas - 1) * 100)}%`;
  const fmt = (x: number): string => (x >= 100 ? x.toFixed(0) : x.toFixed(1));
  const lines = [
    `check     decode predicted ${fmt(p.predicted.decodeTps)} t/s, measured ${fmt(measured.decodeTps)} t/s (${pct(p.predicted.decodeTps, measured.decodeTps)}); ` +
    `prefill predicted ${fmt(p.predicted.prefillTps)} t/s, measured ${fmt(measured.prefillTps)} t/s (${pct(p.predicted.prefillTps, measured.prefillTps)})`,
  ];
  if (options.record === false || !(measured.decodeTps > 0) || !(measured.prefillTps > 0)) return { record: null, lines };
  // The same candidate without fixed costs: the bytes-and-FLOPs part the calibration leaves alone.
  const bare = plan(planned.model, planned.hardware, planned.recipe, {
    constants: { ...constants, overheadScale: { decode: 0, prefill: 0 } },
    capabilities: capabilitiesFor(p.runtime),
  }).candidates.find((c) => c.id === p.chosen);
  if (!bare) return { record: null, lines };
  const key: CalibrationKey = { hardware: planned.hardware, runtime: p.runtime, threads };
  const record = recordCalibration(key, {
    predicted: { decodeTps: p.predicted.decodeTps, prefillTps: p.predicted.prefillTps },
    workOnly: { decodeTps: bare.predicted.decodeTps, prefillTps: bare.predicted.prefillTps },
    measured,
    current: constants.overheadScale ?? { decode: 1, prefill: 1 },
    promptTokens: p.workload.promptTokens,
    layers: planned.model.layerCount,
  }, path);
  const s = calibrationScales(key, path)!;
  lines.push(
    `calibrated fixed costs for ${p.runtime} with ${threads} thread${threads > 1 ? "s" : ""} on this machine: decode x${s.decode.toFixed(2)}, ` +
      `prefill x${s.prefill.toFixed(2)} (median of ${s.runs} run${s.runs > 1 ? "s" : ""}; ${path}); later plans use them`,
  );
  return { record, lines };
}

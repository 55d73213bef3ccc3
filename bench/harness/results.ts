/**
 * The results file of one harness run (results.json): machine details, every method's measured
 * speeds with the exact command, and the correctness check against the all-in-VRAM reference.
 * Written after every step, so a run stopped at its time limit still leaves what it measured.
 *
 * @module
 */
import type { SlotRestoreResult } from "./slot_restore.ts";
import { readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { MachineDetails } from "./machine.ts";

/** One throughput figure (tokens per second) with its spread. */
export interface Throughput {
  /** Tokens processed per repetition. */
  tokens: number;
  /** Mean tokens/s over the repetitions. */
  tps: number;
  stddev: number;
  samples: number[];
}

/** Correctness check of one method against the reference. */
export interface CheckResult {
  mode: "exact" | "close" | "none";
  /** true: passed; false: failed; null: not checked (no reference, mode none, or an error). */
  pass: boolean | null;
  /** What was compared, e.g. `llama-perplexity KL divergence vs all-vram`. */
  how: string;
  meanKld?: number;
  sameTopPct?: number;
  ppl?: number;
  refPpl?: number;
  /** torch: max |logits - reference| and argmax agreement. */
  maxAbsDiff?: number;
  argmaxAgreePct?: number;
  detail?: string;
}

/** How a server process ended and whether anything of its launch outlived it. */
export interface StopReport {
  /** Exit status (128 + signal number when a signal ended it); null when it never exited. */
  exitStatus: number | null;
  /** Seconds from the stop signal to the exit. */
  seconds: number;
  /** True when SIGTERM was not enough and the process group got SIGKILL. */
  killed: boolean;
  /** Processes of the launch (command line holding `--port PORT`) still alive after the exit; each was then killed. */
  orphans: number;
  orphanCommands?: string[];
  /** Whether the port stopped answering /health. */
  portFree: boolean;
}

/** What only a llama-server (server section) result has. */
export interface ServerDetails {
  /** The section's config kind: all-vram, default, flags, spillway-run. */
  config: string;
  port: number;
  /** Seconds from start until /health answered 200 (load time included). */
  readySeconds: number | null;
  /** Greedy tokens of the first measured request (the check compares these). */
  tokens?: number[];
  /** `spillway run`: its `launch` line, the llama-server command it ran. */
  launched?: string;
  stop: StopReport | null;
}

/** One measured method (a row of the table). */
export interface MethodResult {
  id: string;
  label: string;
  /** `llama-server`: measured through its HTTP API (server section); `llama.cpp`: llama-bench. */
  runtime: "llama.cpp" | "llama-server" | "torch" | "node-llama-cpp";
  model: string;
  /** GiB left free by the ballast, or null when no ballast ran. */
  freeVramGiB: number | null;
  /** Free VRAM the driver reported with the ballast in place, bytes. */
  ballastFreeBytes: number | null;
  workload: string;
  /** The exact command (argv) and environment that produced the numbers. */
  command: string[];
  env: Record<string, string>;
  /** How the flags were chosen (e.g. llama-fit-params output, the plan's choice). */
  derivedFrom?: string;
  prefill: Throughput | null;
  decode: Throughput | null;
  /** Combined prompt + generation (llama-bench -pg; server: one request's wall time): total tokens / total seconds. */
  endToEnd: (Throughput & { prompt: number; gen: number; seconds: number }) | null;
  check: CheckResult;
  /** Server section only: readiness, tokens, and how the server stopped. */
  server?: ServerDetails;
  /** PyTorch decode, per token: wall ms, host ms spent issuing the step, SM clock (MHz) after it. */
  decodeTrace?: { wallMs: number; cpuMs: number; smMhz: number | null }[];
  /** Server section with `slotRestore` (issue 21): restoring a saved prompt vs recomputing it. */
  slotRestore?: SlotRestoreResult | { error: string };
  /** Decode speed the PCIe link allows for this placement, when the harness can compute it. */
  roofline?: { decodeTps: number; basis: string };
  seconds: number;
  status: "ok" | "failed" | "skipped" | "timeout";
  error?: string;
}

/** The whole run. */
export interface RunResults {
  version: 1;
  kind: "gpu" | "cpu";
  matrix: string;
  startedAt: string;
  finishedAt: string | null;
  machine: MachineDetails;
  software: Record<string, string>;
  /** Seconds per phase (synth, each method). */
  phases: Record<string, number>;
  results: MethodResult[];
  notes: string[];
}

/** Writes `value` to `file` as indented JSON, atomically (temp file + rename). */
export function writeJsonAtomic(file: string, value: unknown): void {
  writeFileSync(`${file}.tmp`, JSON.stringify(value, null, 2) + "\n");
  renameSync(`${file}.tmp`, file);
}

/** Writes `results` to `file` atomically. */
export function writeResults(file: string, results: RunResults): void {
  writeJsonAtomic(file, results);
}

/** Mean and sample standard deviation. */
export function meanStd(xs: number[]): { mean: number; stddev: number } {
  if (xs.length === 0) return { mean: 0, stddev: 0 };
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const v = xs.length > 1 ? xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1) : 0;
  return { mean, stddev: Math.sqrt(v) };
}

/**
 * One run's results from several invocations of one matrix on one machine (a device call is
 * limited to 10 minutes, so a matrix's models may run in consecutive calls on the same warm
 * machine, SPILLWAY_BENCH_ONLY_MODELS). Refuses parts of other matrices, GPUs or hosts. A method
 * skipped in one part and measured in another appears once, measured; one measured in several parts
 * keeps its id for the last measurement, the earlier ones become `<id>-call<K>`.
 *
 * @example
 * const run = mergeRuns([glmPart, moe30bPart]); // results in the order given
 */
export function mergeRuns(parts: RunResults[]): RunResults {
  if (parts.length === 0) throw new Error("mergeRuns: no results to merge");
  const [first] = parts;
  const gpu = (r: RunResults) => r.machine.gpus.map((g) => g.name).join("+");
  for (const p of parts.slice(1)) {
    if (p.matrix !== first.matrix) throw new Error(`mergeRuns: matrix '${p.matrix}' is not '${first.matrix}'`);
    if (gpu(p) !== gpu(first) || p.machine.hostname !== first.machine.hostname || p.machine.cpuModel !== first.machine.cpuModel) {
      throw new Error(`mergeRuns: the part started ${p.startedAt} ran on another machine (${gpu(p)}, ${p.machine.cpuModel}) than ${first.startedAt} (${gpu(first)}, ${first.machine.cpuModel})`);
    }
  }
  const finished = parts.map((p) => p.finishedAt);
  // A method skipped for time in one part and measured in another (a follow-up call for what the
  // first left out) appears once: the measured result takes the skipped one's place.
  const key = (m: MethodResult) => `${m.model}\0${m.id}\0${m.freeVramGiB}\0${m.workload}`;
  // A method measured in several parts (a rerun) keeps its id in the last of them; the earlier
  // measurements stay, as `<id>-call<K>` (K: the part's place, from 1), so a summary by id takes the rerun.
  const lastPart = new Map<string, number>();
  parts.forEach((p, k) => p.results.forEach((m) => m.status !== "skipped" && lastPart.set(key(m), k)));
  const all = parts.flatMap((p, k) =>
    p.results.map((m) =>
      m.status !== "skipped" && lastPart.get(key(m))! > k ? { ...m, id: `${m.id}-call${k + 1}`, label: `${m.label} (call ${k + 1} of ${parts.length}, rerun later)` } : m
    )
  );
  const measured = new Set(all.filter((m) => m.status !== "skipped").map(key));
  return {
    ...first,
    startedAt: parts.map((p) => p.startedAt).sort()[0]!,
    finishedAt: finished.includes(null) ? null : finished.sort().at(-1)!,
    phases: Object.assign({}, ...parts.map((p) => p.phases)),
    results: all.filter((m) => !(m.status === "skipped" && measured.has(key(m)))),
    notes: [...new Set(parts.flatMap((p) => p.notes)), `merged from ${parts.length} invocations started ${parts.map((p) => p.startedAt).join(", ")}`],
  };
}

/**
 * Reads a harness results file: `path` is a results.json or a folder holding one (a run's folder in
 * bench/results/). Errors name the file: missing, not JSON, or not a results file.
 */
export function readResults(path: string): { file: string; results: RunResults } {
  let file = path;
  try {
    if (statSync(path).isDirectory()) file = join(path, "results.json");
  } catch {
    throw new Error(`${path}: no such results file or folder`);
  }
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new Error(`${file}: cannot be read (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
  let res: RunResults;
  try {
    res = JSON.parse(text) as RunResults;
  } catch (e) {
    throw new Error(`${file}: not JSON (${(e as Error).message})`);
  }
  if (res === null || typeof res !== "object" || res.version !== 1 || !Array.isArray(res.results)) {
    throw new Error(`${file}: not a harness results file (version 1)`);
  }
  return { file, results: res };
}

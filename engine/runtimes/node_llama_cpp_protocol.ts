/**
 * Messages between spillway and its node-llama-cpp worker process: JSON lines on the worker's
 * stdout, each prefixed with {@link WORKER_MARK} so that anything native code prints there is
 * told apart (and kept for a crash report).
 *
 * @module
 */
import type { GenerationResult } from "./node_llama_cpp.ts";

/** Prefix of every protocol line. */
export const WORKER_MARK = "@@spillway-worker@@ ";

/** One line from the worker. */
export type WorkerMessage =
  | { type: "progress"; phase: "load" | "prompt" | "generate"; done: number; total: number }
  | { type: "result"; result: GenerationResult }
  | { type: "error"; name: string; message: string; aborted?: boolean };

/** Parses one stdout line: the message, or null for a line that is not one (native output). */
export function parseWorkerLine(line: string): WorkerMessage | null {
  if (!line.startsWith(WORKER_MARK)) return null;
  try {
    return JSON.parse(line.slice(WORKER_MARK.length)) as WorkerMessage;
  } catch {
    return null;
  }
}

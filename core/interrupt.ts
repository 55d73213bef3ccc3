/**
 * Long work that Ctrl-C must stop cleanly: while `work` runs, SIGINT and SIGTERM abort the signal
 * it gets (with an {@linkcode InterruptedError}) instead of killing the process, so the work can
 * remove what it half wrote before the rejection reaches the CLI, which exits 130.
 *
 * @example
 * ```ts
 * import { withInterrupt } from "./interrupt.ts";
 * await withInterrupt("synthesizing", async (signal) => {
 *   signal.throwIfAborted();
 * });
 * ```
 *
 * @module
 */
import process from "node:process";
import { InterruptedError } from "./errors.ts";

/** Run `work` with an AbortSignal that SIGINT/SIGTERM abort; the handlers are removed afterwards. */
export async function withInterrupt<T>(what: string, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ac = new AbortController();
  const onSignal = (sig: string) => ac.abort(new InterruptedError(`${what}: interrupted by ${sig}; the partial output was removed`));
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    return await work(ac.signal);
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

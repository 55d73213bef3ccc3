/**
 * `harness merge --out F PART...`: one run's results.json from the parts of several device calls on
 * one warm machine (each PART a results.json or its run folder), with {@linkcode mergeRuns}; then
 * `report --results F` renders it.
 *
 * @example
 * // node --import tsx bench/harness/main.ts merge --out bench/results/X/results.json call1/results.json call2
 * @module
 */
import { resolve } from "node:path";
import { mergeRuns, readResults, writeJsonAtomic } from "./results.ts";

/** Merge the parts into `--out`; resolves to the exit code (2: usage, 1: a part or the merge refused). */
export function mergeCommand(o: Record<string, string>, parts: string[]): number {
  if (!o.out || o.out === "true" || parts.length === 0) {
    console.error("merge: usage: merge --out results.json PART... (each PART a results.json or its run folder)");
    return 2;
  }
  try {
    const run = mergeRuns(parts.map((p) => readResults(resolve(p)).results));
    writeJsonAtomic(resolve(o.out), run);
    console.log(`wrote ${resolve(o.out)}: ${run.results.length} results from ${parts.length} parts`);
    return 0;
  } catch (e) {
    console.error(`merge: ${(e as Error).message}`);
    return 1;
  }
}

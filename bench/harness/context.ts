/**
 * What a matrix run needs to know about the machine it runs on (paths, deadline, log), shared by
 * the llama.cpp sections (runner.ts) and the server section (server.ts).
 *
 * @module
 */

/** Where things are on the machine running the matrix. */
export interface RunContext {
  root: string;
  llamaBin: string;
  work: string;
  out: string;
  /** Epoch milliseconds by which everything must be written. */
  deadline: number;
  logFile: string;
  /** Method ids to run (all when null). */
  only: Set<string> | null;
  python: string;
  /** The bundled spillway CLI (for `spillway plan --json`), or null. */
  spillwayCli: string | null;
  node: string;
  /** Notes copied into the results. */
  notes: string[];
}

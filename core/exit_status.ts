/**
 * The shell's exit status of a finished child process.
 *
 * @example
 * ```ts
 * import { exitStatus } from "./exit_status.ts";
 * exitStatus(null, "SIGINT"); // 130
 * ```
 *
 * @module
 */
import { constants } from "node:os";

/** Exit status for a child that ended with `code` or by `signal` (shell convention 128 + n; 1 if neither). */
export function exitStatus(code: number | null, signal: NodeJS.Signals | string | null): number {
  if (code !== null) return code;
  if (signal !== null) return 128 + ((constants.signals as Record<string, number>)[signal] ?? 0);
  return 1;
}

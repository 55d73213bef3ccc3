/**
 * `spillway bench`: measure this machine's memory tiers (engine/hardware/measure/run.ts), print the
 * table and optionally JSON; the profile is cached per machine.
 * @module
 */
import { SpillwayError } from "../core/errors.ts";
import { type BenchOptions, formatBenchTable, runBench } from "../engine/hardware/measure/run.ts";

/**
 * The `spillway bench` command: returns the process exit code (0 ok, 1 failed).
 * With `json`, stdout carries only the JSON report and the table goes to stderr.
 */
export async function benchCommand(opts: BenchOptions = {}): Promise<number> {
  const out = opts.stdout ?? ((t: string) => process.stdout.write(t));
  const err = opts.stderr ?? ((t: string) => process.stderr.write(t));
  try {
    const report = await runBench(opts);
    const table = formatBenchTable(report);
    if (opts.json) {
      err(table);
      out(JSON.stringify(report, null, 2) + "\n");
    } else out(table);
    return 0;
  } catch (e) {
    err(`spillway bench: ${e instanceof SpillwayError ? e.message : (e as Error).stack ?? String(e)}\n`);
    return 1;
  }
}

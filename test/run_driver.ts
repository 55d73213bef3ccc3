// Runs `spillway run` / `spillway top` through engine/run_command.ts in whichever runtime executes
// this file (node --import tsx, bun, deno run -A), for the run tests. Usage:
//   run_driver.ts run <recipe|-> [--dry-run] [--json] [-- extra args...]
//   run_driver.ts top [--once] [--json]
import process from "node:process";
import { SpillwayError } from "../core/errors.ts";
import { runCommand } from "../commands/run.ts";
import { topCommand } from "../commands/top.ts";

const argv = process.argv.slice(2);
const dash = argv.indexOf("--");
const own = dash < 0 ? argv : argv.slice(0, dash);
const extra = dash < 0 ? [] : argv.slice(dash + 1);
const flag = (f: string): boolean => own.includes(f);
const positional = own.filter((a) => !a.startsWith("--"));
try {
  let code: number;
  if (positional[0] === "top") {
    code = await topCommand({ once: flag("--once"), json: flag("--json") });
  } else {
    const recipe = positional[1] === "-" || positional[1] === undefined ? null : positional[1];
    code = await runCommand(recipe, extra, { dryRun: flag("--dry-run"), json: flag("--json") });
  }
  process.exit(code);
} catch (e) {
  if (e instanceof SpillwayError) {
    process.stderr.write(`spillway: ${e.message}\n`);
    process.exit(2);
  }
  throw e;
}

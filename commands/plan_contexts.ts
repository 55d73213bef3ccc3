/**
 * `spillway plan RECIPE --contexts 4k,16k,32k,64k,128k` (issue 21): the recipe planned at each
 * context length (a request filling it), with the chosen placement, KV type and location, memory,
 * predicted prefill and decode, and the longest context that fits this machine; `--json` prints the
 * same as an object.
 *
 * @module
 */
import { SpillwayError } from "../core/errors.ts";
import { resolveHardware } from "../engine/hardware/resolve.ts";
import { calibratedConstants } from "../engine/planner/calibration.ts";
import { formatContextTable, parseContexts, planContexts } from "../engine/planner/contexts.ts";
import { DEFAULT_CONSTANTS } from "../engine/planner/cost.ts";
import { loadRecipe } from "../engine/recipe/parse.ts";
import { recipeModel } from "../engine/recipe_plan.ts";
import { adapterFor } from "../engine/runtimes/mod.ts";

/** Options of {@link planContextsCommand}. */
export interface PlanContextsOptions {
  json?: boolean;
  hardware?: string;
  out?: (text: string) => void;
  err?: (text: string) => void;
}

/** Runs `plan --contexts`; returns the exit code (2 for bad input, as `plan`). */
export async function planContextsCommand(recipePath: string, contexts: string, options: PlanContextsOptions = {}): Promise<number> {
  const out = options.out ?? ((t: string) => process.stdout.write(t + "\n"));
  const err = options.err ?? ((t: string) => process.stderr.write(t + "\n"));
  try {
    const list = parseContexts(contexts);
    const recipe = await loadRecipe(recipePath);
    const { model, note } = await recipeModel(recipe);
    const hardware = await resolveHardware(recipe.hardware, { override: options.hardware });
    const cal = calibratedConstants(DEFAULT_CONSTANTS, { hardware, runtime: recipe.runtime.name, threads: recipe.threads ?? hardware.host.cpuCores });
    const table = planContexts(model, hardware, recipe, list, {
      capabilities: adapterFor(recipe.runtime.name, recipe.file).capabilities,
      constants: cal.constants,
    });
    const notes = [...(note ? [note] : []), ...(hardware.notes ?? []), ...(cal.note ? [cal.note] : [])];
    if (options.json) {
      out(JSON.stringify({ ...table, recipe: recipe.file, notes }, null, 2));
    } else {
      for (const n of notes) out(`note      ${n}`);
      out(formatContextTable(table));
    }
    return 0;
  } catch (e) {
    if (e instanceof SpillwayError) {
      err(`spillway plan: ${e.message}`);
      return 2;
    }
    throw e;
  }
}

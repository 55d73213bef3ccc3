/**
 * `spillway plan <recipe>`: load the recipe, read the model's headers (or, when a model named by id
 * is absent, its known shape), resolve the hardware, plan, and print the table (or `--json`) and
 * the command line and environment the runtime adapter would launch.
 *
 * @module
 */
import { adapterFor } from "../engine/runtimes/mod.ts";
import { runRecipeOf } from "../engine/runtimes/adapter.ts";
import { SpillwayError } from "../core/errors.ts";
import { commandLine, envWords } from "../core/shell.ts";
import type { Recipe } from "../engine/recipe/types.ts";
import type { Plan } from "../core/types.ts";
import { formatPlan } from "../engine/planner/format.ts";
import { type PlannedRecipe, planRecipe } from "../engine/recipe_plan.ts";
import { planContextsCommand } from "./plan_contexts.ts";

/** Options of {@link planCommand}. */
export interface PlanCommandOptions {
  /** Print the Plan object as JSON instead of the table. */
  json?: boolean;
  /** Hardware profile name (or `probe`) overriding the recipe's. */
  hardware?: string;
  /** Plan at each of these context lengths instead (`4k,16k,32k`; issue 21, commands/plan_contexts.ts). */
  contexts?: string;
  /** Where to write (default: process.stdout / process.stderr). */
  out?: (text: string) => void;
  err?: (text: string) => void;
}

/** The launch lines (environment and argv) for a plan, or why they cannot be shown. */
export async function launchLines(recipe: Recipe, p: Plan): Promise<string[]> {
  const adapter = adapterFor(recipe.runtime.name, recipe.file);
  try {
    const spec = adapter.toLaunchSpec(p, runRecipeOf(recipe));
    return [...envWords(spec.env), commandLine(spec.argv)];
  } catch (e) {
    return [`(the ${recipe.runtime.name} adapter cannot express this plan: ${(e as Error).message})`];
  }
}

/**
 * `spillway plan <recipe> [--json] [--hardware NAME]`. Returns the exit code: 0, or 1 after
 * printing a SpillwayError's message.
 */
export async function planCommand(recipePath: string, options: PlanCommandOptions = {}): Promise<number> {
  const out = options.out ?? ((t: string) => process.stdout.write(t + "\n"));
  const err = options.err ?? ((t: string) => process.stderr.write(t + "\n"));
  if (options.contexts !== undefined) return planContextsCommand(recipePath, options.contexts, { ...options, out, err });
  let planned: PlannedRecipe;
  try {
    planned = await planRecipe(recipePath, { hardware: options.hardware });
  } catch (e) {
    if (e instanceof SpillwayError) {
      err(`spillway plan: ${e.message}`);
      return 2; // bad recipe, model file or hardware name: an input error, as for `run`
    }
    throw e;
  }
  if (options.json) {
    out(JSON.stringify(planned.plan, null, 2));
    return 0;
  }
  out(formatPlan(planned.plan));
  out("");
  out("launch:");
  for (const l of await launchLines(planned.recipe, planned.plan)) out(`  ${l}`);
  return 0;
}

/**
 * A recipe planned: load it, read the model's headers (or, when a model named by id is absent, its
 * known shape), resolve the hardware and plan. `spillway plan` prints the result and `spillway run`
 * launches it.
 *
 * @example
 * ```ts
 * import { planRecipe } from "./recipe_plan.ts";
 * const { plan } = await planRecipe("recipes/llama-3.1-8b-q4_k_m.json5");
 * ```
 *
 * @module
 */
import { applyCachedAutotune } from "./autotune/apply.ts";
import { adapterFor } from "./runtimes/mod.ts";
import { existsSync } from "node:fs";
import { resolveHardware } from "./hardware/resolve.ts";
import { readModel } from "./model/mod.ts";
import { loadRecipe } from "./recipe/parse.ts";
import type { Recipe } from "./recipe/types.ts";
import type { HardwareProfile, ModelInfo, Plan } from "../core/types.ts";
import { modelInfoFromShape } from "./planner/from_shape.ts";
import { plan } from "./planner/plan.ts";
import { calibratedConstants } from "./planner/calibration.ts";
import { type CostConstants, DEFAULT_CONSTANTS } from "./planner/cost.ts";

/** The model of a recipe: its file's headers, or its known shape when a file named by id is absent. */
export async function recipeModel(recipe: Recipe): Promise<{ model: ModelInfo; note?: string }> {
  const m = recipe.model;
  if (existsSync(m.path) || m.source === "path" || m.id === undefined) {
    return { model: await readModel(m.path) };
  }
  const model = modelInfoFromShape(m.id, m.quant ?? "q8_0", m.path);
  return {
    model,
    note: `model file ${m.path} is absent; planned from the known shape ${String(model.metadata["spillway.from_shape"])} at ${model.quantization}` +
      (m.synth ? " (`spillway run` synthesizes it)" : ""),
  };
}

/** Everything `spillway plan` computes, for the CLI and for `spillway run`. */
export interface PlannedRecipe {
  recipe: Recipe;
  model: ModelInfo;
  hardware: HardwareProfile;
  plan: Plan;
  /** The cost-model constants the plan was made with (this machine's calibration applied). */
  constants?: CostConstants;
}

/**
 * Plan a recipe (no printing): a recipe file, loaded here, or a recipe already loaded (`spillway run`
 * loads it once to make its model first). `cachedAutotune: false` keeps the cost model's own choice
 * (what `--autotune` must start from) instead of a stored autotune outcome.
 */
export async function planRecipe(source: string | Recipe, options: { hardware?: string; cachedAutotune?: boolean } = {}): Promise<PlannedRecipe> {
  const recipe = typeof source === "string" ? await loadRecipe(source) : source;
  const { model, note } = await recipeModel(recipe);
  const hardware = await resolveHardware(recipe.hardware, { override: options.hardware });
  // Fixed costs measured by earlier runs of this runtime on this machine (engine/planner/calibration.ts).
  const cal = calibratedConstants(DEFAULT_CONSTANTS, { hardware, runtime: recipe.runtime.name, threads: recipe.threads ?? hardware.host.cpuCores });
  const planned = plan(model, hardware, recipe, { capabilities: adapterFor(recipe.runtime.name, recipe.file).capabilities, constants: cal.constants });
  // A stored autotune outcome for this model, machine and workload replaces the prediction.
  const p = options.cachedAutotune === false ? planned : applyCachedAutotune(planned);
  p.notes = [
    ...(note ? [note] : []),
    ...(hardware.notes ?? []),
    ...(cal.note ? [cal.note] : []),
    ...(p !== planned ? ["choice from a stored autotune outcome (spillway plan --autotune --force re-measures)"] : []),
  ];
  return { recipe, model, hardware, plan: p, constants: cal.constants };
}

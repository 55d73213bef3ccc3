/**
 * Recipes: JSON5 files saying which model to run, how, for what workload, on what hardware.
 *
 * @module
 */
export { loadRecipe, parseRecipe, RECIPE_DEFAULTS, WORKLOADS } from "./parse.ts";
export type * from "./types.ts";
export { RUNTIME_NAMES } from "./types.ts";
export { defaultModelPath, KNOWN_MODELS, KNOWN_QUANTS, modelCacheDir } from "./models.ts";
export { RECIPE_SPEC, toJsonSchema } from "./schema.ts";
export type { Spec } from "./schema.ts";
export { parseSize } from "./size.ts";

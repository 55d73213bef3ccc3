/**
 * `missingProgramHint`: the "how to get it" line for a program that was not found, fitted to where
 * the program name came from. The adapters' hints end with "or set `binary` in the recipe to its
 * path", which is wrong advice for a command typed after `spillway run --` (there is no recipe)
 * and for a recipe whose `binary` is already set (the set path is what is wrong).
 *
 * @example
 * ```ts
 * missingProgramHint(llamaCppHint, { file: "(command line)" }); // "... or give the program's full path."
 * ```
 *
 * @module
 */
import type { RunRecipe } from "./adapter.ts";

/** The recipe clause of the adapters' hints (`binary`, or `python` for transformers). */
const RECIPE_CLAUSE = /,? or set `(binary|python)` in the recipe[^.]*\./;

/** `hint` with its recipe advice replaced where it does not apply to `recipe`. */
export function missingProgramHint(hint: string, recipe: RunRecipe | null): string {
  const file = recipe?.file;
  if (file === undefined || file === "(command line)") return hint.replace(RECIPE_CLAUSE, ", or give the program's full path.");
  const set = recipe?.binary !== undefined ? ["binary", recipe.binary] : recipe?.python !== undefined ? ["python", recipe.python] : null;
  if (set) return hint.replace(RECIPE_CLAUSE, `; runtime.${set[0]} in ${file} is '${set[1]}': correct that path.`);
  return hint;
}

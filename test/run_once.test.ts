// `spillway run` resolves the recipe and the adapter once (issue 15): planRecipe plans a recipe
// already loaded, and launch() uses the adapter its caller passes instead of looking it up again.
import { test } from "node:test";
import { launch } from "../engine/launch/mod.ts";
import { loadRecipe } from "../engine/recipe/mod.ts";
import { planRecipe } from "../engine/recipe_plan.ts";
import { adapterFor, type RuntimeAdapter } from "../engine/runtimes/mod.ts";
import { assertEquals } from "./_assert.ts";

const RECIPE = "recipes/glm-4.7-flash-q8_0.json5";

test("planRecipe: a recipe already loaded plans as its file does", async () => {
  const recipe = await loadRecipe(RECIPE);
  const fromObject = await planRecipe(recipe, { hardware: "h200-12gib-free", cachedAutotune: false });
  const fromFile = await planRecipe(RECIPE, { hardware: "h200-12gib-free", cachedAutotune: false });
  assertEquals(fromObject.recipe, recipe);
  assertEquals(fromObject.plan.chosen, fromFile.plan.chosen);
  assertEquals(fromObject.plan.settings, fromFile.plan.settings);
});

test("launch: the adapter the caller resolved is the one used (no second lookup by runtime name)", async () => {
  const { plan } = await planRecipe(RECIPE, { hardware: "h200-12gib-free", cachedAutotune: false });
  const real = adapterFor(plan.runtime);
  let asked = 0;
  // Same runtime name, another launch: proves launch() took this object, not ADAPTERS[plan.runtime].
  const given: RuntimeAdapter = {
    ...real,
    toLaunchSpec: () => {
      asked++;
      return { argv: ["sh", "-c", "exit 7"], env: {} };
    },
  };
  const handle = launch(plan, null, { adapter: given, stdio: "ignore", forwardSignals: false });
  assertEquals(await handle.exited, 7);
  assertEquals(asked, 1);
});

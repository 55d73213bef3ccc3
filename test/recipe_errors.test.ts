// Recipe error messages (issue 14 item 8): every error of a recipe is reported at once, each at
// file:line:column with its field path; `context: Infinity`, a `__proto__` key and a `null`
// recipe read clearly; `model.quant: "Q8_0"` is accepted in any case and normalised.
import { test } from "node:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assert, assertEquals, assertMatch, assertThrows } from "./_assert.ts";
import { RecipeSchemaError } from "../core/errors.ts";
import { parseRecipe } from "../engine/recipe/parse.ts";
import { locateField } from "../engine/recipe/locate.ts";
import { runCli } from "./_spillway_cli.ts";

const base = `model: { id: "tiny-moe", quant: "q8_0" }, runtime: "llama.cpp"`;

test("all of a recipe's errors are reported, each at file:line:column with its field path", () => {
  const text = `// three mistakes
{
  model: { id: "tiny-moe", quant: "q8_0" },
  runtime: "llama.cp",
  context: -5,
  placement: { kv: "vram", cpuLayer: [1] },
}
`;
  const e = assertThrows(() => parseRecipe(text, "bad.json5"), RecipeSchemaError);
  const lines = e.message.split("\n");
  assertEquals(lines[0], "3 errors in bad.json5:");
  assertMatch(lines[1]!, /^ {2}bad\.json5:4:12: runtime: "llama\.cp" is not allowed \(did you mean "llama\.cpp"\?\)/);
  assertMatch(lines[2]!, /^ {2}bad\.json5:5:12: context: must be at least \d+, got -5$/);
  assertMatch(lines[3]!, /^ {2}bad\.json5:6:28: placement\.cpuLayer: unknown key \(did you mean "cpuLayers"\?\)/);
});

test("errors found after the schema (ubatch > batch, workload > context, unknown profile) are all reported too", () => {
  const text = `{ ${base},\n  batch: 64, ubatch: 128,\n  context: 32, workload: { promptTokens: 30, generatedTokens: 30 },\n  hardware: "rtx-9090" }`;
  const e = assertThrows(() => parseRecipe(text, "r.json5"), RecipeSchemaError);
  assertMatch(e.message, /^3 errors in r\.json5:/);
  assertMatch(e.message, /r\.json5:2:22: ubatch: must not exceed batch \(64\), got 128/);
  assertMatch(e.message, /r\.json5:3:26: workload: prompt \+ generated tokens \(60\) exceed context \(32\)/);
  assertMatch(e.message, /r\.json5:4:13: hardware: unknown hardware profile "rtx-9090"/);
});

test("context: Infinity, a __proto__ key, a null recipe: clear messages, not garbled ones", () => {
  const inf = assertThrows(() => parseRecipe(`{ ${base}, context: Infinity }`, "r.json5"), RecipeSchemaError);
  assertMatch(inf.message, /^r\.json5:1:\d+: context: expected a finite number, got Infinity$/);
  const proto = assertThrows(() => parseRecipe(`{ ${base}, __proto__: { x: 1 } }`, "r.json5"), RecipeSchemaError);
  assertMatch(proto.message, /^r\.json5:1:\d+: __proto__: unknown key; allowed keys: /);
  const nested = assertThrows(() => parseRecipe(`{ model: { id: "tiny-moe", quant: "q8_0", constructor: 1 }, runtime: "llama.cpp" }`, "r.json5"), RecipeSchemaError);
  assertMatch(nested.message, /model\.constructor: unknown key; allowed keys of model: /);
  const nul = assertThrows(() => parseRecipe("null", "r.json5"), RecipeSchemaError);
  assertEquals(nul.message, "r.json5:1:1: (recipe): expected object, got null");
  for (const m of [inf.message, proto.message, nul.message]) assert(!/expected ,|null null/.test(m), m);
});

test("model.quant in any case is accepted and normalised (Q8_0 -> q8_0)", () => {
  for (const q of ["Q8_0", "q8_0", "Q4_0", "F16"]) {
    const r = parseRecipe(`{ model: { id: "tiny-moe", quant: "${q}" }, runtime: "llama.cpp" }`, "r.json5");
    assertEquals(r.model.quant, q.toLowerCase());
    assertMatch(r.model.path, new RegExp(`tiny-moe-${q.toLowerCase()}\\.gguf$`));
  }
  const e = assertThrows(() => parseRecipe(`{ model: { id: "tiny-moe", quant: "Q9_0" }, runtime: "llama.cpp" }`, "r.json5"), RecipeSchemaError);
  assertMatch(e.message, /model\.quant: "Q9_0" is not allowed/);
});

test("locateField: keys, values, array items, a shebang line", () => {
  const text = `#!/usr/bin/env -S npx spillway run\n{\n  placement: { cpuLayers: [1, 2,\n    3] },\n}`;
  assertEquals(locateField(text, "placement.cpuLayers[2]"), { line: 4, column: 5 });
  assertEquals(locateField(text, "placement.cpuLayers", "key"), { line: 3, column: 16 });
  assertEquals(locateField(text, "placement.nothing"), { line: 3, column: 14 });
  assertEquals(locateField("{", "x"), null);
});

test("spillway plan on a recipe with several errors: all of them, located, exit 2 (CLI)", () => {
  const dir = mkdtempSync(join(tmpdir(), "spillway-recipe-"));
  try {
    const recipe = join(dir, "bad.json5");
    writeFileSync(recipe, `{\n  model: { id: "tiny-moe", quant: "Q8_0" },\n  runtime: "vlm",\n  threads: "two",\n}\n`);
    const r = runCli(["plan", recipe]);
    assertEquals(r.status, 2, r.stderr);
    assertMatch(r.stderr, /2 errors in .*bad\.json5:/);
    assertMatch(r.stderr, /bad\.json5:3:12: runtime: "vlm" is not allowed/);
    assertMatch(r.stderr, /bad\.json5:4:12: threads: expected number, got string "two"/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

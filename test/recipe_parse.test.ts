import { test } from "node:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assert, assertEquals, assertMatch, assertRejects, assertThrows } from "./_assert.ts";
import { ModelFileError, RecipeSchemaError, RecipeSyntaxError } from "../core/errors.ts";
import { loadRecipe, parseRecipe, parseSize, RECIPE_SPEC, toJsonSchema } from "../engine/recipe/mod.ts";

const ok = `{ model: { path: "m.gguf" }, runtime: "llama.cpp" }`;

test("syntax error names file:line:column, counting the shebang line", () => {
  const text = `#!/usr/bin/env -S npx spillway run\n{\n  model: { path: "m.gguf" },\n  runtime: "vllm",,\n}\n`;
  const e = assertThrows(() => parseRecipe(text, "bad.json5"), RecipeSyntaxError);
  assertEquals([e.file, e.line, e.column], ["bad.json5", 4, 19]);
  assertMatch(e.message, /^bad\.json5:4:19: invalid character ','/);
});

test("wrong type names the field path and the allowed values", () => {
  const e1 = assertThrows(() => parseRecipe(`{ model: { path: "m" }, runtime: "llama.cpp", context: "big" }`, "r.json5"), RecipeSchemaError);
  assertEquals(e1.path, "context");
  assertMatch(e1.message, /expected number, got string "big"/);
  const e2 = assertThrows(() => parseRecipe(`{ model: { path: "m" }, runtime: 3 }`, "r.json5"), RecipeSchemaError);
  assertEquals(e2.path, "runtime");
  assertMatch(e2.message, /"llama\.cpp", "vllm", "ollama", "transformers", "node-llama-cpp", "command"/);
  const e3 = assertThrows(() => parseRecipe(`{ model: { path: "m" }, runtime: "llama.cpp", placement: { kv: "gpu" } }`, "r.json5"), RecipeSchemaError);
  assertEquals(e3.path, "placement.kv");
  assertMatch(e3.message, /allowed values: "auto", "vram", "host"/);
  const e4 = assertThrows(() => parseRecipe(`{ model: { path: "m" }, runtime: "llama.cpp", placement: { vramCap: "lots" } }`, "r.json5"), RecipeSchemaError);
  assertEquals(e4.path, "placement.vramCap");
  assertMatch(e4.message, /"12G"/);
});

test("unknown keys and misspelled values get a suggestion", () => {
  const e = assertThrows(() => parseRecipe(`{ model: { path: "m" }, runtime: "llama.cpp", placment: "auto" }`, "r.json5"), RecipeSchemaError);
  assertEquals(e.path, "placment");
  assertMatch(e.message, /did you mean "placement"\?/);
  const e2 = assertThrows(() => parseRecipe(`{ model: { path: "m" }, runtime: "llama.cpp", placement: { expert: "cpu" } }`, "r.json5"), RecipeSchemaError);
  assertEquals(e2.path, "placement.expert");
  assertMatch(e2.message, /did you mean "experts"\?/);
  const e3 = assertThrows(() => parseRecipe(`{ model: { path: "m" }, runtime: "llamacpp" }`, "r.json5"), RecipeSchemaError);
  assertMatch(e3.message, /did you mean "llama\.cpp"\?/);
  const e4 = assertThrows(() => parseRecipe(`{ model: { path: "m" }, runtime: "vllm", hardware: "rtx-5070" }`, "r.json5"), RecipeSchemaError);
  assertMatch(e4.message, /did you mean "rtx-5070-12gb"\?/);
});

test("cross-field rules: model needs path or id, command needs argv, ubatch <= batch", () => {
  assertThrows(() => parseRecipe(`{ model: {}, runtime: "vllm" }`), RecipeSchemaError, "model: needs `path`");
  assertThrows(() => parseRecipe(`{ model: { id: "qwen3-30b-a3b" }, runtime: "vllm" }`), RecipeSchemaError, "model.quant");
  assertThrows(() => parseRecipe(`{ model: { path: "m" }, runtime: "command" }`), RecipeSchemaError, "runtime.command");
  assertThrows(() => parseRecipe(`{ model: { path: "m" }, runtime: "vllm", batch: 512, ubatch: 1024 }`), RecipeSchemaError, "ubatch");
});

test("defaults, sizes, workloads and hardware forms", () => {
  const r = parseRecipe(ok, "/x/r.json5");
  assertEquals(r.model.path, "/x/m.gguf");
  assertEquals([r.context, r.batch, r.ubatch, r.threads], [4096, 2048, undefined, undefined]);
  assertEquals(r.workload, { objective: "chat", promptTokens: 512, generatedTokens: 512 });
  assertEquals(r.hardware, { kind: "probe" });
  assert(r.placement.auto);
  const r2 = parseRecipe(
    `{ model: { id: "qwen3-30b-a3b", quant: "q8_0" }, runtime: { name: "llama.cpp", args: ["--jinja"] }, workload: "rag", context: 8192,
       placement: { vramCap: "11G", reserve: "512M", ramCap: "48GB", cpuLayers: [3, 1, 3] },
       hardware: { profile: "rtx-5070-12gb", gpu: { freeVramBytes: "10G" } } }`,
    "r.json5",
  );
  assertEquals(r2.model.shape, "qwen3moe-30b-a3b");
  assertMatch(r2.model.path, /\.cache\/spillway\/models\/qwen3-30b-a3b-q8_0\.gguf$/);
  assertEquals(r2.workload.promptTokens, 4096);
  assertEquals([r2.placement.vramCap, r2.placement.reserve, r2.placement.ramCap], [11 * 2 ** 30, 512 * 2 ** 20, 48e9]);
  assertEquals(r2.placement.cpuLayers, [1, 3]);
  assertEquals(r2.hardware, { kind: "explicit", profile: "rtx-5070-12gb", overrides: { gpu: { freeVramBytes: 10 * 2 ** 30 } } });
  assertEquals([parseSize("4096K"), parseSize("1.5GiB"), parseSize(12), parseSize("12 X")], [4 * 2 ** 20, 1.5 * 2 ** 30, 12, null]);
});

test("loadRecipe: a missing model file is a ModelFileError naming the path and the field", async () => {
  const dir = mkdtempSync(join(tmpdir(), "spillway-recipe-"));
  try {
    writeFileSync(join(dir, "r.json5"), `{ model: { path: "nothere.gguf" }, runtime: "llama.cpp" }`);
    const e = await assertRejects(() => loadRecipe(join(dir, "r.json5")), ModelFileError);
    assertEquals(e.file, join(dir, "nothere.gguf"));
    assertMatch(e.message, /model\.path in .*r\.json5/);
    writeFileSync(join(dir, "m.gguf"), "GGUF");
    writeFileSync(join(dir, "r2.json5"), `#!/usr/bin/env -S npx spillway run\n{ model: { path: "m.gguf" }, runtime: "llama.cpp" }`);
    assertEquals((await loadRecipe(join(dir, "r2.json5"))).model.path, join(dir, "m.gguf"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("every shipped recipe loads", async () => {
  const files = readdirSync("recipes").filter((f) => f.endsWith(".json5"));
  assert(files.length >= 5, `recipes: ${files}`);
  for (const f of files) {
    const r = await loadRecipe(join("recipes", f));
    assertEquals(r.file, join("recipes", f));
  }
});

test("recipe.schema.json is generated from the validator's schema", () => {
  const committed = JSON.parse(readFileSync("engine/recipe/recipe.schema.json", "utf8"));
  assertEquals(committed, toJsonSchema(RECIPE_SPEC));
});

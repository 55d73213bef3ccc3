// Issue 21: what the llama.cpp adapter emits for a KV type and a prompt (slot) cache, the private
// slot directory, and the recipe fields behind them.
import { test } from "node:test";
import { lstatSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assert, assertEquals, assertMatch, assertThrows } from "./_assert.ts";
import { LaunchError, RecipeSchemaError } from "../core/errors.ts";
import { getProfile } from "../engine/hardware/profiles.ts";
import { modelInfoFromShape } from "../engine/planner/from_shape.ts";
import { plan, type PlanRecipe } from "../engine/planner/plan.ts";
import { parseRecipe } from "../engine/recipe/parse.ts";
import { llamaBenchArgs, llamaCppAdapter } from "../engine/runtimes/llamacpp.ts";
import { ensurePrivateDir } from "../engine/runtimes/slot_dir.ts";

const qwen = modelInfoFromShape("qwen3-30b-a3b", "q8_0", "/models/qwen3-30b-a3b-q8_0.gguf");
const hw = getProfile("h200-12gib-free")!;

function recipe(over: Partial<PlanRecipe> = {}): PlanRecipe {
  return {
    runtime: { name: "llama.cpp" },
    context: 32768,
    batch: 2048,
    workload: { objective: "custom", promptTokens: 32000, generatedTokens: 256 },
    placement: { auto: true, kv: "auto", experts: "auto", cpuLayers: [] },
    threads: 16,
    ...over,
  };
}

test("llamacpp_kv_server_argv_golden: a q8_0 plan with a slot cache launches llama-server with -ctk/-ctv q8_0 -fa on and the slot flags", () => {
  // q8_0 asked for (at 32k the cost model keeps f16 when f16 is allowed: planner_kv.test.ts).
  const p = plan(qwen, hw, recipe({ kvCache: { types: ["q8_0"] }, promptCache: { dir: "/home/u/.cache/spillway/slots", reuse: 256 } }));
  assertEquals(p.chosen, "ncmoe-37-none-ub2048+kv-q8_0");
  const spec = llamaCppAdapter.toLaunchSpec(p, null);
  assertEquals(spec.argv, [
    "llama-server", "-m", "/models/qwen3-30b-a3b-q8_0.gguf", "-ngl", "49", "-ncmoe", "37",
    "-ctk", "q8_0", "-ctv", "q8_0", "-fa", "on", "-lm", "none",
    "-c", "32768", "-b", "2048", "-ub", "2048", "-t", "16", "-fit", "off",
    "--slot-save-path", "/home/u/.cache/spillway/slots", "--cache-reuse", "256",
  ]);
  // llama-bench measures the same cache type.
  const bench = llamaBenchArgs(p, { promptTokens: 512, genTokens: 64 });
  const at = bench.indexOf("-ctk");
  assertEquals(bench.slice(at, at + 6), ["-ctk", "q8_0", "-ctv", "q8_0", "-fa", "on"]);
  assert(!bench.includes("--slot-save-path"), "llama-bench has no slot cache");
});

test("llamacpp_kv_f16_and_other_programs: f16 adds no flag; llama-cli gets no slot flags; the user's -fa/-ctk win", () => {
  const f16 = plan(qwen, hw, recipe({ kvCache: { types: ["f16"] }, promptCache: { dir: "/s", reuse: 0 } }));
  const server = llamaCppAdapter.toLaunchSpec(f16, null).argv;
  for (const f of ["-ctk", "-ctv", "-fa", "--cache-reuse"]) assert(!server.includes(f), `${f} in ${server.join(" ")}`);
  assertEquals(server.slice(-2), ["--slot-save-path", "/s"]);
  const q = plan(qwen, hw, recipe({ kvCache: { types: ["q8_0"] }, promptCache: { dir: "/s", reuse: 64 } }));
  const cli = llamaCppAdapter.toLaunchSpec(q, { program: "cli" }).argv;
  assert(!cli.includes("--slot-save-path") && cli.includes("-ctk"), cli.join(" "));
  const user = llamaCppAdapter.toLaunchSpec(q, { args: ["--cache-type-k", "f16", "-ctv", "f16", "--flash-attn", "auto"] }).argv;
  assertEquals(user.filter((a) => ["-ctk", "-ctv", "-fa", "q8_0", "on"].includes(a)), ["-ctv"]);
  assertEquals(user.slice(-6), ["--cache-type-k", "f16", "-ctv", "f16", "--flash-attn", "auto"]);
});

test("slot_dir_private: created 0700, a wider mode tightened, a symlink or a file refused", () => {
  const root = mkdtempSync(join(tmpdir(), "spillway-slots-"));
  try {
    const d = join(root, "a", "slots");
    ensurePrivateDir(d);
    assertEquals(statSync(d).mode & 0o777, 0o700);
    const wide = join(root, "wide");
    mkdirSync(wide, { mode: 0o755 });
    ensurePrivateDir(wide);
    assertEquals(statSync(wide).mode & 0o777, 0o700);
    const target = join(root, "target");
    mkdirSync(target, { mode: 0o755 });
    const link = join(root, "link");
    symlinkSync(target, link);
    const e = assertThrows(() => ensurePrivateDir(link), LaunchError);
    assertMatch(e.message, /link is a symlink \(not followed/);
    assertEquals(statSync(target).mode & 0o777, 0o755, "the symlink's target was not touched");
    assert(lstatSync(link).isSymbolicLink());
    const file = join(root, "file");
    writeFileSync(file, "x");
    assertMatch(assertThrows(() => ensurePrivateDir(file), LaunchError).message, /file is not a directory/);
    // The adapter's preflight creates the directory named by --slot-save-path.
    const viaPreflight = join(root, "pre");
    llamaCppAdapter.preflight!({ argv: ["llama-server", "--slot-save-path", viaPreflight], env: {} }, {});
    assertEquals(statSync(viaPreflight).mode & 0o777, 0o700);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("recipe_kv_and_prompt_cache_fields: defaults, relative dir, located errors", () => {
  const base = `model: { id: "qwen3-30b-a3b", quant: "q8_0" }, runtime: "llama.cpp"`;
  const plain = parseRecipe(`{ ${base} }`, "/r/x.json5");
  assertEquals(plain.kvCache, undefined);
  assertEquals(plain.promptCache, undefined);
  const r = parseRecipe(`{ ${base}, kvCache: { types: ["q4_0", "f16", "q4_0"] }, promptCache: { dir: "slots" } }`, "/r/x.json5");
  assertEquals(r.kvCache, { types: ["q4_0", "f16"] });
  assertEquals(r.promptCache, { dir: "/r/slots", reuse: 256 });
  const bad = assertThrows(() => parseRecipe(`{ ${base},\n  kvCache: { types: ["q5_0"] } }`, "k.json5"), RecipeSchemaError);
  assertMatch(bad.message, /k\.json5:2:22: kvCache\.types\[0\]: "q5_0" is not allowed.*"f16", "q8_0", "q4_0"/);
  const empty = assertThrows(() => parseRecipe(`{ ${base}, kvCache: { types: [] } }`, "k.json5"), RecipeSchemaError);
  assertMatch(empty.message, /kvCache\.types/);
  const vllm = assertThrows(() => parseRecipe(`{ model: { id: "qwen3-30b-a3b", quant: "q8_0" }, runtime: "vllm",\n  promptCache: { dir: "/s" } }`, "v.json5"), RecipeSchemaError);
  assertMatch(vllm.message, /v\.json5:2:\d+: promptCache: only runtime "llama.cpp" \(llama-server\) has a prompt cache/);
  const cli = assertThrows(() => parseRecipe(`{ model: { id: "qwen3-30b-a3b", quant: "q8_0" }, runtime: { name: "llama.cpp", program: "cli" }, promptCache: { dir: "/s" } }`, "c.json5"), RecipeSchemaError);
  assertMatch(cli.message, /promptCache: the prompt cache is llama-server's/);
});

// Issue 21 item 2: `spillway plan RECIPE --contexts ...` (table and --json), run as a user runs it.
import { test } from "node:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assert, assertEquals, assertGreater, assertMatch, assertThrows } from "./_assert.ts";
import { getProfile } from "../engine/hardware/profiles.ts";
import { type ContextTable, parseContexts, planContexts } from "../engine/planner/contexts.ts";
import { modelInfoFromShape } from "../engine/planner/from_shape.ts";
import { plan, type PlanRecipe } from "../engine/planner/plan.ts";
import { runCli } from "./_spillway_cli.ts";

test("parse_contexts: k and m suffixes, sorted, duplicates dropped, bad parts named", () => {
  assertEquals(parseContexts("32k, 4k,4096,1m"), [4096, 32768, 1048576]);
  assertMatch(assertThrows(() => parseContexts("4k,12q")).message, /"12q" is not a context length/);
  assertMatch(assertThrows(() => parseContexts(" , ")).message, /at least one/);
});

test("plan_contexts_longest_is_the_edge: the longest context fits and 256 tokens more does not", () => {
  const m = modelInfoFromShape("llama-3.1-8b", "q8_0");
  const base = getProfile("rtx-5070-12gb")!;
  // Little VRAM and host RAM: weights and cache together bound the context below the trained 128k.
  const hw = { ...base, gpu: { ...base.gpu!, freeVramBytes: 6 * 2 ** 30 }, host: { ...base.host, availableRamBytes: 8 * 2 ** 30 } };
  const r: PlanRecipe = {
    runtime: { name: "llama.cpp" },
    context: 4096,
    batch: 2048,
    workload: { objective: "chat", promptTokens: 512, generatedTokens: 512 },
    placement: { auto: true, kv: "auto", experts: "auto", cpuLayers: [] },
  };
  const t = planContexts(m, hw, r, [4096, 65536]);
  assert(t.longest !== null);
  assert(t.longest.context < t.searchedTo, `${t.longest.context} of ${t.searchedTo}`);
  const at = (c: number) => ({ ...r, context: c, workload: { objective: "custom" as const, promptTokens: c - 512, generatedTokens: 512 } });
  plan(m, hw, at(t.longest.context));
  assertThrows(() => plan(m, hw, at(t.longest!.context + 256)));
});

test("plan_contexts_cli: table per context, the longest fit, and the same figures in --json", () => {
  const dir = mkdtempSync(join(tmpdir(), "spillway-ctx-"));
  try {
    const file = join(dir, "r.json5");
    writeFileSync(file, `{ model: { id: "qwen3-30b-a3b", quant: "q8_0" }, runtime: "llama.cpp", hardware: "h200-12gib-free" }`);
    const r = runCli(["plan", file, "--contexts", "4k,32k,64k,128k"]);
    assertEquals(r.status, 0, r.stderr);
    const lines = r.stdout.split("\n");
    const row = (c: string) => lines.find((l) => l.startsWith(`${c} `)) ?? "";
    assertMatch(row("4k"), /^4k\s+3584\+512\s+ncmoe-\d+-none-ub\d+\s+f16 VRAM\s+[\d.]+\s+[\d.]+\s+\d+\s+[\d.]+\s+[\d.]+$/);
    // f16 at 32k: quantized attention costs more in decode than the experts it frees (measured, 2026-12-06-context).
    assertMatch(row("32k"), /^32k\s+32256\+512\s+ncmoe-\d+-none-ub\d+\s+f16 VRAM/);
    // 64k is beyond Qwen3-30B-A3B's trained 40960 tokens: planned, and marked.
    assertMatch(row("64k*"), /^64k\*\s+65024\+512/);
    assertMatch(r.stdout, /predicted by the cost model \(not measured\)/);
    assertMatch(r.stdout, /longest context that fits: 40960 tokens \(.*\), the model's trained context \(40960\)/);

    const j = runCli(["plan", file, "--contexts", "4k,32k,64k,128k", "--json"]);
    assertEquals(j.status, 0, j.stderr);
    const t = JSON.parse(j.stdout) as ContextTable & { recipe: string; notes: string[] };
    assertEquals(t.rows.map((x) => [x.context, x.kvType, x.fits]), [[4096, "f16", true], [32768, "f16", true], [65536, "f16", true], [131072, "q8_0", true]]);
    assertEquals(t.longest?.context, 40960);
    assertEquals(t.recipe, file);
    // The table shows what the JSON holds.
    for (const x of t.rows) {
      const cells = row(x.context > 40960 ? `${x.context / 1024}k*` : `${x.context / 1024}k`).split(/\s+/);
      assertEquals(cells[2], x.chosen);
      assertEquals(cells[8], x.decodeTps! >= 100 ? x.decodeTps!.toFixed(0) : x.decodeTps!.toFixed(1));
    }
    // Decode slows as the context grows (attention reads the whole cache per token).
    assertGreater(t.rows[0].decodeTps!, t.rows[1].decodeTps!);
    assertGreater(t.rows[1].decodeTps!, t.rows[2].decodeTps!);
    assertGreater(t.rows[2].decodeTps!, t.rows[3].decodeTps!);

    const bad = runCli(["plan", file, "--contexts", "4k,lots"]);
    assertEquals(bad.status, 2);
    assertMatch(bad.stderr, /spillway plan: --contexts: "lots" is not a context length/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

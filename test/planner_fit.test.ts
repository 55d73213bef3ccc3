import { test } from "node:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assert, assertEquals, assertLess, assertMatch, assertThrows } from "./_assert.ts";
import { PlanError } from "../core/errors.ts";
import { getProfile } from "../engine/hardware/profiles.ts";
import { readModel } from "../engine/model/mod.ts";
import { synthesize } from "../engine/model/synth.ts";
import { modelInfoFromShape } from "../engine/planner/from_shape.ts";
import { planCommand } from "../commands/plan.ts";
import { plan, type PlanRecipe } from "../engine/planner/plan.ts";
import { DEFAULT_RESERVE } from "../engine/planner/memory.ts";
import type { Plan } from "../core/types.ts";

function recipe(runtime: string, over: Partial<PlanRecipe> = {}): PlanRecipe {
  return {
    runtime: { name: runtime as PlanRecipe["runtime"]["name"] },
    context: 8192,
    batch: 2048,
    workload: { objective: "chat", promptTokens: 512, generatedTokens: 512 },
    placement: { auto: true, kv: "auto", experts: "auto", cpuLayers: [] },
    ...over,
  };
}

test("every fitting candidate stays within free VRAM minus the reserve and 90% of host RAM", () => {
  const models = [
    modelInfoFromShape("qwen3-30b-a3b", "q8_0"),
    modelInfoFromShape("glm-4.7-flash", "q8_0"),
    modelInfoFromShape("llama-3.1-8b", "q8_0"),
    modelInfoFromShape("llama-3.1-70b", "q4_0"),
  ];
  for (const hwName of ["rtx-5070-12gb", "rtx-4090-24gb", "h200-12gib-free"]) {
    const hw = getProfile(hwName)!;
    for (const m of models) {
      for (const runtime of ["llama.cpp", "vllm", "command"]) {
        const p = plan(m, hw, recipe(runtime));
        for (const c of p.candidates.filter((x) => x.fits)) {
          assert(c.memory.vram + DEFAULT_RESERVE <= hw.gpu!.freeVramBytes, `${hwName} ${m.architecture} ${c.id}: ${c.memory.vram}`);
          assert(c.memory.host_cpu + c.memory.host_mapped <= hw.host.availableRamBytes * 0.9, `${hwName} ${c.id} host`);
        }
        assert(p.candidates.find((c) => c.id === p.chosen)!.fits);
      }
    }
  }
});

test("the glm-4.7-flash recipe on a 12 GB card keeps dense tensors and the KV cache in VRAM", async () => {
  let text = "";
  const rc = await planCommand("recipes/glm-4.7-flash-q8_0.json5", { json: true, out: (t) => (text += t) });
  assertEquals(rc, 0);
  const p = JSON.parse(text) as Plan;
  assertEquals(p.hardware.name, "rtx-5070-12gb");
  assert(p.notes!.some((n) => /planned from the known shape glm-4\.7-flash/.test(n)) || !p.notes!.some((n) => /absent/.test(n)));
  const chosen = p.candidates.find((c) => c.id === p.chosen)!;
  for (const cls of ["attention", "ffn_dense", "output", "kv_cache", "compute"]) {
    for (const pl of chosen.placements.filter((x) => x.class === cls)) assertEquals(pl.tier, "vram", `${cls} ${JSON.stringify(pl.layers)}`);
  }
  assert(chosen.placements.some((x) => x.class === "ffn_experts" && x.tier !== "vram"));
  assert(p.candidates.length >= 5);
  for (const c of p.candidates) assert(c.predicted.decodeTps > 0 && c.predicted.prefillTps > 0, c.id);
  assertMatch(p.reason, /dense tensors .* and the KV cache .* in VRAM/);

  let table = "";
  assertEquals(await planCommand("recipes/glm-4.7-flash-q8_0.json5", { out: (t) => (table += t + "\n") }), 0);
  assertMatch(table, new RegExp(`\\*\\s+${p.chosen.replace(/[+.]/g, "\\$&")}\\s`));
  assertMatch(table, /launch:\n {2}(llama-server .*-ncmoe \d+|\(no runtime adapter)/);
});

test("runtime capabilities decide the candidates", () => {
  const m = modelInfoFromShape("qwen3-30b-a3b", "q8_0");
  const hw = getProfile("rtx-5070-12gb")!;
  const strategies = (rt: string): Set<string> => new Set(plan(m, hw, recipe(rt)).candidates.map((c) => c.strategy));
  assertEquals(strategies("command"), new Set(["all_vram", "zero_copy"]));
  assert(strategies("vllm").has("native_offload"));
  assert(!strategies("vllm").has("experts_cpu"));
  assert(strategies("llama.cpp").has("experts_cpu") && strategies("llama.cpp").has("layers_cpu"));
  const nl = strategies("node-llama-cpp");
  assert(!nl.has("zero_copy") && nl.has("layers_cpu"));
  // Constraints: experts forced to the CPU, KV forced to the host.
  const forced = plan(m, hw, recipe("llama.cpp", { placement: { auto: false, kv: "host", experts: "cpu", cpuLayers: [] } }));
  for (const c of forced.candidates) {
    assertEquals(c.settings.kvOnHost, true);
    assertEquals(c.settings.cpuMoeLayers, 48);
  }
});

test("no GPU plans CPU-only; nothing fitting is a PlanError", () => {
  const tiny = modelInfoFromShape("tiny-moe", "q8_0");
  const p = plan(tiny, getProfile("cpu-only")!, recipe("node-llama-cpp", { context: 256 }));
  assertEquals(p.chosen, "cpu-only-ub512");
  assertEquals(p.settings.gpuLayers, 0);
  const big = modelInfoFromShape("llama-3.1-70b", "q8_0");
  const hw = { ...getProfile("rtx-5070-12gb")!, host: { ...getProfile("rtx-5070-12gb")!.host, availableRamBytes: 16 * 2 ** 30 } };
  assertThrows(() => plan(big, hw, recipe("llama.cpp")), PlanError, "no placement");
});

test("planning a sparse 30 GB synthetic GGUF of the 30B-A3B shape takes under a second", async () => {
  const dir = mkdtempSync(join(tmpdir(), "spillway-plan-"));
  try {
    const path = join(dir, "qwen3moe-30b-a3b-q8_0.gguf");
    await synthesize({ shape: "qwen3moe-30b-a3b", quant: "Q8_0", out: path, sparse: true });
    const t0 = performance.now();
    const m = await readModel(path);
    const p = plan(m, getProfile("rtx-5070-12gb")!, recipe("llama.cpp"));
    const ms = performance.now() - t0;
    assertLess(ms, 1000);
    assertEquals(p.model.bytes, modelInfoFromShape("qwen3-30b-a3b", "q8_0").tensorBytes);
    assert(p.model.bytes > 30 * 2 ** 30);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

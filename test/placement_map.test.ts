// Access-aware placement (engine/placement_map.ts): the allocations PyTorch makes for
// `model.to("cuda")`, which of them spill (embedding first, then layers from the last, never the
// head), and the shim placing a fake program's allocations by that map (fake GPU).
import { test } from "node:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writePlacementMap } from "../shim/placement.ts";
import { formatPlacementMap } from "../shim/placement.ts";
import { placementForTensors, tensorsFromConfig, tensorsFromHeader, torchAllocations } from "../engine/placement_map.ts";
import { assert, assertEquals, assertThrows } from "./_assert.ts";
import { MiB, ofOp, runProg } from "./shim_helpers.ts";

const GiB = 1024 * MiB;
const LLAMA_8B = { hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 8, vocab_size: 128256 };
// TinyLlama's widths with 4 layers: a 125 MiB embedding, 22 MiB FFN matrices, 8 MiB attention.
const TINY = { hidden_size: 2048, intermediate_size: 5632, num_hidden_layers: 4, num_attention_heads: 32, num_key_value_heads: 4, vocab_size: 32000 };

test("placement map: PyTorch's caching allocator gives big tensors their own allocation and packs small ones", () => {
  const allocs = torchAllocations(tensorsFromConfig(LLAMA_8B, 2));
  const big = allocs.filter((a) => a.size >= 32 * MiB);
  // embedding, 32 x (q, o, gate, up, down), head
  assertEquals(big.length, 1 + 32 * 5 + 1);
  assertEquals(big[0]!.tensors.map((t) => t.name), ["model.embed_tokens.weight"]);
  assertEquals(big[0]!.size, 128256 * 4096 * 2);
  assertEquals(big.at(-1)!.tensors.map((t) => t.name), ["lm_head.weight"]);
  // k and v (8 MiB each) share one 20 MiB segment per layer.
  const kv = allocs.filter((a) => a.tensors.some((t) => t.name === "model.layers.0.self_attn.k_proj.weight"))[0]!;
  assertEquals([kv.size, kv.tensors.map((t) => t.name.split(".").at(-2))], [20 * MiB, ["k_proj", "v_proj"]]);
});

test("placement map: the embedding spills first, then layers from the last; the head stays; the roofline counts bytes read", () => {
  const tensors = tensorsFromConfig(LLAMA_8B, 2);
  const allocated = torchAllocations(tensors).reduce((s, a) => s + a.size, 0);
  const p = placementForTensors(tensors, { vramForWeights: allocated - 4 * GiB, minSpill: 32 * MiB });
  const host = p.allocations.filter((a) => a.place === "host");
  assertEquals(host[0]!.tensors, ["model.embed_tokens.weight"]);
  assertEquals(p.rules[0], { min: 32 * MiB, nth: 0, action: "host", comment: "model.embed_tokens.weight" });
  const layers = new Set(host.slice(1).map((a) => a.layer));
  assertEquals([...layers].sort((a, b) => a! - b!), [24, 25, 26, 27, 28, 29, 30, 31]);
  assert(p.allocations.find((a) => a.tensors.includes("lm_head.weight"))!.place === "auto", "head is never spilled while layers are left");
  assert(p.hostBytes >= 4 * GiB && p.hostBytes < 4 * GiB + 500 * MiB, `host bytes ${p.hostBytes}`);
  // The embedding adds ~1 GB to host memory but only one row (8 KiB) per token to the traffic.
  const embedding = 128256 * 4096 * 2;
  assertEquals(p.hostReadPerToken, p.hostBytes - embedding + 4096 * 2);
  assertEquals(p.vramBytes + p.hostBytes, allocated);
  // The other order puts the first layers in host memory instead.
  const first = placementForTensors(tensors, { vramForWeights: allocated - 4 * GiB, minSpill: 32 * MiB, layerOrder: "first" });
  assertEquals(Math.max(...first.allocations.filter((a) => a.place === "host" && a.layer !== null).map((a) => a.layer!)), 7);
  assert(formatPlacementMap(p.rules).includes("nth=0 min=33554432 host  # model.embed_tokens.weight"));
});

test("placement map: a tied embedding is the output head and is not spilled first; header order does not matter", () => {
  const tied = tensorsFromConfig({ ...TINY, tie_word_embeddings: true }, 2);
  const p = placementForTensors(tied, { vramForWeights: 200 * MiB, minSpill: 16 * MiB });
  assertEquals(p.allocations[0]!.place, "auto");
  // A safetensors header lists keys sorted by name: the module order comes back.
  const sorted = [
    { name: "model.layers.1.mlp.down_proj.weight", dtype: "BF16", shape: [8, 16] },
    { name: "lm_head.weight", dtype: "BF16", shape: [100, 8] },
    { name: "model.layers.0.self_attn.q_proj.weight", dtype: "BF16", shape: [8, 8] },
    { name: "model.embed_tokens.weight", dtype: "BF16", shape: [100, 8] },
    { name: "model.norm.weight", dtype: "BF16", shape: [8] },
  ];
  const t = tensorsFromHeader(sorted, "float32");
  assertEquals(t.map((x) => x.name.split(".").slice(-3).join(".")), [
    "model.embed_tokens.weight", "self_attn.q_proj.weight", "mlp.down_proj.weight", "model.norm.weight", "lm_head.weight",
  ]);
  assertEquals([t[0]!.bytes, t[0]!.readPerToken], [100 * 8 * 4, 8 * 4]);
  assertThrows(() => tensorsFromConfig({ ...TINY, hidden_size: 0 }, 2), RangeError, "hidden_size");
});

test("placement map under the shim (fake GPU): model.to('cuda')-ordered allocations put the embedding in host memory before any layer", async () => {
  const tensors = tensorsFromConfig(TINY, 2);
  const allocs = torchAllocations(tensors);
  const budget = 400 * MiB;
  const plan = placementForTensors(tensors, { vramForWeights: budget, minSpill: 16 * MiB });
  // The program: one cudaMalloc per allocation PyTorch makes, in order, the shim's state after each.
  const ops = ["init", ...allocs.flatMap((a) => [`a:rt:${a.size}`, "s"])];
  const env = { FAKECUDA_VRAM: "1G", SPILLWAY_VRAM_BUDGET: `${budget}`, SPILLWAY_MIN_SPILL: "16M", SPILLWAY_HOST_LIMIT: "2G" };
  const dir = mkdtempSync(join(tmpdir(), "spillway-access-"));
  try {
    const map = writePlacementMap(join(dir, "map"), plan.rules);
    const where = async (withMap: boolean): Promise<string[]> => {
      const r = await runProg(ops, { env: withMap ? { ...env, SPILLWAY_PLACEMENT: map } : env });
      assertEquals(r.status, 0, r.stderr);
      assertEquals(ofOp(r, "a").map((l) => l.r), allocs.map(() => 0));
      const host = ofOp(r, "s").map((s) => s.fake.hostVmm as number);
      return host.map((h, i) => (h - (i ? host[i - 1]! : 0) === allocs[i]!.size ? "host" : h === (i ? host[i - 1] : 0) ? "vram" : "split"));
    };
    const placed = await where(true);
    const name = (i: number) => allocs[i]!.tensors[0]!.name;
    const firstHost = placed.indexOf("host");
    assertEquals(name(firstHost), "model.embed_tokens.weight");
    const hostNames = placed.flatMap((p, i) => (p === "host" ? [name(i)] : []));
    // The embedding and the last layer's allocations (q+o segment, gate, up, down); everything else in VRAM.
    assertEquals(hostNames, [
      "model.embed_tokens.weight", "model.layers.3.self_attn.q_proj.weight", "model.layers.3.mlp.gate_proj.weight",
      "model.layers.3.mlp.up_proj.weight", "model.layers.3.mlp.down_proj.weight",
    ]);
    assertEquals(placed[allocs.length - 1], "vram", "the output head stays in VRAM");
    assertEquals(plan.hostBytes, allocs.filter((_, i) => placed[i] === "host").reduce((s, a) => s + a.size, 0));
    // Without the map the shim fills VRAM in allocation order: the embedding stays, the head spills.
    const plain = await where(false);
    assertEquals(plain[0], "vram");
    assert(plain[allocs.length - 1] !== "vram", "without the map the head is spilled");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("planner: a shim run of a transformers model spills the embedding first and predicts the gain from bytes read per token", async () => {
  const { planContext } = await import("../engine/planner/plan.ts");
  const { evaluate } = await import("../engine/planner/candidates.ts");
  const { modelInfoFromShape } = await import("../engine/planner/from_shape.ts");
  const { getProfile } = await import("../engine/hardware/profiles.ts");
  const model = modelInfoFromShape("llama-8b", "bf16", "llama-8b-bf16.gguf");
  const recipe = {
    runtime: { name: "transformers" as const }, context: 1024, batch: 512, threads: 16,
    workload: { objective: "custom" as const, promptTokens: 512, generatedTokens: 64 },
    placement: { auto: true, kv: "auto" as const, experts: "auto" as const, cpuLayers: [] },
  };
  const ctx = planContext(model, getProfile("h200-12gib-free")!, recipe);
  const access = evaluate(ctx, { kind: "zero_copy", ubatch: 512 });
  const tierOf = (g: string) => access.layout.units.filter((u) => u.group === g).map((u) => u.tier);
  assertEquals(tierOf("embedding"), ["host_mapped"]);
  assertEquals(tierOf("output"), ["vram"]);
  // Decode time over PCIe counts the bytes read per token: the embedding's ~1 GB in host memory
  // costs one row per token, so the host time is that of the layers' bytes alone.
  const hostUnits = access.layout.units.filter((u) => u.tier === "host_mapped");
  const emb = hostUnits.find((u) => u.group === "embedding")!.bytes;
  const layers = hostUnits.filter((u) => u.group !== "embedding").reduce((s, u) => s + u.bytes, 0);
  assert(emb > 0.9e9 && layers > 1e9, `${emb} ${layers}`);
  const bw = ctx.hw.gpu!.zeroCopyGBps * 0.9 * 1e9;
  const t = access.prediction.decode.host_mapped;
  assert(Math.abs(t - layers / bw) < 0.01 * t, `host time ${t}, layers alone ${layers / bw}, with the embedding ${(layers + emb) / bw}`);
});

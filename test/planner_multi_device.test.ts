/**
 * Multi-device plans (issue 19): layer splits over described 2- and 4-GPU machines and over a GPU
 * plus rpc-server nodes, the network terms of the cost model, and the runtime flags they give.
 */
import { test } from "node:test";
import { assert, assertAlmostEquals, assertEquals, assertGreater, assertMatch } from "./_assert.ts";
import type { DeviceInfo, HardwareProfile, Plan } from "../core/types.ts";
import { getProfile } from "../engine/hardware/profiles.ts";
import { describedGpuDevices, rpcDevices, withDevices } from "../engine/hardware/nodes.ts";
import { modelInfoFromShape } from "../engine/planner/from_shape.ts";
import { plan, planContext, type PlanRecipe } from "../engine/planner/plan.ts";
import { evaluateSplit, splitCounts } from "../engine/planner/multi_device.ts";
import { DEFAULT_RESERVE } from "../engine/planner/memory.ts";
import { llamaCppLaunchSpec } from "../engine/runtimes/llamacpp.ts";
import { vllmAdapter } from "../engine/runtimes/vllm.ts";

const GiB = 2 ** 30;

function recipe(runtime: "llama.cpp" | "vllm", over: Partial<PlanRecipe> = {}): PlanRecipe {
  return {
    runtime: { name: runtime },
    context: 8192,
    batch: 2048,
    ubatch: 512,
    workload: { objective: "chat", promptTokens: 512, generatedTokens: 512 },
    placement: { auto: true, kv: "auto", experts: "auto", cpuLayers: [] },
    ...over,
  };
}

/** A machine with `n` identical GPUs described inline (as a recipe's hardware.gpus does). */
function gpus(n: number, name: string, vramGiB: number, vramGBps: number): HardwareProfile {
  const base = getProfile("rtx-4090-24gb")!;
  const described = describedGpuDevices(Array.from({ length: n }, () => ({ name, vramBytes: vramGiB * GiB, vramGBps, fp16Tflops: 150 })));
  const hw: HardwareProfile = {
    ...base,
    name: `${n}x ${name}`,
    gpu: { ...base.gpu!, name, vramBytes: vramGiB * GiB, freeVramBytes: vramGiB * GiB, vramGBps, fp16Tflops: 150 },
  };
  return withDevices(hw, described, []);
}

/** Every fitting split covers each block once, in order, and stays within each device's free memory. */
function checkSplits(p: Plan, layers: number): void {
  for (const c of p.candidates.filter((x) => x.fits && x.strategy === "split" && x.settings.split)) {
    const ranges = c.devices!.filter((d) => d.layers).map((d) => d.layers!);
    let next = 0;
    for (const [a, b] of ranges) {
      assertEquals(a, next, `${c.id}: blocks must be contiguous`);
      next = b + 1;
    }
    assertEquals(next, layers, `${c.id}: every block placed`);
    for (const d of c.devices!.filter((x) => x.device !== "cpu")) {
      const reserve = d.device.startsWith("gpu") || d.name !== "CPU" ? DEFAULT_RESERVE : 0;
      assert(d.totalBytes + reserve <= d.freeBytes, `${c.id} ${d.device}: ${d.totalBytes} + reserve > ${d.freeBytes}`);
    }
    const cpuBlocks = c.devices!.find((d) => d.device === "cpu")?.layers;
    const onDevices = layers - (cpuBlocks ? cpuBlocks[1] + 1 : 0);
    assertEquals(c.settings.gpuLayers, onDevices + 1, `${c.id}: -ngl counts the device blocks and the output head`);
    assertEquals(c.settings.split!.tensorSplit.reduce((a, b) => a + b, 0), onDevices + 1, `${c.id}: -ts sums to -ngl`);
  }
}

test("two 12 GiB GPUs: a model too big for one is split over both, all blocks in VRAM, faster than one GPU + host", () => {
  const m = modelInfoFromShape("llama-3.1-8b", "f16"); // ~15 GiB: fits neither card alone
  const hw = gpus(2, "RTX 4070", 12, 504);
  const p = plan(m, hw, recipe("llama.cpp"));
  checkSplits(p, m.layerCount);
  const c = p.candidates.find((x) => x.id === p.chosen)!;
  assertEquals(c.strategy, "split");
  assertEquals(c.devices!.map((d) => d.device), ["gpu0", "gpu1"]);
  assert(!c.devices!.some((d) => d.device === "cpu"), "no block left on the CPU");
  const single = p.candidates.find((x) => x.fits && x.strategy !== "split")!;
  assertGreater(c.predicted.decodeTps, single.predicted.decodeTps * 2, "both cards' bandwidth beats reading blocks from host RAM");
  assertMatch(p.reason, /best single-device plan/);
  const argv = llamaCppLaunchSpec(p, { program: "server" }).argv;
  const ts = argv[argv.indexOf("-ts") + 1]!.split(",").map(Number);
  assertEquals(ts.length, 2);
  assertEquals(ts[0]! + ts[1]!, m.layerCount + 1);
  assertEquals(argv[argv.indexOf("-sm") + 1], "layer");
  assert(!argv.includes("--rpc"), "local GPUs need no rpc-server");
});

test("a model that fits one GPU stays on one GPU: a split only adds hand-offs", () => {
  const m = modelInfoFromShape("llama-3.1-8b", "q4_0");
  const p = plan(m, gpus(2, "RTX 4090", 24, 1008), recipe("llama.cpp"));
  assert(p.candidates.some((c) => c.strategy === "split" && c.fits), "the split was considered");
  assertEquals(p.candidates.find((c) => c.id === p.chosen)!.strategy, "all_vram");
});

test("four 24 GiB GPUs: llama-3.1-70b q4_0 over all four; vLLM gets -tp 4", () => {
  const m = modelInfoFromShape("llama-3.1-70b", "q4_0");
  const hw = gpus(4, "RTX 4090", 24, 1008);
  const p = plan(m, hw, recipe("llama.cpp"));
  checkSplits(p, m.layerCount);
  const c = p.candidates.find((x) => x.id === p.chosen)!;
  assertEquals(c.strategy, "split");
  assertEquals(c.devices!.filter((d) => d.layers).length, 2, "~37 GiB of weights: the fastest-first fill needs two of the four 24 GiB cards");
  assert(!c.devices!.some((d) => d.device === "cpu"));
  const v = plan(m, hw, recipe("vllm"));
  const tp = v.candidates.find((x) => x.id === "tp4-pp1")!;
  assert(tp.fits, tp.misfit);
  assertEquals(v.chosen, "tp4-pp1");
  const argv = vllmAdapter.toLaunchSpec(v, null).argv;
  assertEquals(argv[argv.indexOf("--tensor-parallel-size") + 1], "4");
  assert(!argv.includes("--pipeline-parallel-size"), "pp 1 is the default");
});

test("vLLM on 6 GPUs: tensor parallel over a power of two dividing the heads, pipeline over the rest", () => {
  const m = modelInfoFromShape("llama-3.1-8b", "f16"); // 32 heads
  const hw = gpus(8, "L4", 24, 300);
  hw.devices = hw.devices!.slice(0, 6);
  const p = plan(m, hw, recipe("vllm"));
  const c = p.candidates.find((x) => x.strategy === "split")!;
  assertEquals([c.settings.tensorParallel, c.settings.pipelineParallel], [4, 1]);
});

/** One 12 GiB GPU here and two rpc-servers, each with a 12 GiB GPU, over a link of `rttMs`. */
function gpuPlusNodes(rttMs: number, linkGBps = 1.25): HardwareProfile {
  const local = gpus(1, "RTX 4070", 12, 504);
  const rpc = rpcDevices([
    { rpc: "10.0.0.2:50052", rttMs, linkGBps, devices: [{ kind: "gpu", name: "RTX 3080", memoryBytes: 12 * GiB }] },
    { rpc: "10.0.0.3:50052", rttMs, linkGBps, devices: [{ kind: "gpu", name: "RTX 3080", memoryBytes: 12 * GiB }] },
  ]);
  return withDevices(local, describedGpuDevices([{ name: "RTX 4070", vramBytes: 12 * GiB, vramGBps: 504, fp16Tflops: 150 }]), rpc);
}

test("one GPU + two rpc nodes: rpc devices first in llama.cpp's order, --rpc lists both servers", () => {
  const m = modelInfoFromShape("llama-3.1-8b", "f16");
  const p = plan(m, gpuPlusNodes(0.2), recipe("llama.cpp"));
  checkSplits(p, m.layerCount);
  const c = p.candidates.find((x) => x.id === p.chosen)!;
  assertEquals(c.strategy, "split");
  assertEquals(c.settings.split!.devices, ["rpc0", "rpc1", "gpu0"]);
  const argv = llamaCppLaunchSpec(p, null).argv;
  assertEquals(argv[argv.indexOf("--rpc") + 1], "10.0.0.2:50052,10.0.0.3:50052");
});

test("decode pays one hand-off per network boundary per token, prefill one per micro-batch; weights never", () => {
  const m = modelInfoFromShape("llama-3.1-8b", "f16");
  const r = recipe("llama.cpp");
  const at = (rtt: number) => {
    const hw = gpuPlusNodes(rtt);
    const ctx = planContext(m, hw, r);
    // rpc0 (first 16 blocks) then gpu0 (the rest): embedding(CPU) -> rpc0 -> gpu0 -> logits here.
    const devs = [hw.devices![0]!, hw.devices![2]!] as DeviceInfo[];
    const spec = { devices: devs, counts: [16, m.layerCount - 16], cpuBlocks: 0, ubatch: 512, rule: "fill" as const };
    return evaluateSplit(ctx, spec).prediction;
  };
  const a = at(0.2);
  const b = at(10.2);
  const perToken = 1 / b.decodeTps - 1 / a.decodeTps;
  // Network hops per token: CPU -> rpc0, rpc0 -> gpu0; plus rpc0's graph round trip: 3 x 10 ms.
  assertAlmostEquals(perToken, 3 * 0.010, 1e-6);
  const prefillA = 512 / a.prefillTps;
  const prefillB = 512 / b.prefillTps;
  // One micro-batch of 512 tokens: two hops.
  assertAlmostEquals(prefillB - prefillA, 2 * 0.010, 1e-6);
});

test("a slow network turns the planner from a split to one GPU with host offload", () => {
  const m = modelInfoFromShape("llama-3.1-8b", "q8_0"); // ~8 GiB: fits the 12 GiB card with a little offload at 32k context
  const r = recipe("llama.cpp", { context: 32768 });
  const fast = plan(m, gpuPlusNodes(0.05, 10), r);
  const slow = plan(m, gpuPlusNodes(80, 0.01), r);
  assertEquals(fast.candidates.find((c) => c.id === fast.chosen)!.strategy, "split");
  assert(slow.candidates.find((c) => c.id === slow.chosen)!.strategy !== "split", slow.chosen);
});

test("CPU-only host + two CPU rpc-servers: blocks split over the servers and this host's CPU", () => {
  const base = getProfile("cpu-only")!;
  const hw = withDevices({ ...base, gpu: null }, [], rpcDevices([
    { rpc: "127.0.0.1:50052", devices: [{ kind: "cpu", memoryBytes: 2 * GiB }] },
    { rpc: "127.0.0.1:50053", devices: [{ kind: "cpu", memoryBytes: 2 * GiB }] },
  ]));
  const m = modelInfoFromShape("llama-3.1-8b", "q4_0");
  const ctx = planContext(m, hw, recipe("llama.cpp", { context: 512 }));
  const spec = splitCounts(ctx, hw.devices!, 512, "even");
  assertGreater(spec.cpuBlocks, 0, "what the small servers cannot hold stays here");
  const e = evaluateSplit(ctx, spec);
  assertEquals(e.candidate.settings.split!.rpc, ["127.0.0.1:50052", "127.0.0.1:50053"]);
  assertEquals(e.candidate.devices![0]!.device, "cpu");
});

test("MoE over two 12 GiB GPUs: every block's attention on a card, the first blocks' experts on this host (per-device -ncmoe)", () => {
  const m = modelInfoFromShape("qwen3-30b-a3b", "q8_0"); // ~30 GiB: no two 12 GiB cards hold it whole
  const hw = gpus(2, "RTX 4070", 12, 504);
  const p = plan(m, hw, recipe("llama.cpp"));
  checkSplits(p, m.layerCount);
  const c = p.candidates.find((x) => /^split-gpu0\+gpu1-ncmoe\d+-/.test(x.id))!;
  assert(c, p.candidates.map((x) => x.id).join(" "));
  assert(c.fits, c.misfit);
  assert(!c.devices!.some((d) => d.device === "cpu"), "no whole block on the CPU: only experts");
  const n = Number(/ncmoe(\d+)/.exec(c.id)![1]);
  assert(n > 0 && n < m.layerCount, `experts of ${n} blocks on the host`);
  // -ot sends exactly the first n blocks' experts to the CPU; the rest stay on the cards.
  const blocks = Array.from({ length: n }, (_, i) => i).join("|");
  assertEquals(c.settings.overrideTensors, [{ pattern: `blk\\.(${blocks})\\.ffn_(up|down|gate|gate_up)_exps`, device: "CPU" }]);
  const experts = (from: number, to: number) =>
    m.tensors.filter((t) => t.class === "ffn_experts" && t.layer! >= from && t.layer! < to).reduce((a, t) => a + t.bytes, 0);
  assertGreater(c.memory.host_cpu, experts(0, n));
  const onCards = c.devices!.reduce((a, d) => a + d.weightBytes, 0);
  assertGreater(onCards, experts(n, m.layerCount), "the later blocks' experts are on the cards");
  // Fewer experts on the CPU than the one-GPU -ncmoe plan: faster decode.
  const single = p.candidates.find((x) => x.fits && x.strategy === "experts_cpu")!;
  assertGreater(c.predicted.decodeTps, single.predicted.decodeTps);
  const argv = llamaCppLaunchSpec({ ...p, settings: c.settings }, null).argv;
  assert(argv.includes("-ot") && argv.includes("-ts") && argv[argv.indexOf("-lm") + 1] === "none", argv.join(" "));
});

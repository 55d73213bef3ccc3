// Issue 22: the hybrid strategy in the planner (engine/planner/hybrid.ts), the llama.cpp adapter's
// launch of the patched build, the cache key shared with runtimes/llama.cpp/build.sh, and the MoE
// blocks the split runs in.
import { test } from "node:test";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assert, assertEquals, assertGreater, assertLess, assertMatch, assertStringIncludes } from "./_assert.ts";
import type { HardwareProfile, Measured, ModelInfo, TensorInfo } from "../core/types.ts";
import { getProfile } from "../engine/hardware/profiles.ts";
import { concurrentMeasured } from "../engine/hardware/measure/profile.ts";
import { readConcurrentJson } from "../engine/hardware/measure/concurrent.ts";
import { modelInfoFromShape } from "../engine/planner/from_shape.ts";
import { plan, type PlanRecipe } from "../engine/planner/plan.ts";
import { formatPlan } from "../engine/planner/format.ts";
import { DEFAULT_CONSTANTS } from "../engine/planner/cost.ts";
import { blockRanges, HYBRID_CONSTANTS, hybridCopyRates, hybridRates, hybridThreads } from "../engine/planner/hybrid.ts";
import { hybridBlocksFor } from "../engine/planner/capabilities.ts";
import { hybridExpertBlocks } from "../engine/runtimes/llamacpp_hybrid_blocks.ts";
import { llamaCppLaunchSpec } from "../engine/runtimes/llamacpp.ts";
import { HYBRID_FRACTION_ENV, HYBRID_READ_ENV, hybridBuild, hybridBuildHint, hybridKey } from "../engine/runtimes/llamacpp_hybrid.ts";
import { launch } from "../engine/launch/mod.ts";
import { plannedFlags } from "../bench/harness/runner.ts";
import { RuntimeMissingError } from "../core/errors.ts";

const model = modelInfoFromShape("qwen3-30b-a3b", "q8_0", "qwen3moe-30b-a3b-q8_0.gguf");
const m = (median: number): Measured => ({ min: median, median, max: median, unit: "GB/s" });

/** The reference machine at 12 GiB free, with the concurrent figure of shared/gpu/NOTES.md (16 threads). */
function withConcurrent(base: HardwareProfile, cpu = 78.2, gpu = 51.05, cpuAlone = 84.5, gpuAlone = 51.4): HardwareProfile {
  return {
    ...base,
    measured: {
      ...(base.measured ?? {}),
      concurrentCpuAloneGBps: m(cpuAlone),
      concurrentGpuAloneGBps: m(gpuAlone),
      concurrentCpuGBps: m(cpu),
      concurrentGpuGBps: m(gpu),
    },
  };
}

/** `p` with a committed run's concurrent probe (concurrent.json) as `spillway bench` records it. */
function withProbe(p: HardwareProfile, file: string): HardwareProfile {
  return { ...p, measured: { ...(p.measured ?? {}), ...concurrentMeasured(readConcurrentJson(readFileSync(file, "utf8"))) } };
}

function recipe(promptTokens: number, generatedTokens: number): PlanRecipe {
  return {
    runtime: { name: "llama.cpp" },
    context: promptTokens + generatedTokens,
    batch: 2048,
    threads: 16,
    workload: { objective: "custom", promptTokens, generatedTokens },
    placement: { auto: true, kv: "auto", experts: "auto", cpuLayers: [] },
  };
}

const base = getProfile("h200-12gib-free")!;

test("hybrid rates: none without the concurrent figure; the GPU share balances the two paths", () => {
  assertEquals(hybridRates(base), null);
  const r = hybridRates(withConcurrent(base))!;
  // CPU: 69 GB/s profile rate keeping 78.2/84.5; GPU: 51.3 * zeroCopyEfficiency * kernelEfficiency keeping 51.05/51.4.
  assert(Math.abs(r.cpuGBps - 69 * (78.2 / 84.5)) < 0.01, String(r.cpuGBps));
  assert(Math.abs(r.gpuGBps - 51.3 * 0.9 * HYBRID_CONSTANTS.kernelEfficiency * (51.05 / 51.4)) < 0.01, String(r.gpuGBps));
  assert(Math.abs(r.balance - r.gpuGBps / (r.cpuGBps + r.gpuGBps)) < 1e-12 && r.balance > 0.41 && r.balance < 0.42, String(r.balance));
  assertStringIncludes(r.source, "CPU keeps 93%");
});

test("hybrid rates: the probe's Q8_0 mat-vec figure (llama.cpp's own load pattern) is the GPU part's rate where measured", () => {
  const plain = hybridRates(withConcurrent(base))!;
  const slowKernels = withConcurrent(base);
  slowKernels.measured!.concurrentGpuQ8AloneGBps = m(23);
  const r = hybridRates(slowKernels)!;
  // 23 GB/s alone, keeping 51.05/51.4 while the CPU reads: not the 0.9 * 51.3 of the zero-copy tier.
  assert(Math.abs(r.gpuGBps - 23 * (51.05 / 51.4)) < 1e-9, String(r.gpuGBps));
  assertEquals(r.cpuGBps, plain.cpuGBps);
  assert(r.balance < plain.balance - 0.1, `${r.balance} vs ${plain.balance}`);
  assertStringIncludes(r.source, "llama.cpp's Q8_0 kernels read host memory at 23.0 GB/s (45% of a plain read)");
  // On the 30B at 12 GiB free such a machine gets a smaller GPU share than 3 of 8.
  const p = plan(model, slowKernels, recipe(512, 512));
  const shares = p.candidates.filter((c) => c.strategy === "hybrid").map((c) => c.settings.hybridGpuFraction!);
  assert(shares.length > 0 && shares.every((f) => f < 0.375), String(shares));
  // ...and no hybrid wins there: the plan keeps the same placement stock (docs/planner.md).
  assertEquals(p.chosen, "ncmoe-33-none-ub512");
  // Where llama.cpp's pattern reads near the link's rate, hybrid still wins.
  const fastKernels = withConcurrent(base);
  fastKernels.measured!.concurrentGpuQ8AloneGBps = m(46);
  assertMatch(plan(model, fastKernels, recipe(512, 512)).chosen, /^hybrid-33-ub512$/);
});

test("plan: the 30B-A3B shape at 12 GiB free with a measured profile chooses hybrid for decode and explains the split", () => {
  const p = plan(model, withConcurrent(base), recipe(512, 512));
  assertMatch(p.chosen, /^hybrid-\d+-ub\d+$/);
  const chosen = p.candidates.find((c) => c.id === p.chosen)!;
  assertEquals(chosen.strategy, "hybrid");
  assertEquals(chosen.settings.hybridGpuFraction, 0.375);
  assertEquals(chosen.settings.loadMode, "none");
  // Its base (the same -ncmoe, pinned) is a candidate too, with the same prefill and a slower decode.
  const stock = p.candidates.find((c) => c.id === `ncmoe-${chosen.settings.cpuMoeLayers}-none-ub${chosen.settings.ubatch}`)!;
  assertEquals(chosen.predicted.prefillTps, stock.predicted.prefillTps);
  assertGreater(chosen.predicted.decodeTps, stock.predicted.decodeTps * 1.05);
  assertEquals(chosen.memory, stock.memory);
  assertStringIncludes(chosen.label, "3 of its 8 read by the GPU over PCIe and 5 computed by the CPU at the same time");
  assertStringIncludes(p.reason, `Chose ${chosen.id}`);
  assert(p.notes!.some((n) => n.startsWith("hybrid split from measured rates")));
  assertStringIncludes(formatPlan(p), "hybrid split from measured rates");
});

test("plan: the overlap's measured loss (part of the shorter part stays on the token's path) lowers the hybrid prediction", () => {
  const decode = () => {
    const p = plan(model, withConcurrent(base), recipe(512, 512));
    return p.candidates.find((c) => c.id === "hybrid-33-ub512")!.predicted.decodeTps;
  };
  const measured = decode();
  const saved = HYBRID_CONSTANTS.overlapLoss;
  try {
    HYBRID_CONSTANTS.overlapLoss = 0;
    // A perfect overlap would predict a faster token (33 hybrid blocks of the 30B).
    assertGreater(decode(), measured * 1.1);
  } finally {
    HYBRID_CONSTANTS.overlapLoss = saved;
  }
  assertEquals(HYBRID_CONSTANTS.overlapLoss, 0.27);
});

test("plan: the GPU share is m of the model's k experts per token, the better of the two around the balance", () => {
  // GLM-4.7-Flash routes 4 experts per token: the share is a quarter step, never the machine's 0.40.
  const glm = modelInfoFromShape("glm-4.7-flash", "q8_0", "glm-4.7-flash-q8_0.gguf");
  const p = plan(glm, withConcurrent(base), recipe(512, 512));
  const hybrids = p.candidates.filter((c) => c.strategy === "hybrid");
  assert(hybrids.length > 0);
  for (const c of hybrids) {
    const f = c.settings.hybridGpuFraction!;
    assert(Number.isInteger(f * 4) && f > 0 && f < 1, String(f));
    assertMatch(c.label, new RegExp(`${f * 4} of its 4 read by the GPU`));
  }
  // The 30B shape (8 per token) at the same balance point takes 3 of 8 (0.375), not 4 of 8.
  const q = plan(model, withConcurrent(base), recipe(512, 512));
  assertEquals(new Set(q.candidates.filter((c) => c.strategy === "hybrid").map((c) => c.settings.hybridGpuFraction)), new Set([0.375]));
});

test("plan: no hybrid without the concurrent figure (a note says why), nor where it does not win", () => {
  const p = plan(model, base, recipe(512, 512));
  assert(!p.candidates.some((c) => c.strategy === "hybrid"));
  assert(p.notes!.some((n) => n.includes("no concurrent figure (run `spillway bench`)")));
  // A GPU whose zero-copy path is nearly useless: hybrid candidates exist but lose to stock.
  const slowPcie: HardwareProfile = withConcurrent({ ...base, gpu: { ...base.gpu!, zeroCopyGBps: 0.5 } }, 78.2, 0.5, 84.5, 0.5);
  const q = plan(model, slowPcie, recipe(512, 512));
  assert(q.candidates.some((c) => c.strategy === "hybrid"));
  assert(q.candidates.find((c) => c.id === q.chosen)!.strategy !== "hybrid", q.chosen);
  // A runtime that cannot run the patched build never gets it.
  const o = plan(model, withConcurrent(base), { ...recipe(512, 512), runtime: { name: "ollama" } });
  assert(!o.candidates.some((c) => c.strategy === "hybrid"));
});

/** withConcurrent plus the probe's copy passes: the copy engine's rate and the CPU's beside it. */
function withCopy(p: HardwareProfile, copy: number, cpuWithCopy: number, q8 = 23): HardwareProfile {
  const out = withConcurrent(p);
  out.measured!.concurrentGpuQ8AloneGBps = m(q8);
  out.measured!.concurrentCopyAloneGBps = m(copy + 1);
  out.measured!.concurrentCopyGBps = m(copy);
  out.measured!.concurrentCpuWithCopyGBps = m(cpuWithCopy);
  return out;
}

test("hybrid copy rates: none without the probe's copy passes; the copy engine's rate is the GPU part's, the CPU keeps its share beside it", () => {
  assertEquals(hybridCopyRates(withConcurrent(base)), null);
  const r = hybridCopyRates(withCopy(base, 50, 71))!;
  assertEquals(r.read, "copy");
  assertEquals(r.gpuGBps, 50);
  assert(Math.abs(r.cpuGBps - 69 * (71 / 84.5)) < 1e-9, String(r.cpuGBps));
  assert(Math.abs(r.balance - 50 / (50 + r.cpuGBps)) < 1e-12);
  assertStringIncludes(r.source, "copy engine moves 50.0 GB/s to VRAM while the CPU reads, the CPU keeps 84%");
  assertEquals(hybridRates(withCopy(base, 50, 71))!.read, "inplace");
});

test("plan: where the copy engine outruns llama.cpp's in-place reads, the copy variant is chosen and launched with its read mode", () => {
  // In-place kernels at 23 GB/s (the 2026-12-07 machine) lose to stock; copies at 50 GB/s win.
  const hw = withCopy(base, 50, 71);
  const p = plan(model, hw, recipe(512, 512));
  // The plan docs/planner.md states.
  assertEquals(p.chosen, "hybrid-copy-33-ub512");
  const chosen = p.candidates.find((c) => c.id === p.chosen)!;
  assertEquals(chosen.predicted.decodeTps.toFixed(1), "39.8");
  assertEquals(p.candidates.find((c) => c.id === "ncmoe-33-none-ub512")!.predicted.decodeTps.toFixed(1), "36.9");
  assertEquals(chosen.settings.hybridGpuRead, "copy");
  assertStringIncludes(chosen.label, "copied to VRAM and computed by the GPU");
  // The in-place variant of the same base is a candidate too, predicted slower.
  const inplace = p.candidates.find((c) => c.id === chosen.id.replace("hybrid-copy-", "hybrid-"))!;
  assertEquals(inplace.settings.hybridGpuRead, undefined);
  assertGreater(chosen.predicted.decodeTps, inplace.predicted.decodeTps);
  assert(p.notes!.some((n) => n.includes("in place: concurrent probe") && n.includes("copy: concurrent probe: the copy engine moves 50.0 GB/s")), String(p.notes));
  const spec = llamaCppLaunchSpec(p, null);
  // One core is left for the launch thread: the recipe's 16 threads on the profile's cores.
  assertEquals(base.host.cpuCores, 16);
  assertEquals(chosen.settings.threads, 15);
  assertEquals(spec.argv[spec.argv.indexOf("-t") + 1], "15");
  assertStringIncludes(chosen.label, "by 15 threads (a core left for the launch thread)");
  assertEquals(spec.env[HYBRID_READ_ENV], "copy");
  assertEquals(spec.env[HYBRID_FRACTION_ENV], String(chosen.settings.hybridGpuFraction));
  // A slow copy engine (and a CPU that loses much beside it) keeps the plan off the copy variant.
  const slow = plan(model, withCopy(base, 10, 40), recipe(512, 512));
  assertEquals(slow.chosen.startsWith("hybrid-copy-"), false, slow.chosen);
});

test("plan: with the probe figures of the copy mode's GPU run (2026-12-07-hybrid-copy) the copy variant at 3 of 8 is chosen, predicting the small gain measured", () => {
  const hw = withProbe(base, "bench/results/2026-12-07-hybrid-copy/concurrent.json");
  const p = plan(model, hw, recipe(4096, 128));
  const chosen = p.candidates.find((x) => x.id === p.chosen)!;
  assertEquals(p.chosen, "hybrid-copy-35-ub2048"); // as docs/planner.md states
  assertEquals(chosen.settings.hybridGpuFraction, 0.375);
  // Measured there: 47.82 against 46.43 t/s stock at the same placement, 1.03x.
  const stock = p.candidates.find((x) => x.id === `ncmoe-${chosen.settings.cpuMoeLayers}-none-ub${chosen.settings.ubatch}`)!;
  const gain = chosen.predicted.decodeTps / stock.predicted.decodeTps;
  assertEquals(+gain.toFixed(2), 1.04); // docs/planner.md: 1.04x predicted, 1.03x measured
  // The in-place variant is predicted slower than stock there (Q8_0 kernels at 22.9 GB/s).
  const inplace = p.candidates.find((x) => x.id === chosen.id.replace("hybrid-copy-", "hybrid-"))!;
  assertLess(inplace.predicted.decodeTps, stock.predicted.decodeTps);
});

test("plan: with the launch-thread run's probe (2026-12-07-hybrid-launch), whose CPU path is fast, hybrid is predicted to lose on both shapes and the plan keeps stock, as measured", () => {
  // That machine's CPU summed pinned RAM at 123 GB/s (102 beside the copy engine), the copy engine
  // moved 41 GB/s beside it: the copy variant measured 0.98x (30B-A3B, 47.94 vs 48.87 t/s) and 0.95x
  // (GLM-4.7-Flash, 40.27 vs 42.34) the same placement stock.
  const probed = withProbe(base, "bench/results/2026-12-07-hybrid-launch/concurrent.json");
  const hw: HardwareProfile = { ...probed, host: { ...probed.host, ramGBps: probed.measured!.concurrentCpuAloneGBps!.median } };
  for (const shape of ["qwen3-30b-a3b", "glm-4.7-flash"]) {
    const p = plan(modelInfoFromShape(shape, "q8_0", `${shape}.gguf`), hw, recipe(4096, 128));
    // The plan's note gives that machine's bound from its probe: (102.0 + 41.0) / 123.1 with copies,
    // (107.3 + 24.3) / 123.1 with zero-copy reads.
    const note = p.notes!.find((n) => n.startsWith("hybrid split from measured rates")) ?? "";
    assertStringIncludes(note, "the CPU keeps 83% of its rate (together 1.16x the faster path alone, the most a split can gain in reading host memory)");
    assertStringIncludes(note, "of their rates while both read (together 1.07x the faster path alone");
    assertEquals(p.candidates.find((x) => x.id === p.chosen)!.strategy, "experts_cpu", `${shape}: ${p.chosen}`);
    const hybrid = p.candidates.filter((x) => x.strategy === "hybrid");
    assert(hybrid.length > 0, `${shape}: no hybrid candidate weighed`);
    for (const h of hybrid) {
      const stock = p.candidates.find((x) => x.id === `ncmoe-${h.settings.cpuMoeLayers}-none-ub${h.settings.ubatch}`)!;
      assertLess(h.predicted.decodeTps, stock.predicted.decodeTps, `${shape}: ${h.id} against ${stock.id}`);
    }
  }
});

test("plan: with the t15 run's probe (2026-12-07-hybrid-t15) the probe's CPU rate over-predicts stock and the plan keeps stock; at the CPU rate the stock rows imply it picks the copy split on the 30B only, as measured against the best stock", () => {
  const probed = withProbe(base, "bench/results/2026-12-07-hybrid-t15/concurrent.json");
  const at = (ramGBps: number, shape: string, cpuEfficiency = DEFAULT_CONSTANTS.cpuEfficiency) => {
    const p = plan(modelInfoFromShape(shape, "q8_0", `${shape}.gguf`), { ...probed, host: { ...probed.host, ramGBps } }, recipe(4096, 128), { constants: { ...DEFAULT_CONSTANTS, cpuEfficiency } });
    const stock = p.candidates.find((x) => /^ncmoe-3\d-none-ub2048$/.test(x.id))!;
    const copy = p.candidates.find((x) => x.id === `hybrid-copy-${stock.settings.cpuMoeLayers}-ub2048`)!;
    return { chosen: p.chosen, stock: +stock.predicted.decodeTps.toFixed(1), copy: +copy.predicted.decodeTps.toFixed(1) };
  };
  // At the probe's CPU-alone rate (113.9 GB/s) stock is predicted at 48.5 t/s, measured 38.5 pooled.
  assertEquals(at(113.9, "qwen3-30b-a3b"), { chosen: "ncmoe-35-none-ub2048", stock: 48.5, copy: 45 });
  assertEquals(at(113.9, "glm-4.7-flash").chosen, "ncmoe-34-none-ub2048");
  // At 80 GB/s stock is predicted at 38.7 (measured 38.5): the copy split wins on the 30B (measured
  // 1.06x the best stock pooled) and loses on GLM (measured 0.92x), as the plan says (docs/planner.md).
  assertEquals(at(80, "qwen3-30b-a3b"), { chosen: "hybrid-copy-35-ub2048", stock: 38.7, copy: 39.6 });
  assertEquals(at(80, "glm-4.7-flash"), { chosen: "ncmoe-34-none-ub2048", stock: 40.5, copy: 39.8 });
  // The same through the constants, as an autotune calibration on the machine sets them (the H200
  // autotune run fitted cpuEfficiency 0.77, bench/results/2026-11-22-h200-autotune): the hybrid's
  // CPU part takes the fitted efficiency too.
  assertEquals(at(113.9, "qwen3-30b-a3b", 0.7).chosen, "hybrid-copy-35-ub2048");
  assertEquals(at(113.9, "glm-4.7-flash", 0.7).chosen, "ncmoe-34-none-ub2048");
});

test("bench harness, a planned method: a hybrid copy plan runs with both switches and the plan's threads, as a launch does", () => {
  const p = plan(model, withProbe(base, "bench/results/2026-12-07-hybrid-copy/concurrent.json"), recipe(4096, 128));
  assertEquals([p.chosen, p.settings.threads], ["hybrid-copy-35-ub2048", 15]);
  const d = plannedFlags(p, { prompt: 4096, gen: 128 }, "/nonexistent/libspillway_shim.so");
  assertEquals(d.env, { [HYBRID_FRACTION_ENV]: "0.375", [HYBRID_READ_ENV]: "copy" });
  assertEquals(d.threads, 15);
  assertEquals(d.flags.includes("-t"), false);
  assertEquals(d.flags.slice(d.flags.indexOf("-ncmoe"), d.flags.indexOf("-ncmoe") + 2), ["-ncmoe", "35"]);
  // The same environment as the launch spec's.
  assertEquals(llamaCppLaunchSpec(p, null).env, { ...d.env });
});

test("hybridThreads: one core left for the launch thread only where every core would compute", () => {
  assertEquals(hybridThreads(16, 16), 15);
  assertEquals(hybridThreads(32, 16), 15);
  assertEquals(hybridThreads(8, 16), 8);
  assertEquals(hybridThreads(1, 1), 1);
});

test("launch: a hybrid plan sets the GPU share for the patched llama.cpp; the launcher's hint says how to build it", () => {
  const p = plan(model, withConcurrent(base), recipe(512, 512));
  const spec = llamaCppLaunchSpec(p, null);
  assertEquals(spec.env[HYBRID_FRACTION_ENV], "0.375");
  const built = hybridBuild().built("llama-server");
  assertEquals(spec.argv[0], built ?? "llama-server");
  // The recipe's binary wins.
  assertEquals(llamaCppLaunchSpec(p, { program: "server", binary: "/opt/llama/llama-server" } as never).argv[0], "/opt/llama/llama-server");
  assertStringIncludes(hybridBuildHint(), "runtimes/llama.cpp/build.sh");
  // spillway run's launcher: a missing patched binary fails before anything starts, saying how to build it.
  const e = (() => {
    try {
      launch(p, { program: "server", binary: join(tmpdir(), "no-such-dir", "llama-server") } as never);
    } catch (err) {
      return err;
    }
    return null;
  })();
  assert(e instanceof RuntimeMissingError, String(e));
  assertStringIncludes((e as Error).message, "runtimes/llama.cpp/build.sh");
  // A stock plan gets no hybrid environment.
  const stock = plan(model, base, recipe(512, 512));
  assertEquals(llamaCppLaunchSpec(stock, null).env[HYBRID_FRACTION_ENV], undefined);
  // An in-place hybrid plan leaves the read mode to the build's default.
  assertEquals(spec.env[HYBRID_READ_ENV], undefined);
});

test("the patched build's cache key: the same in TypeScript and in build.sh, and it changes with a patch", () => {
  const dir = mkdtempSync(join(tmpdir(), "hybrid-key-"));
  try {
    // A throwaway runtimes/llama.cpp with the real build.sh, two patches and a one-commit bundle.
    const rt = join(dir, "runtimes", "llama.cpp");
    mkdirSync(join(rt, "patches"), { recursive: true });
    execFileSync("cp", [join(process.cwd(), "runtimes", "llama.cpp", "build.sh"), rt]);
    writeFileSync(join(rt, "patches", "0002-b.patch"), "b\n");
    writeFileSync(join(rt, "patches", "0001-a.patch"), "a\n");
    const src = join(dir, "src");
    mkdirSync(src);
    const git = (...a: string[]) => execFileSync("git", ["-C", src, "-c", "user.email=t@t", "-c", "user.name=t", ...a], { encoding: "utf8" });
    git("init", "-q");
    writeFileSync(join(src, "f"), "x\n");
    git("add", "f");
    git("commit", "-q", "-m", "x");
    const commit = git("rev-parse", "HEAD").trim();
    const bundle = join(dir, "src.bundle");
    git("bundle", "create", bundle, "HEAD");
    const cache = join(dir, "cache");
    const fromScript = execFileSync("bash", [join(rt, "build.sh"), "--bundle", bundle, "--cache", cache, "--print-dir"], { encoding: "utf8" }).trim();
    const b = hybridBuild({ root: rt, bundle, cache });
    assertEquals(b.binDir, fromScript);
    assertEquals(b.binDir, join(cache, "llama.cpp-hybrid", hybridKey(commit, [{ name: "0001-a.patch", content: "a\n" }, { name: "0002-b.patch", content: "b\n" }]), "build", "bin"));
    assertEquals(b.built("llama-server"), null);
    writeFileSync(join(rt, "patches", "0002-b.patch"), "b2\n");
    assert(hybridBuild({ root: rt, bundle, cache }).binDir !== b.binDir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// Which MoE blocks the patched build splits (engine/runtimes/llamacpp_hybrid_blocks.ts, patch 0003's
// guard as a GGUF header shows it), and plans that count only those.
const glm = modelInfoFromShape("glm-4.7-flash", "q8_0", "glm-4.7-flash-q8_0.gguf");

/** `info` with each routed-expert matrix of the blocks `which` selects replaced by what `change` gives. */
function edit(info: ModelInfo, which: (block: number) => boolean, change: (t: TensorInfo) => TensorInfo[]): ModelInfo {
  const tensors = info.tensors.flatMap((t) => (t.layer !== null && /\.ffn_(gate|up|down)_exps\.weight$/.test(t.name) && which(t.layer) ? change(t) : [t]));
  return { ...info, tensors };
}

/** `info` with the gate and up experts of the blocks `which` selects merged into one tensor of both. */
function mergeGateUp(info: ModelInfo, which: (block: number) => boolean): ModelInfo {
  return edit(info, which, (t) =>
    t.name.includes("_gate_exps")
      ? [{ ...t, name: t.name.replace("_gate_exps", "_gate_up_exps"), shape: [t.shape[0], 2 * t.shape[1], t.shape[2]], bytes: 2 * t.bytes }]
      : t.name.includes("_up_exps") ? [] : [t]);
}

const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

test("hybrid blocks: every MoE block of plain gated experts (qwen3moe, deepseek2 with its leading dense block)", () => {
  assertEquals(hybridExpertBlocks(model), { blocks: range(0, 47), excluded: [] });
  // GLM-4.7-Flash: block 0 is dense (no routed experts), 1-46 MoE.
  assertEquals(hybridExpertBlocks(glm), { blocks: range(1, 46), excluded: [] });
  // A dense model has no MoE block at all.
  assertEquals(hybridExpertBlocks(modelInfoFromShape("llama-8b", "q8_0")), { blocks: [], excluded: [] });
});

test("hybrid blocks: merged gate+up, missing gate, biases, scales, clamps and other activations are left to the stock path, with the reason", () => {
  // Merged gate and up (ffn_gate_up_exps) in blocks 10-19.
  const merged = mergeGateUp(model, (b) => b >= 10 && b < 20);
  const mb = hybridExpertBlocks(merged);
  assertEquals(mb.blocks, [...range(0, 9), ...range(20, 47)]);
  assertEquals(mb.excluded, [{ blocks: range(10, 19), reason: "gate and up experts merged in one tensor (ffn_gate_up_exps)" }]);
  // Ungated experts (up and down only).
  const ungated = edit(model, () => true, (t) => (t.name.includes("_gate_exps") ? [] : [t]));
  assertEquals(hybridExpertBlocks(ungated).excluded[0].reason, "experts without separate gate, up and down matrices");
  // Biases on the down experts of even blocks; per-expert scales on block 47.
  const biased = edit(model, (b) => b % 2 === 0, (t) => (t.name.includes("_down_exps") ? [t, { ...t, name: t.name.replace(".weight", ".bias"), shape: [t.shape[1], t.shape[2]], bytes: 1 }] : [t]));
  const bb = hybridExpertBlocks(biased);
  assertEquals(bb.blocks, range(0, 47).filter((b) => b % 2 === 1));
  assertEquals(bb.excluded[0].reason, "expert biases");
  const scaled = edit(model, (b) => b === 47, (t) => [t, { ...t, name: t.name.replace(".weight", ".scale"), shape: [128], bytes: 512 }]);
  assertEquals(hybridExpertBlocks(scaled).excluded, [{ blocks: [47], reason: "per-expert scales" }]);
  // A SwiGLU clamp: one number for every block, or one per block (0: none).
  assertEquals(hybridExpertBlocks({ ...model, metadata: { ...model.metadata, "qwen3moe.swiglu_clamp_exp": 7 } }).blocks, []);
  const perBlock = range(0, 47).map((b) => (b < 40 ? 0 : 10));
  const cb = hybridExpertBlocks({ ...model, metadata: { ...model.metadata, "qwen3moe.swiglu_clamp_exp": perBlock } });
  assertEquals(cb.blocks, range(0, 39));
  assertEquals(cb.excluded, [{ blocks: range(40, 47), reason: "a SwiGLU clamp on the experts (qwen3moe.swiglu_clamp_exp)" }]);
  // Architectures whose experts use another activation, or weigh before the FFN.
  for (const [arch, words] of [["gpt-oss", "SwiGLU-OAI"], ["llama4", "before the experts"], ["nemotron_h_moe", "squared ReLU"]]) {
    const r = hybridExpertBlocks({ ...model, architecture: arch });
    assertEquals(r.blocks, [], arch);
    assertStringIncludes(r.excluded[0].reason, words);
  }
  // Safetensors: the split is llama.cpp's.
  assertEquals(hybridExpertBlocks({ ...model, format: "safetensors" }).blocks, []);
});

test("hybrid blocks through the adapter contract: llama.cpp's adapter says, a runtime without the split has none", () => {
  assertEquals(hybridBlocksFor("llama.cpp", glm), hybridExpertBlocks(glm));
  assertEquals(hybridBlocksFor("vllm", glm), { blocks: [], excluded: [] });
});

test("blockRanges: consecutive blocks as ranges", () => {
  assertEquals(blockRanges([0, 1, 2, 5, 7, 8]), "0-2, 5, 7-8");
  assertEquals(blockRanges([3]), "3");
  assertEquals(blockRanges([]), "");
});

test("plan: the split's prediction counts only the blocks the patched build splits, and the plan says which stay on the CPU", () => {
  const full = plan(model, withConcurrent(base), recipe(512, 512));
  const chosen = full.candidates.find((c) => c.id === full.chosen)!;
  assertEquals(chosen.strategy, "hybrid");
  // Merged gate+up in blocks 0-17: the split runs only in the rest of the host blocks.
  const part = plan(mergeGateUp(model, (b) => b < 18), withConcurrent(base), recipe(512, 512));
  const same = part.candidates.find((c) => c.id === chosen.id);
  assert(same !== undefined, `no ${chosen.id} among ${part.candidates.map((c) => c.id).join(", ")}`);
  // The same placement and base: a smaller gain, as only part of the host experts is split.
  const stockId = `ncmoe-${chosen.settings.cpuMoeLayers}-none-ub${chosen.settings.ubatch}`;
  const stock = part.candidates.find((c) => c.id === stockId)!;
  assertGreater(chosen.predicted.decodeTps, same!.predicted.decodeTps);
  assertGreater(same!.predicted.decodeTps, stock.predicted.decodeTps);
  assertStringIncludes(same!.label, "the experts of blocks 0-17 stay on the CPU alone (gate and up experts merged in one tensor (ffn_gate_up_exps))");
  assert(!chosen.label.includes("stay on the CPU alone"), chosen.label);
});

test("plan: no hybrid candidate for a model whose experts the patched build never splits, and a note says why", () => {
  const p = plan({ ...model, architecture: "gpt-oss" }, withConcurrent(base), recipe(512, 512));
  assert(!p.candidates.some((c) => c.strategy === "hybrid"), p.chosen);
  assert(p.notes!.some((n) => n === "hybrid experts not considered: the runtime splits no block of this model (gpt-oss experts use the SwiGLU-OAI activation)"), JSON.stringify(p.notes));
});

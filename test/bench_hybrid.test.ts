// Issue 22: harness support for the hybrid run: method environment and check flags in the matrix,
// and summary.json (hybrid vs the best stock configuration of the same run).
import { test } from "node:test";
import { execFileSync, spawnSync } from "node:child_process";
import { assert, assertEquals, assertStringIncludes, assertThrows } from "./_assert.ts";
import { ROOT } from "./_native.ts";
import { withTempDir } from "./_tmp.ts";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { mergeCommand } from "../bench/harness/merge.ts";
import { scriptArgv } from "./_spillway_cli.ts";
import { loadBenchMatrix, loadMatrix, onlyModels, parseMatrix } from "../bench/harness/matrix.ts";
import { type HybridSummary, hybridSummary, isStock } from "../bench/harness/hybrid_summary.ts";
import { readConcurrentJson } from "../engine/hardware/measure/concurrent.ts";
import { renderMarkdown } from "../bench/harness/table.ts";
import { fitMethodFlags, fitParamsArgs, methodThreads } from "../bench/harness/runner.ts";
import { type MethodResult, mergeRuns, readResults, type RunResults } from "../bench/harness/results.ts";

test("matrix: hybrid-12g parses; env and checkFlags reach the methods; env only on flags/shim methods", () => {
  const m = loadMatrix("bench/matrices/hybrid-12g.json5");
  const h = m.methods.find((x) => x.id === "hybrid")!;
  assertEquals(h.config, { kind: "flags", flags: ["-ngl", "99", "-ncmoe", "36", "-lm", "none", "-ub", "2048"], env: { LLAMA_MOE_HYBRID_GPU_FRACTION: "0.40" } });
  assertEquals(h.checkFlags, ["-ub", "1"]);
  assertEquals(m.methods.find((x) => x.id === "hybrid-serial")!.check.mode, "none");
  assertEquals(m.methods.find((x) => x.id === "default")!.checkFlags, []);
  // The second shape's matrix (not run yet) parses too.
  // Both shapes in one run: GLM first (a run cut short keeps the shape not measured before).
  const both = loadMatrix("bench/matrices/hybrid-both-12g.json5");
  assertEquals(both.models.map((x) => x.shape), ["glm-4.7-flash", "qwen3moe-30b-a3b"]);
  assertEquals((both.methods.find((x) => x.id === "hybrid")!.config as { env: Record<string, string> }).env.LLAMA_MOE_HYBRID_GPU_FRACTION, "0.375");
  // The zero-copy-only row (share 1.0) is a patched method, never a stock one.
  assertEquals((both.methods.find((x) => x.id === "hybrid-zero-copy")!.config as { env: Record<string, string> }).env.LLAMA_MOE_HYBRID_GPU_FRACTION, "1.0");
  assertEquals(both.methods.find((x) => x.id === "stock-mmap")!.config, { kind: "flags", flags: ["-ngl", "99", "-ncmoe", "36", "-ub", "2048"], env: {} });
  const bad = `{ name: "x", models: [{ id: "m", shape: "tiny-moe", quant: "Q8_0" }], freeVramGiB: [1],
    workloads: [{ id: "w", prompt: 16, gen: 4 }], methods: [{ id: "d", config: "all-vram", env: { A: "1" } }] }`;
  assertThrows(() => parseMatrix(bad, "bad.json5"), Error, "methods[0].env");
  assertThrows(() => parseMatrix(bad.replace('env: { A: "1" }', 'checkFlags: "-ub 1"'), "bad.json5"), Error, "methods[0].checkFlags");
});

function result(id: string, decode: number, prefill: number, env: Record<string, string> = {}, free: number | null = 12): MethodResult {
  return {
    id, label: id, runtime: "llama.cpp", model: "moe30b", freeVramGiB: free, ballastFreeBytes: null, workload: "w", command: [], env,
    prefill: { tokens: 4096, tps: prefill, stddev: 0, samples: [prefill] }, decode: { tokens: 128, tps: decode, stddev: 0, samples: [decode] },
    endToEnd: null, check: { mode: "close", pass: true, how: "kld", meanKld: 0.001, sameTopPct: 99 }, seconds: 1, status: "ok",
  };
}

/** One device call's results (a part for mergeRuns) on the same H100 machine. */
function part(startedAt: string, results: MethodResult[]): RunResults {
  return {
    version: 1, kind: "gpu", matrix: "hybrid-12g", startedAt, finishedAt: startedAt, software: {}, phases: {}, notes: [], results,
    machine: { hostname: "vm", kernel: "k", cpuModel: "c", cpuCores: 16, ramBytes: 1, ramAvailableBytes: 1, cudaVersion: "13.0", gpus: [{ name: "H100" }] },
  } as unknown as RunResults;
}

test("summary: ratios against the best stock figure of each kind; patched switches and the reference are not stock", () => {
  const results: MethodResult[] = [
    result("all-vram", 275, 11000, {}, null),
    result("default", 41.2, 1578),
    result("stock-pinned", 37.5, 7768),
    result("hybrid", 52, 7700, { LLAMA_MOE_HYBRID_GPU_FRACTION: "0.40" }),
    result("zero-copy", 20, 7700, { LLAMA_MOE_HYBRID_GPU_FRACTION: "1.0" }),
  ];
  const r = { version: 1, kind: "gpu", matrix: "hybrid-12g", startedAt: "t", finishedAt: "t", software: {}, phases: {}, notes: [], results,
    machine: { hostname: "h", kernel: "k", cpuModel: "c", cpuCores: 16, ramBytes: 1, ramAvailableBytes: 1, cudaVersion: "13.0", gpus: [{ name: "NVIDIA H200" }] } } as unknown as RunResults;
  assertEquals(results.map(isStock), [false, true, true, false, false]);
  const s = hybridSummary(r);
  assertEquals(s.gpu, "NVIDIA H200");
  const x = s.shapes[0]!;
  assertEquals(x.bestStock, { decodeId: "default", decodeTps: 41.2, prefillId: "stock-pinned", prefillTps: 7768 });
  assertEquals(x.decodeRatioVsBestStock, +(52 / 41.2).toFixed(3));
  assertEquals(x.prefillRatioVsBestStock, +(7700 / 7768).toFixed(3));
  assertEquals(x.decodeRatioVsDefault, +(52 / 41.2).toFixed(3));
  assertEquals(hybridSummary(r, "nope").shapes, []);
});

test("matrix: hybrid-copy-12g runs the copy mode against a stock sweep that includes stock's own per-token expert copy", () => {
  const m = loadMatrix("bench/matrices/hybrid-copy-12g.json5");
  const env = (id: string) => (m.methods.find((x) => x.id === id)!.config as { env: Record<string, string> }).env;
  assertEquals(env("hybrid"), { LLAMA_MOE_HYBRID_GPU_FRACTION: "0.5", LLAMA_MOE_HYBRID_GPU_READ: "copy" });
  assertEquals(m.methods.find((x) => x.id === "hybrid")!.checkFlags, ["-ub", "1"]);
  // stock-copy sets only a stock llama.cpp switch: it is a stock configuration; the read mode alone
  // marks a method patched.
  const r = (id: string, e: Record<string, string>) => ({ ...result(id, 1, 1), env: e });
  assertEquals(isStock(r("stock-copy", env("stock-copy"))), true);
  assertEquals(isStock(r("x", { LLAMA_MOE_HYBRID_GPU_READ: "copy" })), false);
});

test("matrix: hybrid-launch-12g measures the launch thread (patch 0004) against the same split launched as before, on both shapes", () => {
  const m = loadMatrix("bench/matrices/hybrid-launch-12g.json5");
  assertEquals(m.models.map((x) => x.id), ["moe30b", "glm47flash"]);
  const method = (id: string) => m.methods.find((x) => x.id === id)!;
  const cfg = (id: string) => method(id).config as { flags: string[]; env: Record<string, string> };
  // The pair differs only in the switch: same flags, same share, same read mode.
  assertEquals(cfg("hybrid").flags, cfg("hybrid-nothread").flags);
  assertEquals({ ...cfg("hybrid").env, GGML_SCHED_LAUNCH_THREAD: "0" }, cfg("hybrid-nothread").env);
  assertEquals(cfg("hybrid").flags, cfg("stock-pinned").flags);
  // The headline hybrid and its stock rival on the same placement are both checked against all-vram.
  assertEquals(m.methods[0]!.id, "all-vram");
  assertEquals(method("hybrid").checkFlags, ["-ub", "1"]);
  assertEquals(method("stock-pinned").checkFlags, ["-ub", "1"]);
  for (const id of ["default", "stock-pinned", "stock-mmap", "fit-pinned"]) assertEquals(isStock({ ...result(id, 1, 1), env: cfg(id).env ?? {} }), true, id);
});

test("matrix: a method's own thread count (hybrid-threads-12g: the hybrid at -t 15 beside stock at -t 16); a bad one names its field", () => {
  const m = loadMatrix("bench/matrices/hybrid-threads-12g.json5");
  const method = (id: string) => m.methods.find((x) => x.id === id)!;
  assertEquals(m.threads, 16);
  assertEquals(method("hybrid").threads, 15);
  assertEquals(method("stock-pinned").threads, null);
  assertEquals((method("hybrid").config as { flags: string[] }).flags, (method("hybrid-t16").config as { flags: string[] }).flags);
  assertEquals(method("hybrid-t16").threads, null);
  // What llama-bench and llama-perplexity get as -t.
  assertEquals(methodThreads(method("hybrid"), m), 15);
  assertEquals(methodThreads(method("hybrid-t16"), m), 16);
  const bad = `{ name: "x", models: [{ id: "m", shape: "tiny-moe", quant: "Q8_0" }], freeVramGiB: [1],
    workloads: [{ id: "w", prompt: 16, gen: 4 }], methods: [{ id: "p", config: "flags", flags: ["-ngl", "1"], threads: 0 }] }`;
  assertThrows(() => parseMatrix(bad, "bad.json5"), Error, "methods[0].threads");
});

test("matrix: a fit method takes flags and env, appended to llama.cpp's fit choice (hybrid on the default's placement)", () => {
  const m = loadMatrix("bench/matrices/hybrid-copy-12g.json5");
  const fit = m.methods.find((x) => x.id === "hybrid-fit")!;
  assertEquals(fit.config, { kind: "fit", flags: ["-lm", "none"], env: { LLAMA_MOE_HYBRID_GPU_FRACTION: "0.375", LLAMA_MOE_HYBRID_GPU_READ: "copy" } });
  assertEquals(m.methods.find((x) => x.id === "default")!.config, { kind: "fit", flags: [], env: {} });
  const d = fitMethodFlags(["-c", "4352", "-ngl", "49", "-ot", "blk\\.14\\.ffn_.*=CPU,blk\\.15\\.ffn_.*=CPU"], fit.config as { flags: string[]; env: Record<string, string> }, 4352);
  assertEquals(d.flags, ["-ngl", "49", "-ot", "blk\\.14\\.ffn_.*=CPU;blk\\.15\\.ffn_.*=CPU", "-lm", "none"]);
  assertEquals(d.env.LLAMA_MOE_HYBRID_GPU_READ, "copy");
  assertEquals(d.derivedFrom.endsWith("; then -lm none LLAMA_MOE_HYBRID_GPU_FRACTION=0.375 LLAMA_MOE_HYBRID_GPU_READ=copy"), true);
  // The fit itself runs with the method's flags, so llama.cpp sizes the placement for pinned experts.
  assertEquals(d.derivedFrom.startsWith("llama-fit-params -c 4352 -lm none printed: -c 4352 -ngl 49"), true);
  assertEquals(fitParamsArgs("/m.gguf", 4352, 16, ["-lm", "none"]), ["-m", "/m.gguf", "-c", "4352", "-t", "16", "-lm", "none"]);
  assertEquals(fitParamsArgs("/m.gguf", 4352, 16, []), ["-m", "/m.gguf", "-c", "4352", "-t", "16"]);
  // The plain default stays llama.cpp's choice alone.
  assertEquals(fitMethodFlags(["-ngl", "49"], { flags: [], env: {} }, 4352).derivedFrom, "llama-fit-params -c 4352 printed: -ngl 49");
});

test("onlyModels: SPILLWAY_BENCH_ONLY_MODELS keeps the named models and names the matrix on an unknown id", () => {
  const both = loadMatrix("bench/matrices/hybrid-both-12g.json5");
  assertEquals(onlyModels(both, "moe30b", "SPILLWAY_BENCH_ONLY_MODELS").models.map((m) => m.id), ["moe30b"]);
  assertEquals(onlyModels(both, " glm47flash ,", "SPILLWAY_BENCH_ONLY_MODELS").models.map((m) => m.id), ["glm47flash"]);
  assertEquals(onlyModels(both, undefined, "SPILLWAY_BENCH_ONLY_MODELS").models.length, 2);
  assertThrows(() => onlyModels(both, "moe30b,nope", "SPILLWAY_BENCH_ONLY_MODELS"), Error, "hybrid-both-12g.json5");
});

test("mergeRuns: parts of one matrix on one machine become one run (a summary per shape); another GPU is refused", () => {
  const shapePart = (model: string, startedAt: string, gpu: string): RunResults => {
    const p = part(startedAt, [{ ...result("default", 41, 1500), model }, { ...result("hybrid", 45, 7700, { LLAMA_MOE_HYBRID_GPU_FRACTION: "0.45" }), model }]);
    return { ...p, phases: { [model]: 1 }, notes: ["n"], machine: { ...p.machine, gpus: [{ name: gpu }] } } as RunResults;
  };
  const run = mergeRuns([shapePart("glm47flash", "2026-12-06T20:31", "H100"), shapePart("moe30b", "2026-12-06T20:35", "H100")]);
  assertEquals(run.results.map((m) => m.model), ["glm47flash", "glm47flash", "moe30b", "moe30b"]);
  assertEquals(run.finishedAt, "2026-12-06T20:35");
  assertEquals(hybridSummary(run).shapes.map((s) => [s.model, s.decodeRatioVsBestStock]), [["glm47flash", +(45 / 41).toFixed(3)], ["moe30b", +(45 / 41).toFixed(3)]]);
  assertThrows(() => mergeRuns([shapePart("glm47flash", "a", "H100"), shapePart("moe30b", "b", "H200")]), Error, "another machine");
  assertThrows(() => mergeRuns([shapePart("glm47flash", "a", "H100"), { ...shapePart("moe30b", "b", "H100"), matrix: "other" }]), Error, "matrix 'other'");
  assertThrows(() => mergeRuns([]), Error, "no results");
});

test("mergeRuns: a method skipped for time in one part and measured in a later part appears once, measured; the run starts at the first part", () => {
  const skipped = { ...result("stock-mmap", 0, 0), status: "skipped" as const, decode: null, prefill: null };
  const run = mergeRuns([
    part("2026-12-07T00:45", [result("default", 46, 1600), skipped, { ...skipped, id: "hybrid-serial" }]),
    part("2026-12-07T00:52", [result("stock-mmap", 41, 2500)]),
  ]);
  assertEquals(run.results.map((m) => [m.id, m.status]), [["default", "ok"], ["hybrid-serial", "skipped"], ["stock-mmap", "ok"]]);
  assertEquals(run.startedAt, "2026-12-07T00:45");
});

test("mergeRuns: a method measured in two parts keeps its id for the later (the rerun), the earlier becomes <id>-call<K>; the summary takes the rerun", () => {
  const env = { LLAMA_MOE_HYBRID_GPU_FRACTION: "0.5" };
  const run = mergeRuns([
    part("2026-12-07T05:45", [result("hybrid", 33.6, 6878, env)]),
    part("2026-12-07T05:47", [result("stock-pinned", 46.4, 7579)]),
    part("2026-12-07T05:48", [result("hybrid", 43.4, 7744, env)]),
  ]);
  assertEquals(run.results.map((m) => [m.id, m.decode?.tps]), [["hybrid-call1", 33.6], ["stock-pinned", 46.4], ["hybrid", 43.4]]);
  assertStringIncludes(run.results[0]!.label, "(call 1 of 3, rerun later)");
  assertEquals(hybridSummary(run, "hybrid").shapes[0]!.hybrid!.decodeTps, 43.4);
});

test("summary: methods measured in several calls are pooled (every repetition of every call); absent when the compared rows ran once", () => {
  const env = { LLAMA_MOE_HYBRID_GPU_FRACTION: "0.375" };
  const two = (m: MethodResult, a: number, b: number): MethodResult => ({ ...m, decode: { tokens: 128, tps: (a + b) / 2, stddev: 0, samples: [a, b] } });
  const run = mergeRuns([
    part("2026-12-07T15:51", [two(result("hybrid", 0, 7500, env), 36, 38), result("default", 41, 1400), result("stock-pinned", 37, 7460)]),
    part("2026-12-07T16:03", [result("hybrid-0.5", 41, 7550, { LLAMA_MOE_HYBRID_GPU_FRACTION: "0.5" })]),
    part("2026-12-07T16:04", [two(result("hybrid", 0, 7700, env), 44, 48), result("default", 37, 1420), result("fit-pinned", 40, 5100)]),
  ]);
  const x = hybridSummary(run).shapes[0]!;
  // The last call's hybrid (46) against the best stock row of any call (41, default in call 1).
  assertEquals([x.hybrid.decodeTps, x.bestStock!.decodeId, x.decodeRatioVsBestStock], [46, "default-call1", +(46 / 41).toFixed(3)]);
  // Pooled: hybrid (36+38+44+48)/4 = 41.5; default (41+37)/2 = 39 falls below fit-pinned (40, one call).
  assertEquals(x.pooled, {
    calls: { "hybrid": 2, "default": 2, "stock-pinned": 1, "hybrid-0.5": 1, "fit-pinned": 1 },
    hybridDecodeTps: 41.5, hybridPrefillTps: 7600,
    bestStock: { decodeId: "fit-pinned", decodeTps: 40, prefillId: "stock-pinned", prefillTps: 7460 },
    decodeRatioVsBestStock: +(41.5 / 40).toFixed(3), prefillRatioVsBestStock: +(7600 / 7460).toFixed(3),
  });
  // Only a patched row other than the hybrid repeated: no ratio changes, no pooled figures.
  const once = mergeRuns([
    part("2026-12-07T15:51", [result("hybrid", 44, 7600, env), result("hybrid-0.5", 40, 7500, { LLAMA_MOE_HYBRID_GPU_FRACTION: "0.5" })]),
    part("2026-12-07T16:03", [result("hybrid-0.5", 41, 7550, { LLAMA_MOE_HYBRID_GPU_FRACTION: "0.5" }), result("default", 41, 1400)]),
  ]);
  assertEquals(hybridSummary(once).shapes[0]!.pooled, undefined);
});

test("harness merge: parts by file or folder into one results.json, reproducing the committed copy-mode run; usage and refusals are exit codes", () => withTempDir("harness-merge-", (dir) => {
  const D = "bench/results/2026-12-07-hybrid-copy";
  const out = join(dir, "results.json");
  assertEquals(mergeCommand({ out }, [`${D}/parts/call1.json`, `${D}/parts/call2.json`, `${D}/parts/call3.json`]), 0);
  assertEquals(readFileSync(out, "utf8"), readFileSync(`${D}/results.json`, "utf8"));
  assertEquals(mergeCommand({}, [`${D}/parts/call1.json`]), 2);
  assertEquals(mergeCommand({ out }, []), 2);
  assertEquals(mergeCommand({ out }, [join(dir, "missing.json")]), 1);
  // Parts of another matrix are refused.
  const other = JSON.parse(readFileSync(`${D}/parts/call2.json`, "utf8"));
  writeFileSync(join(dir, "other.json"), JSON.stringify({ ...other, matrix: "other" }));
  assertEquals(mergeCommand({ out: join(dir, "x.json") }, [`${D}/parts/call1.json`, join(dir, "other.json")]), 1);
}));

test("results.md: a run of several models names the model on each row; one model keeps the short table", () => {
  const run = (models: string[]) => ({
    version: 1, kind: "gpu", matrix: "m", startedAt: "2026-12-06T20:31", finishedAt: null, software: {}, phases: {}, notes: [],
    results: models.map((model) => ({ ...result("default", 41, 1500), model })),
    machine: { hostname: "vm", kernel: "k", cpuModel: "c", cpuCores: 16, ramBytes: 1, ramAvailableBytes: 1, cudaVersion: "13.0", gpus: [] },
  }) as unknown as RunResults;
  const two = renderMarkdown(run(["glm47flash", "moe30b"]));
  assertEquals(two.includes("| model | method |"), true);
  assertEquals(two.includes("| moe30b | default |"), true);
  assertEquals(renderMarkdown(run(["moe30b", "moe30b"])).includes("| model |"), false);
});

test("summary: checkRanSplit only where the hybrid check loaded the experts pinned (-lm none)", () => {
  const run = (how: string) => ({
    version: 1, kind: "gpu", matrix: "m", startedAt: "t", finishedAt: "t", software: {}, phases: {}, notes: [],
    results: [result("default", 41, 1500), { ...result("hybrid", 45, 7700, { LLAMA_MOE_HYBRID_GPU_FRACTION: "0.45" }), check: { mode: "close", pass: true, how } }],
    machine: { hostname: "vm", kernel: "k", cpuModel: "c", cpuCores: 16, ramBytes: 1, ramAvailableBytes: 1, cudaVersion: "13.0", gpus: [{ name: "H100" }] },
  }) as unknown as RunResults;
  assertEquals(hybridSummary(run("llama-perplexity -c 128 --chunks 2 -ub 1 --kl-divergence vs all-vram")).shapes[0]!.hybrid.checkRanSplit, false);
  assertEquals(hybridSummary(run("llama-perplexity -c 128 --chunks 2 -lm none -ub 1 --kl-divergence vs all-vram")).shapes[0]!.hybrid.checkRanSplit, true);
  assertEquals(hybridSummary(run("llama-perplexity -c 128 --chunks 2 -lm mmap -ub 1 --kl-divergence vs all-vram")).shapes[0]!.hybrid.checkRanSplit, false);
});

test("loadBenchMatrix: SPILLWAY_BENCH_ONLY_MODELS from the environment narrows the matrix the bench runs", () => {
  const f = "bench/matrices/hybrid-both-12g.json5";
  assertEquals(loadBenchMatrix(f, { SPILLWAY_BENCH_ONLY_MODELS: "moe30b" }).models.map((m) => m.id), ["moe30b"]);
  assertEquals(loadBenchMatrix(f, {}).models.length, 2);
  assertThrows(() => loadBenchMatrix(f, { SPILLWAY_BENCH_ONLY_MODELS: "glm" }), Error, "SPILLWAY_BENCH_ONLY_MODELS");
});

test("hybrid_summary CLI: a run folder and an id; the committed copy-mode run gives the ratio its README states", () => {
  const [cmd, ...args] = scriptArgv("bench/harness/hybrid_summary.ts", ["bench/results/2026-12-07-hybrid-copy", "hybrid-copy-0.375"]);
  const out = execFileSync(cmd!, args, { encoding: "utf8", cwd: ROOT });
  const s = JSON.parse(out);
  assertEquals(s.shapes[0].hybrid.id, "hybrid-copy-0.375");
  assertEquals(s.shapes[0].decodeRatioVsBestStock, 1.03);
  assertEquals(s.shapes[0].bestStock.decodeId, "stock-pinned");
  // The folder's concurrent.json is that machine's probe: the bound a perfect overlap puts on the split.
  assertEquals(s.probe, { cpuAloneGBps: 117.89, cpuWithCopyGBps: 100.107, copyWithCpuGBps: 43.095, zeroCopyWithCpuGBps: 27.236, zeroCopyGainVsBestAlone: 1.146, copyGainVsBestAlone: 1.215 });
  // Without a probe, no bound; two probes for one summary are refused.
  assertEquals(JSON.parse(execFileSync(cmd!, [...args.slice(0, -2), "bench/results/2026-12-07-hybrid-copy/results.json", "hybrid-copy-0.375"], { encoding: "utf8", cwd: ROOT })).probe, undefined);
  const two = spawnSync(cmd!, [...args.slice(0, -2), "bench/results/2026-12-07-hybrid-copy", "bench/results/2026-12-07-hybrid-launch/concurrent.json", "hybrid-copy-0.375"], { encoding: "utf8", cwd: ROOT });
  assertEquals(two.status, 1);
  assertStringIncludes(two.stderr, "one concurrent probe per summary");
  // A missing results path is named, exit 1.
  const [cmd2, ...args2] = scriptArgv("bench/harness/hybrid_summary.ts", ["bench/results/no-such-run.json"]);
  const r = spawnSync(cmd2!, args2, { encoding: "utf8", cwd: ROOT });
  assertEquals(r.status, 1);
  assertStringIncludes(r.stderr, "bench/results/no-such-run.json: no such results file or folder");
  // A bad probe file is named with its field.
  withTempDir("hybrid-summary-probe-", (dir) => {
    const bad = join(dir, "concurrent.json");
    writeFileSync(bad, JSON.stringify({ cpuAloneGBps: { median: 100 } }));
    const b = spawnSync(cmd!, [...args.slice(0, -2), "bench/results/2026-12-07-hybrid-copy/results.json", bad, "hybrid-copy-0.375"], { encoding: "utf8", cwd: ROOT });
    assertEquals(b.status, 1);
    assertStringIncludes(b.stderr, `${bad}: concurrent probe file: field gpuAloneGBps must have a positive median`);
  });
});

test("every committed hybrid summary.json is what hybrid_summary.ts writes from its folder (results.json and concurrent.json)", () => {
  const dirs = readdirSync("bench/results").filter((d) => existsSync(join("bench/results", d, "summary.json")));
  assertEquals(dirs.includes("2026-12-07-hybrid-t15"), true);
  for (const d of dirs) {
    const dir = join("bench/results", d);
    const committed = JSON.parse(readFileSync(join(dir, "summary.json"), "utf8")) as HybridSummary;
    const probeFile = join(dir, "concurrent.json");
    const probe = existsSync(probeFile) ? readConcurrentJson(readFileSync(probeFile, "utf8")) : undefined;
    const id = committed.shapes[0]?.hybrid.id ?? "hybrid";
    assertEquals(JSON.stringify(hybridSummary(readResults(dir).results, id, probe), null, 2) + "\n", readFileSync(join(dir, "summary.json"), "utf8"), d);
  }
});

test("every committed matrix loads; hybrid-ub-12g pairs each hybrid row with a stock row of the same flags", () => {
  const files = readdirSync("bench/matrices").filter((f) => f.endsWith(".json5"));
  assert(files.length > 10, `only ${files.length} matrices`);
  for (const f of files) loadMatrix(join("bench/matrices", f));
  const m = loadMatrix("bench/matrices/hybrid-ub-12g.json5");
  const byId = new Map(m.methods.map((x) => [x.id, x]));
  const pairs: [string, string][] = [["hybrid-fit", "fit-pinned"], ["hybrid-ub512", "stock-pinned-ub512"], ["hybrid", "stock-pinned"], ["hybrid-fit-ub2048", "fit-pinned-ub2048"]];
  for (const [h, s] of pairs) {
    const hc = byId.get(h)!.config as { kind: string; flags: string[]; env: Record<string, string> };
    const sc = byId.get(s)!.config as { kind: string; flags: string[]; env: Record<string, string> };
    assertEquals([hc.kind, hc.flags], [sc.kind, sc.flags], `${h} against ${s}`);
    assertEquals([hc.env.LLAMA_MOE_HYBRID_GPU_READ, isStock({ ...result(s, 1, 1), env: sc.env })], ["copy", true], h);
    assertEquals(methodThreads(byId.get(h)!, m), 15, h);
  }
});

test("matrix: hybrid-streams-12g measures patch 0006's switch alone and with the split; a row with the switch is not stock", () => {
  const m = loadMatrix("bench/matrices/hybrid-streams-12g.json5");
  assertEquals(m.models.map((x) => x.id), ["moe30b", "glm47flash"]);
  const method = (id: string) => m.methods.find((x) => x.id === id)!;
  const cfg = (id: string) => method(id).config as { flags: string[]; env?: Record<string, string> };
  // The switch is the only difference between each pair: same flags, the split's settings alike.
  assertEquals(cfg("stock-streams").flags, cfg("stock-pinned").flags);
  assertEquals(cfg("stock-streams").env, { GGML_CPU_MATVEC_STREAMS: "4" });
  assertEquals(cfg("hybrid-streams").flags, cfg("hybrid").flags);
  assertEquals(cfg("hybrid-streams").env, { ...cfg("hybrid").env, GGML_CPU_MATVEC_STREAMS: "4" });
  assertEquals(method("hybrid-streams").checkFlags, ["-ub", "1"]);
  assertEquals(method("stock-streams").checkFlags, ["-ub", "1"]);
  const r = (id: string) => ({ ...result(id, 1, 1), env: cfg(id).env ?? {} });
  // A faster CPU kernel is spillway's, not stock llama.cpp's: the summary must not take it for stock.
  assertEquals(["stock-pinned", "stock-streams", "hybrid", "hybrid-streams"].map((id) => isStock(r(id))), [true, false, false, false]);
});

test("matrix: hybrid-rows-12g runs the split at shares between whole experts, each against the same placement stock; the boundary rows are logits-checked", () => {
  const m = loadMatrix("bench/matrices/hybrid-rows-12g.json5");
  assertEquals(m.models.map((x) => x.id), ["moe30b", "glm47flash"]);
  const method = (id: string) => m.methods.find((x) => x.id === id)!;
  const cfg = (id: string) => method(id).config as { flags: string[]; env?: Record<string, string> };
  const shares = ["0.3125", "0.375", "0.4375", "0.5"];
  for (const s of shares) {
    // Same placement as the stock row; only the split's switches differ.
    assertEquals(cfg(`hybrid-${s}`).flags, cfg("stock-pinned").flags, s);
    assertEquals(cfg(`hybrid-${s}`).env, { LLAMA_MOE_HYBRID_GPU_FRACTION: s, LLAMA_MOE_HYBRID_GPU_READ: "copy" }, s);
    assertEquals(methodThreads(method(`hybrid-${s}`), m), 15, s);
  }
  // GLM routes 4 experts per token: 0.3125 and 0.375 (1.25 and 1.5 experts) split a boundary expert's rows,
  // the new path, so their logits are checked (at one token per batch, where the split runs).
  for (const s of ["0.3125", "0.375"]) assertEquals(method(`hybrid-${s}`).checkFlags, ["-ub", "1"], s);
  for (const id of ["hybrid-streams-0.3125", "hybrid-streams-0.375"]) {
    const share = id.slice("hybrid-streams-".length);
    assertEquals(cfg(id).env, { ...cfg(`hybrid-${share}`).env, GGML_CPU_MATVEC_STREAMS: "4" }, id);
  }
});

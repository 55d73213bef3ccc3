// The GPU harness's pure parts: matrix validation, llama-bench / llama-fit-params / llama-perplexity
// output parsing (samples taken from the H200 run in bench/results/), flag translation between
// llama-bench and the common llama.cpp flags, the naive layer count, machine-detail parsing, and
// the report (markdown + SVG) rendered from a committed results file.
import { test } from "node:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assert, assertEquals, assertGreater, assertLess, assertMatch, assertThrows } from "./_assert.ts";
import { RecipeSchemaError, RecipeSyntaxError } from "../core/errors.ts";
import { readModel } from "../engine/model/mod.ts";
import { synthesize } from "../engine/model/synth.ts";
import { parseReadyLine } from "../bench/harness/ballast.ts";
import {
  benchFigures,
  benchToCommonFlags,
  commonToBenchFlags,
  layerBytes,
  naiveGpuLayers,
  parseFitParams,
  parseLlamaBenchJson,
  parsePerplexity,
  runUntilStats,
  splitShellWords,
} from "../bench/harness/llama.ts";
import { machineLabel, parseMeminfo, parseNvidiaSmi } from "../bench/harness/machine.ts";
import { loadMatrix, parseMatrix } from "../bench/harness/matrix.ts";
import { parseArgs } from "../bench/harness/main.ts";
import { renderChartSvg } from "../bench/harness/report.ts";
import { readResults, type RunResults } from "../bench/harness/results.ts";
import { headlineRatios, renderMarkdown } from "../bench/harness/table.ts";

const GiB = 2 ** 30;

test("the committed matrix validates: every method kind, order, checks", () => {
  const m = loadMatrix("bench/matrices/moe30b-12g.json5");
  assertEquals(m.methods.map((x) => x.config.kind), ["all-vram", "fit", "flags", "planned", "shim", "naive-layers"]);
  assertEquals(m.methods[0].ballast, false);
  assert(m.methods.slice(1).every((x) => x.ballast));
  assertEquals(m.methods.find((x) => x.id === "shim")!.check.mode, "exact");
  assertEquals(m.freeVramGiB, [12]);
  assertEquals(m.torch?.methods, ["all-vram", "accelerate", "shim"]);
});

test("matrix errors name the file and the field", () => {
  const base = { models: [{ id: "a", shape: "tiny-moe", quant: "Q8_0" }], freeVramGiB: [12], workloads: [{ id: "w", prompt: 8, gen: 4 }], methods: [{ id: "x", config: "fit" }] };
  const ok = parseMatrix(JSON.stringify(base), "m.json5");
  assertEquals(ok.methods[0].check.mode, "close");
  let e = assertThrows(() => parseMatrix(JSON.stringify({ ...base, models: [{ id: "a", shape: "s", quant: "Q5_K" }] }), "m.json5"), RecipeSchemaError);
  assertMatch(e.message, /m\.json5: models\[0\]\.quant: must be one of Q8_0, Q4_0, F16/);
  e = assertThrows(() => parseMatrix(JSON.stringify({ ...base, methods: [{ id: "x", config: "fit" }, { id: "x", config: "shim" }] }), "m.json5"), RecipeSchemaError);
  assertMatch(e.message, /duplicate id 'x'/);
  e = assertThrows(() => parseMatrix(JSON.stringify({ ...base, methods: [{ id: "x", config: "flags" }] }), "m.json5"), RecipeSchemaError);
  assertMatch(e.message, /methods\[0\]\.flags/);
  e = assertThrows(() => parseMatrix(JSON.stringify({ ...base, bogus: 1 }), "m.json5"), RecipeSchemaError);
  assertMatch(e.message, /bogus: unknown field/);
  const se = assertThrows(() => parseMatrix("{\n  models: [,\n}", "bad.json5"), RecipeSyntaxError) as RecipeSyntaxError;
  assertEquals(se.line, 2);
});

// Trimmed from llama-bench -o json on the H200 (all-vram, -r 1).
const BENCH_JSON = `warming up
[
  { "n_prompt": 4096, "n_gen": 0, "avg_ns": 356446717, "avg_ts": 11491.198557, "stddev_ts": 0.0, "samples_ts": [ 11491.2 ] },
  { "n_prompt": 0, "n_gen": 64, "avg_ns": 235200502, "avg_ts": 272.108263, "stddev_ts": 0.0, "samples_ts": [ 272.108 ] },
  { "n_prompt": 4096, "n_gen": 256, "avg_ns": 1351000000, "avg_ts": 3221.3, "stddev_ts": 0.0, "samples_ts": [ 3221.3 ] }
]`;

test("llama-bench JSON splits into prefill, decode and end to end", () => {
  const rows = parseLlamaBenchJson(BENCH_JSON);
  assertEquals(rows.length, 3);
  const f = benchFigures(rows);
  assertEquals(f.prefill?.tokens, 4096);
  assertEquals(f.prefill?.tps, 11491.198557);
  assertEquals(f.decode?.tokens, 64);
  assertEquals(f.endToEnd?.prompt, 4096);
  assertEquals(f.endToEnd?.gen, 256);
  assertEquals(f.endToEnd?.seconds, 1.351);
  assertThrows(() => parseLlamaBenchJson("CUDA error: out of memory"), Error, "no JSON array");
  assertThrows(() => parseLlamaBenchJson('[{"n_prompt": 1}]'), Error, "n_gen");
});

test("llama-fit-params output becomes llama-bench flags (';' between overrides, no -c)", () => {
  const out = 'llama_fit_params: printing fitted CLI arguments to stdout...\n-c 4352 -ngl 49 -ot "blk\\.14\\.ffn_(gate|up|gate_up|down).*=CPU,blk\\.15\\.ffn_(up|down|gate_up|gate)_(ch|)exps=CPU"\n';
  const common = parseFitParams(out);
  assertEquals(common, ["-c", "4352", "-ngl", "49", "-ot", "blk\\.14\\.ffn_(gate|up|gate_up|down).*=CPU,blk\\.15\\.ffn_(up|down|gate_up|gate)_(ch|)exps=CPU"]);
  const bench = commonToBenchFlags([...common, "-nkvo"]);
  assertEquals(bench, ["-ngl", "49", "-ot", "blk\\.14\\.ffn_(gate|up|gate_up|down).*=CPU;blk\\.15\\.ffn_(up|down|gate_up|gate)_(ch|)exps=CPU", "-nkvo", "1"]);
  // Back to common flags for llama-perplexity: ',' again, -nkvo bare, the load mode as run.
  assertEquals(benchToCommonFlags([...bench, "-lm", "none", "-ub", "2048", "-r", "2"]), ["-ngl", "49", "-ot", common[5], "-nkvo", "-lm", "none", "-ub", "2048"]);
  assertThrows(() => parseFitParams("nothing here"), Error, "no flags");
  assertEquals(splitShellWords(`a 'b c' "d\\"e" f`), ["a", "b c", 'd"e', "f"]);
});

test("llama-perplexity KL-divergence statistics parse", () => {
  const text = [
    "Mean PPL(Q)                   : 212858.693403 ± 20100.142663",
    "Mean PPL(base)                : 212859.337842 ± 20100.142457",
    "====== KL divergence statistics ======",
    "Mean    KLD:   0.000052 ±   0.000003",
    "Maximum KLD:   0.000401",
    "Same top p: 95.238 ± 1.343 %",
  ].join("\n");
  const s = parsePerplexity(text);
  assertEquals(s.meanKld, 0.000052);
  assertEquals(s.sameTopPct, 95.238);
  assertEquals(s.ppl, 212858.693403);
  assertEquals(s.refPpl, 212859.337842);
  assertEquals(parsePerplexity("0.06 I Final estimate: PPL = 212858.6934 +/- 20100.14016").ppl, 212858.6934);
  assertEquals(parsePerplexity("crash").meanKld, null);
});

test("llama-perplexity's lost log tail: a run that exits 0 without the statistics runs again, a failed one does not", async () => {
  const stats = "Mean    KLD:   0.000052 ±   0.000003\nSame top p: 95.238 ± 1.343 %\n";
  const runs = (outs: { code: number | null; stdout: string }[]) => {
    let i = 0;
    return () => Promise.resolve({ ...outs[Math.min(i++, outs.length - 1)]!, stderr: "" });
  };
  // Lost twice, then whole: the third run is returned.
  let r = await runUntilStats(runs([{ code: 0, stdout: "chunk 1" }, { code: 0, stdout: "chunk 1" }, { code: 0, stdout: stats }]));
  assertEquals(r.attempts, 3);
  assertEquals(parsePerplexity(r.run.stdout).meanKld, 0.000052);
  // Whole at once: one run.
  assertEquals((await runUntilStats(runs([{ code: 0, stdout: stats }]))).attempts, 1);
  // A crash is a result, not a lost log: no second run.
  r = await runUntilStats(runs([{ code: 134, stdout: "" }, { code: 0, stdout: stats }]));
  assertEquals(r.attempts, 1);
  assertEquals(r.run.code, 134);
  // Bounded by the attempts and by the caller's time.
  assertEquals((await runUntilStats(runs([{ code: 0, stdout: "" }]), 4)).attempts, 4);
  assertEquals((await runUntilStats(runs([{ code: 0, stdout: "" }]), 4, () => false)).attempts, 1);
});

test("naive -ngl counts whole layers (from the last) that fit the free VRAM", async () => {
  const dir = mkdtempSync(join(tmpdir(), "bench-naive-"));
  try {
    const path = join(dir, "moe.gguf");
    await synthesize({ shape: "qwen3moe-30b-a3b", quant: "Q8_0", out: path, sparse: true });
    const info = await readModel(path);
    const per = layerBytes(info);
    assertEquals(per.length, 48);
    const n = naiveGpuLayers(info, 12 * GiB, 1.5 * GiB, 4352);
    // ~0.63 GiB per layer: 16 layers fit 10.5 GiB, 17 do not.
    assertEquals(n, 16);
    const used = per.slice(48 - n).reduce((a, b) => a + b, 0) + (info.kvBytesPerToken / 48) * 4352 * n;
    assertLess(used, 10.5 * GiB);
    assertGreater(used + per[0] + (info.kvBytesPerToken / 48) * 4352, 10.5 * GiB);
    assertEquals(naiveGpuLayers(info, 1 * GiB, 1.5 * GiB, 4352), 0);
    assertEquals(naiveGpuLayers(info, 200 * GiB, 1.5 * GiB, 4352), 48);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("machine details: nvidia-smi, meminfo, ballast ready line, labels", () => {
  const gpus = parseNvidiaSmi("NVIDIA H200, 580.159.04, 143771, 143156, 5, 5, 16, 16, 9.0\n");
  assertEquals(gpus[0].name, "NVIDIA H200");
  assertEquals(gpus[0].pcieGenCurrent, 5);
  assertEquals(gpus[0].pcieWidthCurrent, 16);
  assertEquals(gpus[0].computeCapability, "9.0");
  assertEquals(parseMeminfo("MemTotal:       132000000 kB\nMemAvailable:   130000000 kB\n"), { total: 132000000 * 1024, available: 130000000 * 1024 });
  assertEquals(parseReadyLine("noise\nREADY free=12881887232 held=136656715776 total=150109880320\n"), { free: 12881887232, held: 136656715776, total: 150109880320 });
  assertEquals(parseReadyLine("ERROR free=1"), null);
  const base = { hostname: "h", kernel: "k", cpuModel: "c", cpuCores: 2, ramBytes: 0, ramAvailableBytes: 0, cudaVersion: null };
  assertEquals(machineLabel({ ...base, gpus }), "h200-x1");
  assertEquals(machineLabel({ ...base, gpus: [] }), "cpu-2c");
  assertEquals(parseArgs(["matrix", "--matrix", "f.json5", "--force", "--only", "a,b"]), { command: "matrix", opts: { matrix: "f.json5", force: "true", only: "a,b" }, positionals: [] });
});

test("the report of a committed GPU run names every method, its numbers and the ratios", () => {
  const res = JSON.parse(readFileSync("bench/results/2026-11-22-h200-x1-phases/results.json", "utf8")) as RunResults;
  const md = renderMarkdown(res);
  for (const r of res.results) {
    assert(md.includes(`| ${r.label} |`), `row for ${r.id}`);
    if (r.prefill) assert(md.includes(r.prefill.tps.toFixed(1)), `prefill of ${r.id}`);
  }
  assertMatch(md, /PCIe gen 5 x16/);
  const ratios = headlineRatios(res);
  assert(ratios.some((l) => l.startsWith("spillway plan vs llama.cpp default, end to end:")));
  assert(ratios.some((l) => l.startsWith("PyTorch shim vs accelerate offload:")));
  const svg = renderChartSvg(res);
  assertMatch(svg, /^<svg /);
  // One bar per method with a prefill figure and one per decode figure.
  const bars = svg.match(/<rect x=/g)?.length ?? 0;
  assertEquals(bars, res.results.filter((r) => r.prefill).length + res.results.filter((r) => r.decode).length);
});

test("llama flags: a check keeps the load mode it ran with (hybrid experts exist only in pinned memory; mmap'd CPU weights are repacked)", () => {
  const flags = ["-ngl", "99", "-ncmoe", "36", "-lm", "none", "-ub", "2048"];
  assertEquals(benchToCommonFlags(flags), ["-ngl", "99", "-ncmoe", "36", "-lm", "none", "-ub", "2048"]);
  assertEquals(benchToCommonFlags(["-ngl", "99", "-ncmoe", "36", "--load-mode", "mmap"]), ["-ngl", "99", "-ncmoe", "36", "--load-mode", "mmap"]);
});

test("report input: a results.json or its run folder; a missing file, bad JSON or another file is named in the error", () => {
  const dir = mkdtempSync(join(tmpdir(), "report-in-"));
  try {
    const committed = "bench/results/2026-11-22-h200-x1-phases";
    assertEquals(readResults(committed).file, join(committed, "results.json"));
    assertEquals(readResults(join(committed, "results.json")).results.version, 1);
    assertThrows(() => readResults(join(dir, "nope")), Error, `${join(dir, "nope")}: no such results file or folder`);
    mkdirSync(join(dir, "empty"));
    assertThrows(() => readResults(join(dir, "empty")), Error, `${join(dir, "empty", "results.json")}: cannot be read (ENOENT)`);
    writeFileSync(join(dir, "bad.json"), "{ nope");
    assertThrows(() => readResults(join(dir, "bad.json")), Error, `${join(dir, "bad.json")}: not JSON`);
    writeFileSync(join(dir, "other.json"), '{"version": 2}');
    assertThrows(() => readResults(join(dir, "other.json")), Error, `${join(dir, "other.json")}: not a harness results file (version 1)`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// Issue 22: bench/gpu/cpu_experts.sh (ggml's CPU expert kernel against plain loops over the same
// bytes) and its table (bench/harness/cpu_experts_summary.ts). The tool runs here against the
// patched CPU-only build that test/llamacpp_hybrid_cpu.test.ts uses (the same cached build): its
// ggml output must equal a scalar reference, and every method must report a rate.
import { test } from "node:test";
import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { hasProgram } from "../core/native_build.ts";
import { CPU_EXPERT_METHODS, cpuExpertsTable, readCpuExperts } from "../bench/harness/cpu_experts_summary.ts";
import { assert, assertEquals, assertMatch, assertThrows } from "./_assert.ts";
import { hasMatvecStreams, patchedCpuBuild, ROOT } from "./_native.ts";
import { withTempDir } from "./_tmp.ts";

const SCRIPT = join(ROOT, "bench", "gpu", "cpu_experts.sh");

function line(o: Record<string, unknown>): string {
  return JSON.stringify(o);
}
const shape = { memory: "pinned", threads: 16, blocks: 36, embd: 2048, ff: 768, experts: 128, used: 8, tokens: 12, bytesPerToken: 1444233216 };

test("cpu_experts summary: one row per configuration with the ratios that place the loss, and the probe's medians", async () => {
  await withTempDir("spillway-cpu-experts-", (dir) => {
    const file = join(dir, "cpu_experts.jsonl");
    writeFileSync(file, [
      line({ config: "30b-t16-pinned", method: "ggml-blocks", ...shape, meanGBps: 60, bestGBps: 70 }),
      line({ config: "30b-t16-pinned", check: "ggml-blocks", maxRelError: 2e-8 }),
      line({ config: "30b-t16-pinned", method: "ggml-token", ...shape, meanGBps: 66, bestGBps: 70 }),
      line({ config: "30b-t16-pinned", method: "rows", ...shape, meanGBps: 80, bestGBps: 90 }),
      line({ config: "30b-t16-pinned", method: "rows4", ...shape, meanGBps: 96, bestGBps: 99 }),
      line({ config: "30b-t16-pinned", check: "rows4", maxRelError: 0 }),
      line({ config: "30b-t16-pinned", method: "sum", ...shape, meanGBps: 100, bestGBps: 110 }),
      "",
      line({ config: "probe-t16", threads: 16, bytes: 4294967296, mode: "tuned", gbps: [120, 125, 130], checksum: 1 }),
      line({ config: "probe-t16", threads: 16, bytes: 4294967296, mode: "simple", gbps: [80, 90, 85], checksum: 1 }),
    ].join("\n") + "\n");
    const run = readCpuExperts(dir); // a folder reads its cpu_experts.jsonl
    assertEquals(run.configs.length, 1);
    assertEquals(run.configs[0].gbps, { "ggml-blocks": 60, "ggml-token": 66, rows: 80, rows4: 96, sum: 100 });
    assertEquals(run.configs[0].maxRelError, 2e-8); // the larger of the two checks
    assertEquals(run.probe, { threads: 16, tunedGBps: 125, simpleGBps: 85 });
    const table = cpuExpertsTable(run);
    // ggml / rows 0.75, rows / sum 0.80, rows4 / rows 1.20, sum / tuned 100/125 = 0.80
    assertMatch(table, /\| 30b-t16-pinned \| pinned \| 16 \| 2048x768, 8 of 128 \| 60\.0 \| 66\.0 \| 80\.0 \| 96\.0 \| 100\.0 \| 0\.75 \| 0\.80 \| 1\.20 \| 0\.80 \| 2\.0e-8 \|/);
    assertMatch(table, /tuned 125\.0 GB\/s, plain 85\.0 GB\/s/);
    assert(!table.includes("GGML_CPU_MATVEC_STREAMS"), "no streams table without -streams configurations");
    // A "-streams" configuration is set against the same configuration without the switch.
    writeFileSync(file, [
      line({ config: "30b-t16-pinned", method: "ggml-blocks", ...shape, meanGBps: 60, bestGBps: 70 }),
      line({ config: "30b-t16-pinned", method: "ggml-token", ...shape, meanGBps: 64, bestGBps: 70 }),
      line({ config: "30b-t16-pinned-streams", method: "ggml-blocks", ...shape, meanGBps: 75, bestGBps: 80 }),
      line({ config: "30b-t16-pinned-streams", method: "ggml-token", ...shape, meanGBps: 80, bestGBps: 85 }),
    ].join("\n"));
    assertMatch(cpuExpertsTable(readCpuExperts(file)), /\| 30b-t16-pinned \| 1\.25 \| 1\.25 \|/);
  });
});

test("cpu_experts summary: a bad line is named by file and line", async () => {
  await withTempDir("spillway-cpu-experts-", (dir) => {
    const file = join(dir, "bad.jsonl");
    const good = line({ config: "a", method: "rows", ...shape, meanGBps: 10, bestGBps: 11 });
    const cases: [string, RegExp][] = [
      [`${good}\nnot json\n`, /bad\.jsonl:2: not JSON/],
      [line({ config: "a", method: "fast", ...shape, meanGBps: 1 }), /bad\.jsonl:1: field method must be one of ggml-blocks/],
      [line({ config: "a", method: "rows", ...shape, meanGBps: 0 }), /bad\.jsonl:1: field meanGBps must be positive/],
      [line({ method: "rows", ...shape, meanGBps: 1 }), /bad\.jsonl:1: field config must be a string/],
      [line({ config: "a", check: "ggml-blocks", maxRelError: 0 }), /bad\.jsonl:1: a check for configuration a, which has no figures/],
      [`${good}\n${line({ config: "p", mode: "tuned", threads: 2, bytes: 1, gbps: [] })}`, /bad\.jsonl:2: cpu_bw: field gbps/],
      ["\n", /bad\.jsonl: no configuration's figures/],
    ];
    for (const [text, error] of cases) {
      writeFileSync(file, text);
      assertMatch(assertThrows(() => readCpuExperts(file), Error, undefined, text).message, error);
    }
    assertThrows(() => readCpuExperts(join(dir, "missing.jsonl")), Error, "cannot be read (ENOENT)");
  });
});

const canBuild = hasProgram("cmake") && hasProgram("g++") && hasProgram("gcc");


test("cpu_experts.sh --quick: ggml's experts equal the scalar reference and every method reports a rate", { skip: canBuild ? false : "cmake, g++ or gcc missing", timeout: 3_600_000 }, async () => {
  const bin = patchedCpuBuild();
  const source = join(bin, "..", "..", "src"); // build.sh: <dir>/build/bin beside <dir>/src
  await withTempDir("spillway-cpu-experts-", (dir) => {
    const r = spawnSync("bash", [SCRIPT, dir, "--source", source, "--ggml-lib", bin, "--quick"], { encoding: "utf8" });
    assertEquals(r.status, 0, `cpu_experts.sh: exit ${r.status}\n${r.stderr}`);
    const run = readCpuExperts(dir);
    // The build has patch 0006, so the configuration runs again with GGML_CPU_MATVEC_STREAMS=4: its
    // check compares ggml's four-stream path with the scalar reference.
    assertEquals(run.configs.map((c) => c.config), ["quick-30b", "quick-30b-streams"]);
    for (const c of run.configs) {
      assertEquals(Object.keys(c.gbps).sort(), [...CPU_EXPERT_METHODS].sort(), c.config);
      assert(c.maxRelError !== undefined && c.maxRelError < 1e-3, `${c.config}: max relative error ${c.maxRelError}`);
      assertEquals([c.memory, c.threads, c.shape], ["malloc", 2, "2048x768, 8 of 128"]);
    }
    // Where the kernel is compiled, ggml's log says the streams ran (else the switch is inert).
    if (hasMatvecStreams()) assertMatch(readFileSync(join(dir, "cpu_experts.log"), "utf8"), /GGML_CPU_MATVEC_STREAMS=4: one-token Q8_0 mat-vec as four row streams per thread/);
    // The tool's own argument checks (built here the way the script builds it).
    const tool = join(dir, "cpu_experts");
    execFileSync("gcc", ["-O2", "-fopenmp", "-o", tool, join(ROOT, "bench", "gpu", "cpu_experts.c"), `-I${join(source, "ggml", "include")}`, `-L${bin}`, "-lggml-cpu", "-lggml-base", "-lm", "-ldl", `-Wl,-rpath,${bin}`]);
    for (const [args, error] of [
      [["--threads", "0"], /--threads must be a positive whole number, not '0'/],
      [["--used", "9", "--experts", "8"], /--used must be at most --experts/],
      [["--ff", "100"], /--embd and --ff must be multiples of 32/],
      [["--memory", "swap"], /--memory must be malloc, pinned or nohuge/],
      [["--label", 'a"b'], /--label must not hold quotes/],
      [["--blocks"], /an option lacks its value/],
      [["--methods", "rows,row"], /unknown method 'row' in --methods/],
      [["--methods", ""], /--methods names no method/],
    ] as [string[], RegExp][]) {
      const t = spawnSync(tool, args, { encoding: "utf8" });
      assertEquals(t.status, 2, args.join(" "));
      assertMatch(t.stderr, error);
    }
  });
});

test("cpu_experts.sh: bad usage exits 2 with the reason", async () => {
  await withTempDir("spillway-cpu-experts-", (dir) => {
    const run = (args: string[], env: Record<string, string> = {}) => spawnSync("bash", [SCRIPT, ...args], { encoding: "utf8", env: { ...process.env, ...env } });
    let r = run([]);
    assertEquals(r.status, 2);
    assertMatch(r.stderr, /usage: cpu_experts\.sh OUTDIR/);
    r = run([dir, "--source", dir]);
    assertEquals(r.status, 2);
    assertMatch(r.stderr, /is not a llama\.cpp source \(no ggml\/include\/ggml-cpu\.h\)/);
    r = run([dir, "--frobnicate"]);
    assertEquals(r.status, 2);
    assertMatch(r.stderr, /unknown option --frobnicate/);
  });
});

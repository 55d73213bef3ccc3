// The harness's server section (bench/harness/server.ts) against a fake llama-server
// (test/fixtures/fake_llama_server.mjs, run in the runtime running this test): waiting for
// /health, llama-server's timings and their mean/stddev, the greedy-token check, a server that
// never gets ready or exits early, a server that ignores SIGTERM and leaves a detached process
// behind (SIGKILL, then the leftover found by its `--port` and killed), the server section of a
// matrix, the command lines and recipe, `spillway run --dry-run` of that recipe, and the ratios.
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { freePort } from "./_net.ts";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { test } from "node:test";
import { assert, assertAlmostEquals, assertEquals, assertGreater, assertGreaterOrEqual, assertMatch, assertRejects, assertStringIncludes, assertThrows } from "./_assert.ts";
import { ROOT } from "./_native.ts";
import { RecipeSchemaError } from "../core/errors.ts";
import { readModel } from "../engine/model/mod.ts";
import { synthesize } from "../engine/model/synth.ts";
import { runCommand } from "../commands/run.ts";
import { loadMatrix, parseMatrix, type ServerSection } from "../bench/harness/matrix.ts";
import type { MethodResult, RunResults } from "../bench/harness/results.ts";
import type { RunContext } from "../bench/harness/runner.ts";
import {
  compareTokens,
  findPortProcesses,
  healthStatus,
  measureServer,
  parseTimings,
  promptTokenIds,
  runServerSection,
  serverArgv,
  serverContext,
  serverFigures,
  serverRecipe,
  ServerStartError,
  spillwayRunSummary,
  startServer,
  tokenCheck,
} from "../bench/harness/server.ts";
import { headlineRatios, renderMarkdown, serverRatios } from "../bench/harness/table.ts";

const FAKE = join(ROOT, "test", "fixtures", "fake_llama_server.mjs");

/** argv running the fake server in the runtime running this test. */
function fakeArgv(args: string[]): string[] {
  if (process.versions.deno) return [process.execPath, "run", "-A", FAKE, ...args];
  return [process.execPath, FAKE, ...args];
}

const opts = (port: number) => ({ port, lifetimeS: 60, readyTimeoutS: 20, graceMs: 5000, pollMs: 50 });

test("waits through 503s, parses timings, mean/stddev over the measured requests, stops cleanly", async () => {
  const port = await freePort();
  const h = await startServer(fakeArgv(["--port", String(port), "--unready", "3"]), opts(port));
  let stopped = false;
  try {
    assertEquals(await healthStatus(port), 200);
    const stats = await (await fetch(`http://127.0.0.1:${port}/stats`)).json() as { health: number; requests: number };
    // 3 answers of 503, then the 200 startServer waited for, then ours.
    assertEquals(stats.health, 5);
    assertGreater(h.readySeconds, 0);
    const prompt = promptTokenIds(32, 151936);
    const samples = await measureServer(port, prompt, 8, 2, 10);
    // A warm-up (request 0) and two measured requests (1, 2).
    assertEquals(samples.length, 2);
    assertEquals(samples[0].timings, { promptN: 32, promptMs: 32 / 1100 * 1000, promptTps: 1100, predictedN: 8, predictedMs: 8 / 51 * 1000, predictedTps: 51 });
    assertEquals(samples[1].timings.promptTps, 1200);
    assertEquals(samples[0].tokens?.length, 8);
    assertEquals(samples[0].tokens, samples[1].tokens);
    const f = serverFigures(samples);
    assertEquals(f.prefill!.tokens, 32);
    assertEquals(f.prefill!.tps, 1150);
    assertAlmostEquals(f.prefill!.stddev, Math.SQRT2 * 50, 1e-9);
    assertEquals(f.decode!.tps, 51.5);
    assertAlmostEquals(f.decode!.stddev, Math.SQRT1_2, 1e-9);
    assertEquals(f.endToEnd!.prompt, 32);
    assertEquals(f.endToEnd!.gen, 8);
    assertAlmostEquals(f.endToEnd!.seconds, (samples[0].seconds + samples[1].seconds) / 2, 1e-12);
    assertAlmostEquals(f.endToEnd!.tps, 40 / f.endToEnd!.seconds, 1e-9);

    // The same prompt on a server whose tokens differ from index 2 on: the check fails.
    const port2 = await freePort();
    const h2 = await startServer(fakeArgv(["--port", String(port2), "--diverge-at", "2"]), opts(port2));
    try {
      const other = await measureServer(port2, prompt, 8, 1, 10);
      const a = compareTokens(samples[0].tokens!, other[0].tokens!, 4);
      assertEquals(a, { prefix: 2, same: 2, total: 8, pass: false });
      const c = tokenCheck(samples[0].tokens, other[0].tokens, 4, false);
      assertEquals(c.pass, false);
      assertMatch(c.detail!, /first 2 of 8 tokens agree/);
      assertEquals(tokenCheck(samples[0].tokens, samples[1].tokens, 4, false).pass, true);
    } finally {
      const st2 = await h2.stop();
      assertEquals(st2.orphans, 0);
    }

    const st = await h.stop();
    stopped = true;
    assertEquals(st.exitStatus, 0);
    assertEquals(st.killed, false);
    assertEquals(st.orphans, 0);
    assertEquals(st.portFree, true);
    assertEquals(findPortProcesses(port), []);
    assertEquals(await healthStatus(port, 500), null);
  } finally {
    if (!stopped) await h.stop();
  }
});

test("a server that never gets ready: a clear error naming the command, nothing left running", async () => {
  const port = await freePort();
  const argv = fakeArgv(["--port", String(port), "--unready", "-1"]);
  const e = await assertRejects(() => startServer(argv, { ...opts(port), readyTimeoutS: 1 }), ServerStartError);
  assertMatch(e.message, /not ready after 1 s \(last \/health: HTTP 503\)/);
  assertStringIncludes(e.message, "fake_llama_server.mjs");
  assertStringIncludes(e.message, `--port ${port}`);
  assertEquals(e.stop.orphans, 0);
  assertEquals(e.stop.portFree, true);
  assertEquals(findPortProcesses(port), []);

  const early = await assertRejects(() => startServer(fakeArgv(["--port", String(port), "--exit-early"]), opts(port)), ServerStartError);
  assertMatch(early.message, /exited with status 3 before \/health answered 200/);
  assertStringIncludes(early.message, "failed to load model");
});

test("a port already answering is refused, not measured", async () => {
  const port = await freePort();
  const h = await startServer(fakeArgv(["--port", String(port)]), opts(port));
  try {
    const e = await assertRejects(() => startServer(fakeArgv(["--port", String(port)]), opts(port)), ServerStartError);
    assertMatch(e.message, new RegExp(`port ${port} is in use`));
  } finally {
    await h.stop();
  }
});

test("SIGTERM ignored: SIGKILL after the grace time; a detached leftover is found by its port and killed", async () => {
  const port = await freePort();
  const h = await startServer(fakeArgv(["--port", String(port), "--ignore-term", "--spawn-orphan"]), { ...opts(port), graceMs: 500 });
  // The detached process is up once it shows in /proc with our port (the server itself too).
  for (let i = 0; i < 100 && findPortProcesses(port).filter((p) => p.argv.includes("--sleeper")).length === 0; i++) await new Promise((r) => setTimeout(r, 50));
  assertEquals(findPortProcesses(port).filter((p) => p.argv.includes("--sleeper")).length, 1);
  const st = await h.stop();
  assertEquals(st.killed, true);
  assertEquals(st.exitStatus, 137);
  assertEquals(st.orphans, 1);
  assertMatch(st.orphanCommands![0], /--sleeper --port/);
  assertEquals(st.portFree, true);
  for (let i = 0; i < 40 && findPortProcesses(port).length > 0; i++) await new Promise((r) => setTimeout(r, 50));
  assertEquals(findPortProcesses(port), []);
});

test("timings and prompt ids: errors name the missing field; ids are deterministic and in range", () => {
  assertThrows(() => parseTimings({ content: "" }), Error, "no 'timings'");
  assertThrows(() => parseTimings({ timings: { prompt_n: 1, prompt_ms: 1, prompt_per_second: 1, predicted_n: 1, predicted_ms: 1 } }), Error, "timings.predicted_per_second");
  const a = promptTokenIds(4096, 151936);
  assertEquals(a, promptTokenIds(4096, 151936));
  assert(a.every((x) => Number.isInteger(x) && x >= 100 && x < 151936));
  assertGreater(new Set(a).size, 4000);
  const b = promptTokenIds(500, undefined);
  assert(b.every((x) => x >= 1 && x < 256));
  assertEquals(compareTokens([1, 2, 3], [1, 2, 3], 16).pass, true); // shorter than k: all of it
  assertEquals(compareTokens([], [], 16).pass, false);
  assertEquals(tokenCheck(null, [1], 16, false).pass, null);
  assertEquals(tokenCheck([1], null, 16, false).pass, false);
  assertEquals(tokenCheck(null, [1, 2], 16, true).mode, "none");
});

const baseMatrix = {
  models: [{ id: "moe", shape: "tiny-moe", quant: "Q8_0" }],
  freeVramGiB: [12],
  server: {
    methods: [
      { id: "server-all-vram", config: "all-vram" },
      { id: "server-default", config: "default" },
      { id: "server-hand", config: "flags", flags: ["-ngl", "99", "-ncmoe", "36"] },
      { id: "spillway-run", config: "spillway-run" },
    ],
  },
};

test("matrix server section: defaults, a matrix of only it, errors name the field", () => {
  const m = parseMatrix(JSON.stringify(baseMatrix), "m.json5");
  assertEquals(m.methods, []);
  assertEquals(m.workloads, []);
  const s = m.server!;
  assertEquals({ model: s.model, prompt: s.prompt, gen: s.gen, repetitions: s.repetitions, port: s.port, agreeTokens: s.agreeTokens, args: s.args }, { model: "moe", prompt: 4096, gen: 256, repetitions: 2, port: 18080, agreeTokens: 16, args: [] });
  assertEquals(s.methods.map((x) => [x.config.kind, x.ballast]), [["all-vram", false], ["default", true], ["flags", true], ["spillway-run", true]]);

  const bad = (server: Record<string, unknown>, re: RegExp, extra: Record<string, unknown> = {}): void => {
    const e = assertThrows(() => parseMatrix(JSON.stringify({ ...baseMatrix, ...extra, server: { ...baseMatrix.server, ...server } }), "m.json5"), RecipeSchemaError);
    assertMatch(e.message, re);
  };
  bad({ methods: [{ id: "a", config: "all-vram" }, { id: "b", config: "fit" }] }, /m\.json5: server\.methods\[1\]\.config: must be one of all-vram, default, flags, spillway-run/);
  bad({ methods: [{ id: "a", config: "flags" }] }, /server\.methods\[0\]\.flags: a 'flags' method needs at least one flag/);
  bad({ methods: [{ id: "a", config: "default", flags: ["-ngl", "1"] }] }, /server\.methods\[0\]\.flags: only a 'flags' method takes flags/);
  bad({ methods: [{ id: "a", config: "default", port: 1 }] }, /server\.methods\[0\]\.port: unknown field/);
  bad({ methods: [] }, /server\.methods: needs at least one method/);
  bad({ methods: [{ id: "a", config: "default" }, { id: "a", config: "all-vram" }] }, /server\.methods: duplicate id 'a'/);
  bad({ port: 80 }, /server\.port: must be a number >= 1024/);
  bad({ prompt: 0 }, /server\.prompt: must be a number >= 1/);
  bad({ model: "other" }, /server\.model: no model with id 'other'/);
  bad({ bogus: 1 }, /server\.bogus: unknown field/);
  bad({ args: [1] }, /server\.args\[0\]: must be a non-empty string/);
  bad({}, /server\.methods\[0\]\.id: duplicate id 'server-all-vram' \(also in methods\)/, { workloads: [{ id: "w", prompt: 8, gen: 4 }], methods: [{ id: "server-all-vram", config: "all-vram" }] });
  bad({}, /freeVramGiB: server methods with a ballast need at least one level/, { freeVramGiB: [] });
  // llama-bench methods still need a workload; a matrix needs something to run.
  let e = assertThrows(() => parseMatrix(JSON.stringify({ ...baseMatrix, methods: [{ id: "x", config: "fit" }] }), "m.json5"), RecipeSchemaError);
  assertMatch(e.message, /workloads: needs at least one workload/);
  e = assertThrows(() => parseMatrix(JSON.stringify({ models: baseMatrix.models, freeVramGiB: [12], workloads: [{ id: "w", prompt: 8, gen: 4 }] }), "m.json5"), RecipeSchemaError);
  assertMatch(e.message, /methods: nothing to run/);
});

test("the committed run matrix: only the server section, 4096 + 256, ids the ratios expect", () => {
  const m = loadMatrix("bench/matrices/moe30b-12g-run.json5");
  assertEquals(m.methods, []);
  assertEquals(m.torch, null);
  assertEquals(m.freeVramGiB, [12]);
  assertEquals(m.threads, 16);
  const s = m.server!;
  assertEquals([s.prompt, s.gen, s.repetitions], [4096, 256, 2]);
  assertEquals(s.methods.map((x) => x.config.kind), ["all-vram", "spillway-run", "default", "flags"]);
  assertEquals(serverContext(s), 4608);
});

test("command lines and the recipe of each server method", () => {
  const s = parseMatrix(JSON.stringify({ ...baseMatrix, server: { ...baseMatrix.server, port: 18123, args: ["-np", "1"] } }), "m.json5").server as ServerSection;
  const p = { llamaBin: "/ll/bin", node: "/n/node", spillwayCli: "/p/spillway.mjs" };
  const net = ["--port", "18123", "--host", "127.0.0.1", "-np", "1"];
  const base = ["/ll/bin/llama-server", "-m", "/m.gguf", "-c", "4608", "-t", "16"];
  assertEquals(serverArgv(p, s, s.methods[0], "/m.gguf", 16, null), [...base, "-ngl", "99", ...net]);
  assertEquals(serverArgv(p, s, s.methods[1], "/m.gguf", 16, null), [...base, ...net]);
  assertEquals(serverArgv(p, s, s.methods[2], "/m.gguf", 16, null), [...base, "-ngl", "99", "-ncmoe", "36", ...net]);
  assertEquals(serverArgv(p, s, s.methods[3], "/m.gguf", 16, "/w/r.json"), ["/n/node", "/p/spillway.mjs", "run", "/w/r.json", "--", ...net]);
  assertThrows(() => serverArgv({ ...p, spillwayCli: null }, s, s.methods[3], "/m.gguf", 16, "/w/r.json"), Error, "spillway.mjs missing");
  assertEquals(serverRecipe(s, s.methods[3], "/m.gguf", "/ll/bin", 16), {
    name: "bench-spillway-run",
    model: { path: "/m.gguf" },
    runtime: { name: "llama.cpp", binary: "/ll/bin/llama-server", program: "server" },
    context: 4608,
    threads: 16,
    workload: { promptTokens: 4096, generatedTokens: 256 },
    placement: "auto",
    hardware: "probe",
  });
  const sum = spillwayRunSummary("model     /m.gguf\nplan      ncmoe-34 (experts of 34 blocks on the CPU)\nsettings  ctx 4608, batch 2048/2048\nwhy       fastest\nlaunch    /ll/bin/llama-server -m /m.gguf --port 18123\n");
  assertEquals(sum.derivedFrom, "spillway run: ncmoe-34 (experts of 34 blocks on the CPU); ctx 4608, batch 2048/2048; fastest");
  assertEquals(sum.launched, "/ll/bin/llama-server -m /m.gguf --port 18123");
});

test("spillway run --dry-run of the section's recipe: llama-server with the plan's flags, then --port/--host", async () => {
  const dir = mkdtempSync(join(tmpdir(), "bench-server-"));
  try {
    const model = join(dir, "moe.gguf");
    await synthesize({ shape: "qwen3moe-30b-a3b", quant: "Q8_0", out: model, sparse: true });
    const s = parseMatrix(JSON.stringify(baseMatrix), "m.json5").server!;
    const recipe = join(dir, "recipe.json");
    writeFileSync(recipe, JSON.stringify(serverRecipe(s, s.methods[3], model, "/ll/bin", 16)));
    let text = "";
    const status = await runCommand(recipe, ["--port", "18080", "--host", "127.0.0.1"], { dryRun: true, hardware: "h200-12gib-free", out: (t) => (text += t), err: () => {} });
    assertEquals(status, 0);
    const launch = text.split("\n").find((l) => l.startsWith("command "))!;
    assertMatch(launch, /\/ll\/bin\/llama-server -m \S+moe\.gguf -ngl \d+/);
    assertMatch(launch, / -c 4608 /);
    assertMatch(launch, / -t 16 /);
    assertMatch(launch, / -fit off --port 18080 --host 127\.0\.0\.1$/);
    assertMatch(spillwayRunSummary(text).derivedFrom, /^spillway run: \S+/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A shell script running `args` in the runtime running this test (what ctx.node / llama-server are). */
function script(path: string, args: string[]): string {
  const q = (a: string): string => `'${a.replace(/'/g, "'\\''")}'`;
  writeFileSync(path, `#!/bin/sh\nexec ${args.map(q).join(" ")} "$@"\n`);
  chmodSync(path, 0o755);
  return path;
}

test("the whole section without a ballast: llama-server started directly and by the real `spillway run`", async () => {
  const dir = mkdtempSync(join(tmpdir(), "bench-section-"));
  try {
    const bin = join(dir, "bin");
    mkdirSync(bin);
    mkdirSync(join(dir, "work"));
    // llama-server is the fake; spillway runs from cli.ts in this runtime.
    script(join(bin, "llama-server"), fakeArgv([]));
    const runtime = process.versions.deno ? [process.execPath, "run", "-A"] : process.versions.bun ? [process.execPath] : [process.execPath, "--import", "tsx"];
    const node = script(join(dir, "node"), runtime);
    const model = join(dir, "tiny.gguf");
    await synthesize({ shape: "tiny-moe", quant: "Q8_0", out: model });
    const port = await freePort();
    const matrix = parseMatrix(JSON.stringify({
      models: [{ id: "tiny", shape: "tiny-moe", quant: "Q8_0" }],
      freeVramGiB: [12],
      threads: 2,
      server: {
        prompt: 64, gen: 16, repetitions: 2, timeoutS: 60, port, agreeTokens: 8,
        methods: [
          { id: "server-all-vram", config: "all-vram" },
          { id: "spillway-run", config: "spillway-run", ballast: false },
          { id: "server-hand", config: "flags", flags: ["-ngl", "99", "-ncmoe", "2"], ballast: false },
        ],
      },
    }), "m.json5");
    const ctx: RunContext = {
      root: ROOT, llamaBin: bin, work: join(dir, "work"), out: join(dir, "out"), deadline: Date.now() + 120_000, logFile: join(dir, "steps.log"),
      only: null, python: "python3", spillwayCli: join(ROOT, "cli.ts"), node, notes: [],
    };
    const results: RunResults = {
      version: 1, kind: "gpu", matrix: "t", startedAt: new Date().toISOString(), finishedAt: null,
      machine: {} as RunResults["machine"], software: {}, phases: {}, results: [], notes: [],
    };
    let saves = 0;
    await runServerSection({
      ctx, matrix, model: matrix.models[0], info: await readModel(model), modelPath: model, results, save: () => saves++,
      log: () => {}, left: () => Math.floor((ctx.deadline - Date.now()) / 1000) - 10, want: () => true,
    });
    assertEquals(results.results.map((r) => [r.id, r.status, r.error ?? ""]), [["server-all-vram", "ok", ""], ["spillway-run", "ok", ""], ["server-hand", "ok", ""]]);
    assertEquals(saves, 3);
    const [ref, sp, hand] = results.results;
    assertEquals(ref.check.mode, "none");
    assertEquals(ref.server!.tokens!.length, 16);
    assertEquals([sp.check.pass, hand.check.pass], [true, true]);
    assertEquals(sp.prefill!.tokens, 64);
    assertEquals(sp.decode!.tokens, 16);
    // Warm-up = request 0: the measured requests are 1 and 2.
    assertEquals(sp.prefill!.samples, [1100, 1200]);
    assertEquals(sp.command.slice(1, 3), [join(ROOT, "cli.ts"), "run"]);
    assertEquals(sp.env.SPILLWAY_SHIM, join(ROOT, "shim/build/libspillway_shim.so"));
    assertMatch(sp.derivedFrom!, /^spillway run: \S+/);
    assertMatch(sp.server!.launched!, new RegExp(`llama-server -m \\S+tiny\\.gguf .* -c 256 .* -t 2 .*--port ${port} --host 127\\.0\\.0\\.1$`));
    assertMatch(hand.command.join(" "), new RegExp(`llama-server -m \\S+ -c 256 -t 2 -ngl 99 -ncmoe 2 --port ${port} --host 127\\.0\\.0\\.1$`));
    for (const r of results.results) {
      // spillway forwarded SIGTERM to llama-server and exited with its status; nothing left behind.
      assertEquals(r.server!.stop, { exitStatus: 0, seconds: r.server!.stop!.seconds, killed: false, orphans: 0, portFree: true }, r.id);
    }
    assertEquals(findPortProcesses(port), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

function serverResult(id: string, config: string, pp: number, tg: number, seconds: number): MethodResult {
  const t = (tps: number, tokens: number) => ({ tokens, tps, stddev: 0, samples: [tps] });
  return {
    id, label: id, runtime: "llama-server", model: "moe30b", freeVramGiB: config === "all-vram" ? null : 12, ballastFreeBytes: null, workload: "p4096-n256",
    command: ["llama-server"], env: {}, prefill: t(pp, 4096), decode: t(tg, 256),
    endToEnd: { ...t(4352 / seconds, 4352), prompt: 4096, gen: 256, seconds },
    check: { mode: "close", pass: true, how: "tokens" }, seconds: 30, status: "ok",
    server: { config, port: 18080, readySeconds: 12.5, stop: { exitStatus: 0, seconds: 0.4, killed: false, orphans: 0, portFree: true } },
  };
}

test("server ratios: spillway run vs the best hand-tuned and vs the defaults; llama-bench ratios unchanged", () => {
  const res: RunResults = {
    version: 1, kind: "gpu", matrix: "moe30b-12g-run", startedAt: "2026-11-23T00:00:00Z", finishedAt: null,
    machine: { gpus: [], cudaVersion: null, cpuModel: "cpu", cpuCores: 16, ramBytes: 0, kernel: "k" } as unknown as RunResults["machine"],
    software: {}, phases: {}, notes: [],
    results: [
      serverResult("server-all-vram", "all-vram", 11000, 250, 1.5),
      serverResult("server-default", "default", 1400, 38, 10),
      serverResult("server-hand", "flags", 8000, 40, 9),
      serverResult("server-hand2", "flags", 7000, 42, 8),
      { ...serverResult("spillway-run", "spillway-run", 7600, 40.5, 8.5), server: { config: "spillway-run", port: 18080, readySeconds: 14, launched: "llama-server -m m.gguf -ncmoe 36", stop: { exitStatus: 0, seconds: 0.3, killed: false, orphans: 0, portFree: true } } },
    ],
  };
  const lines = serverRatios(res);
  assertEquals(lines[0], "spillway run vs best hand-tuned llama-server: prefill 95% (server-hand), decode 96% (server-hand2), end to end 0.94x (target: prefill and decode >= 95%)");
  assertEquals(lines[1], "spillway run vs llama-server defaults, end to end 4096+256: 1.18x (8.50 s vs 10.00 s; prefill 5.43x, decode 1.07x)");
  // The llama-bench ratios look at llama-bench results only (none here).
  assertEquals(headlineRatios(res), lines);
  const md = renderMarkdown(res);
  assertStringIncludes(md, "## Server starts and stops");
  assertStringIncludes(md, "- spillway-run: ready in 14.0 s; exit 0 0.3 s after SIGTERM, 0 process(es) left, port free; launched `llama-server -m m.gguf -ncmoe 36`");
  assertGreaterOrEqual(md.split("\n").filter((l) => l.startsWith("| server-") || l.startsWith("| spillway-run")).length, 5);
});

// The launcher (exit status, missing programs, environment, stats-file cleanup), wrapping a
// llama.cpp command line, and `top --once`.
import { mkdtempSync, rmSync, writeFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync } from "node:fs";
import process from "node:process";
import { statsUserDir } from "../shim/stats.ts";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { assert, assertEquals, assertMatch, assertRejects, assertThrows } from "./_assert.ts";
import { RuntimeMissingError } from "../core/errors.ts";
import { childEnv, cleanupStatsFiles, exitStatus, launch, launchSpec, resolveExecutable } from "../engine/launch/mod.ts";
import { renderSnapshot, snapshot } from "../engine/monitor.ts";
import { runCommand, type RunReport } from "../commands/run.ts";
import { topCommand } from "../commands/top.ts";
import { mergeUserArgs, modelArgOf } from "../engine/runtimes/llamacpp.ts";
import { adapterFor } from "../engine/runtimes/mod.ts";
import { synthesize } from "../engine/model/synth.ts";

test("launchSpec: exit status of the child, 128 + n when a signal ends it", async () => {
  const ok = launchSpec({ argv: ["sh", "-c", "exit 3"], env: {} }, { stdio: "ignore", forwardSignals: false });
  assertEquals(await ok.exited, 3);
  const killed = launchSpec({ argv: ["sleep", "30"], env: {} }, { stdio: "ignore", forwardSignals: false, newProcessGroup: true });
  assertEquals(await killed.stop("SIGTERM"), 143);
  assertEquals(exitStatus(null, "SIGINT"), 130);
  // The whole table of the OS, not a hand-picked list (SIGALRM was missing from the old one).
  assertEquals([exitStatus(null, "SIGALRM"), exitStatus(null, "SIGKILL"), exitStatus(7, null), exitStatus(null, null)], [142, 137, 7, 1]);
});

test("launchSpec: the spec's environment reaches the child; LD_PRELOAD goes before ours", async () => {
  const h = launchSpec({ argv: ["sh", "-c", 'printf "%s|%s" "$SPILLWAY_X" "$LD_PRELOAD"'], env: { SPILLWAY_X: "42" } }, { stdio: "pipe", forwardSignals: false });
  let out = "";
  h.stdout!.on("data", (d) => (out += d));
  assertEquals(await h.exited, 0);
  assertEquals(out, "42|");
  assertEquals(childEnv({ argv: [], env: { LD_PRELOAD: "/a.so" } }, { LD_PRELOAD: "/b.so", PATH: "/bin" }).LD_PRELOAD, "/a.so:/b.so");
});

test("missing program: RuntimeMissingError names it and how to get it; nothing starts", () => {
  const e = assertThrows(
    () => launchSpec({ argv: ["llama-server-not-installed", "-m", "x"], env: {} }, { runtime: "llama.cpp", hint: "Install llama.cpp." }),
    RuntimeMissingError,
  );
  assertMatch(e.message, /llama\.cpp: 'llama-server-not-installed' was not found\. Install llama\.cpp\./);
  assertEquals(resolveExecutable("sh")?.endsWith("/sh"), true);
  assertEquals(resolveExecutable("./no/such/prog"), null);
});

test("missing runtime through the adapter: vLLM says how to install it", () => {
  const plan = {
    version: 1 as const, model: { path: "/m", architecture: "llama", quantization: "BF16", bytes: 1 }, runtime: "vllm",
    hardware: { name: "x", source: "builtin" as const }, workload: { objective: "chat" as const, promptTokens: 1, generatedTokens: 1 },
    candidates: [], chosen: "c", reason: "", predicted: { prefillTps: 1, decodeTps: 1, totalSeconds: 1 },
    memory: { vram: 0, host_mapped: 0, host_cpu: 0, disk: 0 },
    settings: { contextLength: 1, batch: 1, ubatch: 1, threads: 1, gpuLayers: 0, cpuMoeLayers: 0, overrideTensors: [], kvOnHost: false, loadMode: "mmap" as const, shim: null },
  };
  const e = assertThrows(() => launch(plan, { binary: "vllm-not-installed-here" }), RuntimeMissingError);
  assertMatch(e.message, /pip install vllm/);
  assertEquals(adapterFor("vllm").binaryHint.binary, "vllm");
});

test("cleanupStatsFiles: removes the records of dead processes (by pid and start time, or no longer mapped), keeps other files", () => {
  const dir = mkdtempSync(join(tmpdir(), "spillway-stats-"));
  try {
    const udir = statsUserDir(dir);
    mkdirSync(udir, { mode: 0o700 });
    const stat = readFileSync("/proc/self/stat", "latin1");
    const ticks = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
    const ns = statSync("/proc/self/ns/pid", { bigint: true }).ino;
    const dead = join(udir, `999999-1-${ns}`); // no such process
    const reused = join(udir, `${process.pid}-1-${ns}`); // this pid, another start time: an earlier process
    const unmapped = join(udir, `${process.pid}-${ticks}-${ns}`); // this process, which does not map it: exec'd since
    const foreign = join(udir, `1-1-${ns + 1n}`); // another pid namespace: its pid says nothing here
    for (const f of [dead, reused, unmapped, foreign, join(udir, "other.1")]) writeFileSync(f, "x");
    const removed = cleanupStatsFiles(dir);
    assertEquals(removed.sort(), [reused, dead, unmapped].sort());
    assertEquals(readdirSync(udir).sort(), ["1-1-" + String(ns + 1n), "other.1"]);
    // A live process's record is kept: test/shim_stats_lifetime.test.ts.
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("wrapped llama.cpp command: planned flags, the user's own flags win", async () => {
  assertEquals(
    mergeUserArgs(["-m", "a.gguf", "-ngl", "49", "-nkvo", "-c", "8192", "-t", "8"], ["--ctx-size", "2048", "-m", "b.gguf", "--no-kv-offload"]),
    ["-ngl", "49", "-t", "8", "--ctx-size", "2048", "-m", "b.gguf", "--no-kv-offload"],
  );
  assertEquals(modelArgOf(["--port", "8080", "--model=/x.gguf"]), "/x.gguf");
  const dir = mkdtempSync(join(tmpdir(), "spillway-wrap-"));
  try {
    const model = join(dir, "tiny.gguf");
    await synthesize({ shape: "tiny-moe", quant: "Q8_0", out: model });
    let text = "";
    const code = await runCommand(null, ["llama-server", "-m", model, "-c", "1024", "--port", "8081"], {
      dryRun: true, json: true, hardware: "rtx-5070-12gb", out: (s) => (text += s), err: () => {},
    });
    assertEquals(code, 0);
    const r = JSON.parse(text) as RunReport;
    assertEquals(r.plan!.runtime, "llama.cpp");
    assertEquals(r.plan!.settings.contextLength, 1024, "the user's -c is planned for");
    const argv = r.launch.argv;
    assertEquals(argv[0], "llama-server");
    assertEquals(argv.filter((a) => a === "-m").length, 1, "one -m");
    assertEquals(argv.slice(-6), ["-m", model, "-c", "1024", "--port", "8081"], "the user's arguments, as typed, last");
    assert(argv.includes("-ngl") && argv.includes("-fit"), "planned flags the user did not give");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("top --once: a table (or JSON) of the stats directory and the kernel module", async () => {
  const dir = mkdtempSync(join(tmpdir(), "spillway-top-"));
  try {
    mkdirSync(join(dir, "empty"));
    let text = "";
    assertEquals(await topCommand({ once: true, statsDir: join(dir, "empty"), out: (s) => (text += s) }), 0);
    assertMatch(text, /spillway top .* 0 process\(es\)/);
    assertMatch(text, /no process is running under the spillway shim/);
    assertMatch(text, /kmod: (not loaded|pool)/);
    text = "";
    await topCommand({ once: true, json: true, statsDir: join(dir, "empty"), out: (s) => (text += s) });
    const j = JSON.parse(text);
    assertEquals(j.processes, []);
    assertEquals(typeof j.kmod.loaded, "boolean");
    // Live refresh stops after the asked number of redraws, with ANSI home+clear between them in a
    // terminal, and as plain timestamped tables without any escape code into a pipe or file.
    text = "";
    await topCommand({ statsDir: join(dir, "empty"), intervalMs: 10, maxRefreshes: 2, tty: true, out: (s) => (text += s) });
    assertEquals(text.split("\x1b[H\x1b[2J").length - 1, 2);
    text = "";
    await topCommand({ statsDir: join(dir, "empty"), intervalMs: 10, maxRefreshes: 2, tty: false, out: (s) => (text += s) });
    assert(!text.includes("\x1b"), "no escape codes when stdout is not a terminal");
    assertEquals(text.match(/^--- \d{4}-\d\d-\d\dT[\d:.]+Z$/gm)?.length, 2);
    assertMatch(renderSnapshot(snapshot({ statsDir: join(dir, "empty") })), /PID +VRAM/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("in-process launch of a missing model rejects with the file named; exit status 1", async () => {
  const plan = {
    version: 1 as const, model: { path: "/nonexistent/model.gguf", architecture: "llama", quantization: "Q8_0", bytes: 1 }, runtime: "node-llama-cpp",
    hardware: { name: "x", source: "builtin" as const }, workload: { objective: "chat" as const, promptTokens: 4, generatedTokens: 4 },
    candidates: [], chosen: "c", reason: "", predicted: { prefillTps: 1, decodeTps: 1, totalSeconds: 1 },
    memory: { vram: 0, host_mapped: 0, host_cpu: 0, disk: 0 },
    settings: { contextLength: 64, batch: 64, ubatch: 64, threads: 1, gpuLayers: 0, cpuMoeLayers: 0, overrideTensors: [], kvOnHost: false, loadMode: "mmap" as const, shim: null },
  };
  const h = launch(plan, null, { forwardSignals: false });
  // node-llama-cpp runs in its worker process (issue 14 item 2), not in this one.
  assert(h.pid > 0 && h.pid !== process.pid, `worker pid ${h.pid}`);
  assertEquals(await h.exited, 1);
  await assertRejects(() => h.result!, Error, "/nonexistent/model.gguf");
});

test("run --json: stdout is only the JSON report; the child's own output goes to stderr", async () => {
  const { spawn } = await import("node:child_process");
  const process = (await import("node:process")).default;
  const { ROOT } = await import("./_native.ts");
  const driver = join(ROOT, "test", "run_driver.ts");
  const pre = process.versions.bun ? [] : process.versions.deno ? ["run", "-A"] : ["--import", "tsx"];
  const child = spawn(process.execPath, [...pre, driver, "run", "-", "--json", "--", "sh", "-c", "echo child-out"], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d) => (stdout += d));
  child.stderr!.on("data", (d) => (stderr += d));
  const code = await new Promise<number | null>((r) => child.on("close", (c) => r(c)));
  assertEquals(code, 0, stderr);
  const report = JSON.parse(stdout) as RunReport;
  assertEquals(report.exitStatus, 0);
  assertEquals(report.launch.argv, ["sh", "-c", "echo child-out"]);
  assertMatch(stderr, /child-out/);
});

// Issue 18 item 13: `kill -9` of `spillway run` (no handler runs) must not leave the runtime it
// launched running: the exec guard (engine/launch/parent_death.c) has the kernel SIGKILL it.
// spillway runs in the same runtime as the test (node+tsx, bun, deno).
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { test } from "node:test";
import { assert, assertEquals } from "./_assert.ts";
import { fakeCudaDir, testShim } from "./shim_helpers.ts";
import { ROOT } from "./_native.ts";
import { driverArgv } from "./_spillway_cli.ts";
import { snapshot } from "../engine/monitor.ts";
import { listRecordFiles } from "../shim/stats.ts";
import { synthesize } from "../engine/model/synth.ts";
import { guardedArgv, parentDeathGuard } from "../engine/launch/parent_death.ts";

function alive(pid: number): boolean {
  try {
    // A zombie still answers kill(0): look at its state too.
    return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, "latin1"));
  } catch {
    return false;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test("issue 18 item 13: kill -9 of spillway run takes the runtime with it within 2 s (and top drops its record)", async () => {
  const fake = fakeCudaDir();
  const shim = await testShim();
  const tmp = mkdtempSync(join(tmpdir(), "spillway-orphan-"));
  let progPid = 0;
  try {
    const statsDir = join(tmp, "stats");
    mkdirSync(statsDir);
    const model = join(tmp, "tiny.gguf");
    await synthesize({ shape: "tiny-llama", quant: "Q8_0", out: model });
    const recipe = join(tmp, "cmd.json5");
    writeFileSync(recipe, JSON.stringify({
      model: { path: model },
      runtime: {
        name: "command",
        command: [join(fake, "shimprog13"), "init", `a:drv:${16 << 20}`, "hold"],
        env: { LD_PRELOAD: shim, LD_LIBRARY_PATH: fake, SPILLWAY_STATS_DIR: statsDir, SPILLWAY_LOG: "error" },
      },
      hardware: "rtx-5070-12gb",
    }));
    const [cmd, ...args] = driverArgv(["run", recipe]);
    const spillway = spawn(cmd!, args, { cwd: ROOT, stdio: ["pipe", "pipe", "pipe"], env: { ...process.env, SPILLWAY_STATS_DIR: statsDir } });
    let stdout = "", stderr = "";
    spillway.stderr!.on("data", (d) => (stderr += d));
    // "exit", not "close": an orphan holding the inherited stdout would keep the pipes open.
    const exited = new Promise<string | null>((r) => spillway.on("exit", (_code, sig) => r(sig)));
    progPid = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no hold line in 60 s; stdout: ${stdout}\nstderr: ${stderr}`)), 60_000);
      spillway.stdout!.on("data", (d) => {
        stdout += d;
        const m = /"op":"hold","pid":(\d+)/.exec(stdout);
        if (m) clearTimeout(timer), resolve(Number(m[1]));
      });
      spillway.on("close", () => reject(new Error(`spillway exited early; stdout: ${stdout}\nstderr: ${stderr}`)));
    });
    assert(alive(progPid));
    assertEquals(listRecordFiles(statsDir, false).map((r) => r.pid), [progPid]);
    process.kill(spillway.pid!, "SIGKILL");
    assertEquals(await exited, "SIGKILL");
    const t0 = Date.now();
    while (alive(progPid) && Date.now() - t0 < 2000) await sleep(20);
    assert(!alive(progPid), `the runtime (pid ${progPid}) outlived spillway by ${Date.now() - t0} ms`);
    // Killed, its shim could not remove its record: the next listing does.
    assertEquals(snapshot({ statsDir }).processes, []);
    assertEquals(listRecordFiles(statsDir, false), []);
  } finally {
    if (progPid && alive(progPid)) process.kill(progPid, "SIGKILL");
    rmSync(tmp, { recursive: true, force: true });
  }
});

test("issue 18 item 13: the guard execs the program itself (same pid, argv0 kept) and reports a program it cannot run", async () => {
  const guard = parentDeathGuard();
  assert(guard, "the guard builds here (gcc)");
  const [file, args] = guardedArgv("/bin/sh", "custom-argv0", ["-c", 'echo "$0 $$"']);
  assertEquals(file, guard);
  const child = spawn(file, args, { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout!.on("data", (d) => (out += d));
  const code = await new Promise<number | null>((r) => child.on("close", r));
  assertEquals([code, out.trim()], [0, `custom-argv0 ${child.pid}`]);
  const [f2, a2] = guardedArgv("/nonexistent/program", "x", []);
  const bad = spawn(f2, a2, { stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  bad.stderr!.on("data", (d) => (err += d));
  assertEquals(await new Promise<number | null>((r) => bad.on("close", r)), 127);
  assert(err.includes("/nonexistent/program: No such file or directory"), err);
});

/** Pids of processes whose command line contains `needle` (the worker carries the model path). */
function pidsWith(needle: string): number[] {
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${name}/cmdline`, "latin1").includes(needle) && alive(Number(name))) out.push(Number(name));
    } catch { /* gone meanwhile */ }
  }
  return out;
}

test("issue 18 item 13: kill -9 of spillway run takes the node-llama-cpp worker with it within 2 s", async () => {
  const tmp = mkdtempSync(join(tmpdir(), "spillway-orphan-nlc-"));
  let workers: number[] = [];
  try {
    const model = join(tmp, "orphan-worker-model.gguf");
    await synthesize({ shape: "tiny-moe", quant: "Q8_0", out: model, seed: 5 });
    const recipe = join(tmp, "long.json5");
    writeFileSync(recipe, JSON.stringify({
      model: { path: model },
      runtime: { name: "node-llama-cpp", prompt: "Hello" },
      context: 8192, batch: 256, ubatch: 256, threads: 1,
      workload: { promptTokens: 16, generatedTokens: 8000 },
    }));
    const [cmd, ...args] = driverArgv(["run", recipe]);
    // The stalled worker writes nothing for 20 s: without the guard, no broken pipe ends it either.
    const spillway = spawn(cmd!, args, { cwd: ROOT, stdio: ["ignore", "ignore", "ignore"], env: { ...process.env, SPILLWAY_WORKER_STALL_MS: "20000" } });
    const exited = new Promise<string | null>((r) => spillway.on("exit", (_code, sig) => r(sig)));
    const t0 = Date.now();
    while ((workers = pidsWith(model)).length === 0 && Date.now() - t0 < 60_000) await sleep(50);
    assert(workers.length > 0, "the node-llama-cpp worker started within 60 s");
    await sleep(500);
    process.kill(spillway.pid!, "SIGKILL");
    assertEquals(await exited, "SIGKILL");
    const t1 = Date.now();
    while (pidsWith(model).length > 0 && Date.now() - t1 < 2000) await sleep(20);
    assertEquals(pidsWith(model), [], `the worker outlived spillway by ${Date.now() - t1} ms`);
  } finally {
    for (const p of pidsWith(tmp)) try { process.kill(p, "SIGKILL"); } catch { /* gone */ }
    rmSync(tmp, { recursive: true, force: true });
  }
});

// Ctrl-C to `spillway run` (SIGINT) stops the child and leaves no process and no shared-memory
// stats file. The child is a CUDA program under the real shim with the fake CUDA libraries, so the
// shim itself creates its record (…/spillway-<euid>/<pid>-<start>-<pidns>); killed by SIGINT it
// cannot remove it, spillway must.
// spillway runs in the same runtime as the test (node+tsx, bun, deno), so each runtime's signal
// forwarding is exercised.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { test } from "node:test";
import { assert, assertEquals, assertGreaterOrEqual } from "./_assert.ts";
import { ROOT } from "./_native.ts";
import { driverArgv } from "./_spillway_cli.ts";
import { fakeCudaDir, testShim } from "./shim_helpers.ts";
import { snapshot } from "../engine/monitor.ts";
import { listRecordFiles } from "../shim/stats.ts";
import { synthesize } from "../engine/model/synth.ts";

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test("Ctrl-C: SIGINT reaches the child under the shim; no child and no stats file remain", async () => {
  const fake = fakeCudaDir();
  const shim = await testShim();
  const tmp = mkdtempSync(join(tmpdir(), "spillway-run-"));
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
        command: [join(fake, "shimprog13"), "init", `a:drv:${64 << 20}`, "pause"],
        env: { LD_PRELOAD: shim, LD_LIBRARY_PATH: fake, SPILLWAY_STATS_DIR: statsDir, SPILLWAY_LOG: "error" },
      },
      hardware: "rtx-5070-12gb",
    }));
    const [cmd, ...args] = driverArgv(["run", recipe]);
    const child = spawn(cmd!, args, { cwd: ROOT, stdio: ["pipe", "pipe", "pipe"], env: { ...process.env, SPILLWAY_STATS_DIR: statsDir } });
    let stdout = "";
    let stderr = "";
    child.stderr!.on("data", (d) => (stderr += d));
    const exited = new Promise<number | null>((r) => child.on("close", (code) => r(code)));
    const progPid = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no pause line in 60 s; stdout: ${stdout}\nstderr: ${stderr}`)), 60_000);
      child.stdout!.on("data", (d) => {
        stdout += d;
        const m = /"op":"pause","pid":(\d+)/.exec(stdout);
        if (m) {
          clearTimeout(timer);
          resolve(Number(m[1]));
        }
      });
      child.on("close", () => reject(new Error(`spillway exited early; stdout: ${stdout}\nstderr: ${stderr}`)));
    });
    const statsFile = listRecordFiles(statsDir, false).find((r) => r.pid === progPid)?.path ?? "";
    assert(existsSync(statsFile), "the shim created its stats record");
    // `top` sees the live process and its 64 MiB on the (fake) GPU.
    const snap = snapshot({ statsDir });
    const p = snap.processes.find((x) => x.pid === progPid);
    assert(p, `top lists pid ${progPid}`);
    assertGreaterOrEqual(p.tiers.vram.bytes + p.hostBytes, 64 << 20);
    assert(p.alive);

    // process.kill, not child.kill: Deno's ChildProcess reports the signal it sent instead of the real exit status.
    process.kill(child.pid!, "SIGINT");
    const code = await exited;
    assertEquals(code, 130, `exit status is the child's (SIGINT = 128 + 2); stderr: ${stderr}`);
    assert(!alive(progPid), "the child is gone");
    assert(!existsSync(statsFile), "its stats file was removed");
    assertEquals(snapshot({ statsDir }).processes.length, 0);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

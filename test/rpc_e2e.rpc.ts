/**
 * RPC end to end (issue 19), no GPU: `npm run test:rpc`. Not part of `npm test`: the first run
 * builds llama.cpp's rpc-server and llama-completion (CPU backend, RPC on) from the bundled source
 * into spillway's cache directory (engine/runtimes/llamacpp_rpc_build.ts); later runs reuse them.
 *
 * 1. `spillway run` a recipe naming two rpc-servers on 127.0.0.1 it starts itself; the host's RAM
 *    is capped below the model so the planner splits the blocks over the two servers (the input
 *    embedding stays on this host's CPU); the greedy tokens equal a single-process run of the same
 *    model with the same seed, and both servers held model weights.
 * 2. Ctrl-C (SIGINT to spillway) and `kill -9` of spillway mid-run: no rpc-server or
 *    llama-completion is left, the ports are free again.
 * 3. `spillway bench --rpc` measures a server: round trip and transfer rates.
 *
 * SPILLWAY_RPC_PROGRAMS=dir uses `dir/rpc-server` and `dir/llama-completion` instead of building.
 */
import { test } from "node:test";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { freePort } from "./_net.ts";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { assert, assertEquals, assertGreater, assertMatch } from "./_assert.ts";
import { runCli, startCli } from "./_spillway_cli.ts";
import { buildRpcPrograms, type RpcPrograms } from "../engine/runtimes/llamacpp_rpc_build.ts";
import { synthesize } from "../engine/model/synth.ts";

const PROMPT = "Once upon a time";
const TOKENS = 24;

async function programs(): Promise<Pick<RpcPrograms, "rpcServer" | "completion">> {
  const dir = process.env.SPILLWAY_RPC_PROGRAMS;
  if (dir) return { rpcServer: join(dir, "rpc-server"), completion: join(dir, "llama-completion") };
  const t = Date.now();
  const b = await buildRpcPrograms({ log: (s) => void process.stderr.write(s) });
  process.stderr.write(`rpc programs ready in ${((Date.now() - t) / 1000).toFixed(1)} s: ${b.dir}\n`);
  return b;
}

async function portOpen(port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const c = connect({ host: "127.0.0.1", port });
    c.once("connect", () => {
      c.destroy();
      resolve(true);
    });
    c.once("error", () => resolve(false));
  });
}

/** Processes running `path` (by /proc/<pid>/exe or argv). */
function processesOf(path: string): number[] {
  const pids: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const argv = readFileSync(`/proc/${d}/cmdline`, "utf8").split("\0");
      const state = /^State:\s+(\S)/m.exec(readFileSync(`/proc/${d}/status`, "utf8"))?.[1];
      if (state !== "Z" && argv.includes(path)) pids.push(Number(d));
    } catch { /* gone */ }
  }
  return pids;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The generated text: what follows the prompt on stdout. */
function generated(stdout: string): string {
  const i = stdout.lastIndexOf(PROMPT);
  assert(i >= 0, `prompt not found in output:\n${stdout}`);
  return stdout.slice(i + PROMPT.length).replace(/\n?> EOF by user\n?/, "").trimEnd();
}

function recipeText(model: string, p: { rpcServer: string; completion: string }, ports: number[], generatedTokens: number, context = 512): string {
  return JSON.stringify({
    model: { path: model },
    runtime: { name: "llama.cpp", program: "completion", binary: p.completion, prompt: PROMPT, args: ["--temp", "0", "--seed", "42", "--ignore-eos", "-fa", "off", "-v"] },
    context,
    batch: 64,
    ubatch: 64,
    threads: 1,
    workload: { promptTokens: 8, generatedTokens },
    // This host may use less RAM than the model and its buffers need: the blocks go to the servers.
    placement: { ramCap: "400K" },
    hardware: {
      gpu: null,
      nodes: ports.map((port) => ({
        rpc: `127.0.0.1:${port}`,
        start: true,
        binary: p.rpcServer,
        threads: 1,
        devices: [{ kind: "cpu", name: "CPU", memoryBytes: "64M" }],
      })),
    },
  }, null, 2);
}

test("spillway run splits a model over two local rpc-servers; greedy tokens equal a single-process run; nothing left after", async () => {
  const p = await programs();
  const dir = mkdtempSync(join(tmpdir(), "spillway-rpc-e2e-"));
  try {
    const model = join(dir, "tiny-llama-q8_0.gguf");
    await synthesize({ shape: "tiny-llama", quant: "Q8_0", out: model });
    const ports = [await freePort(), await freePort()];
    const recipe = join(dir, "rpc.json5");
    writeFileSync(recipe, recipeText(model, p, ports, TOKENS));

    // The plan: the blocks on the two servers, this host only embeds.
    const planned = runCli(["plan", recipe, "--json"]);
    assertEquals(planned.status, 0, planned.stderr);
    const plan = JSON.parse(planned.stdout);
    const chosen = plan.candidates.find((c: { id: string }) => c.id === plan.chosen);
    assertEquals(chosen.strategy, "split", plan.reason);
    assertEquals(chosen.settings.split.rpc, ports.map((x) => `127.0.0.1:${x}`));

    const t0 = Date.now();
    const split = runCli(["run", recipe], { timeoutMs: 300_000 });
    const splitSeconds = (Date.now() - t0) / 1000;
    assertEquals(split.status, 0, `spillway run failed:\n${split.stdout}\n${split.stderr}`);
    assertMatch(split.stdout, new RegExp(`--rpc 127\\.0\\.0\\.1:${ports[0]},127\\.0\\.0\\.1:${ports[1]}`));
    // llama.cpp put model weights on both servers.
    for (const port of ports) assertMatch(split.stderr, new RegExp(`RPC\\d*\\[?127\\.0\\.0\\.1:${port}\\]? model buffer size`), `no weights on :${port}\n${split.stderr}`);

    // The same model, same seed and sampling, one process, everything on this CPU.
    const single = spawnSync(p.completion, [
      "-m", model, "-ngl", "0", "-c", "512", "-b", "64", "-ub", "64", "-t", "1", "-n", String(TOKENS),
      "-p", PROMPT, "-no-cnv", "--temp", "0", "--seed", "42", "--ignore-eos", "-fa", "off",
    ], { encoding: "utf8", timeout: 120_000 });
    assertEquals(single.status, 0, single.stderr);
    const a = generated(split.stdout);
    const b = generated(single.stdout);
    assertGreater(a.length, 0, "no tokens generated");
    assertEquals(a, b, "greedy tokens differ between the split and the single-process run");
    process.stderr.write(`split run ${splitSeconds.toFixed(1)} s; generated (both): ${JSON.stringify(a)}\n`);

    // Nothing left: the servers are stopped and their ports free.
    await sleep(300);
    assertEquals(processesOf(p.rpcServer), [], "an rpc-server outlived spillway run");
    for (const port of ports) assert(!(await portOpen(port)), `port ${port} still open`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

for (const signal of ["SIGINT", "SIGKILL"] as const) {
  test(`${signal} to spillway mid-run leaves no rpc-server and no llama-completion`, async () => {
    const p = await programs();
    const dir = mkdtempSync(join(tmpdir(), "spillway-rpc-sig-"));
    try {
      const model = join(dir, "tiny-llama-q8_0.gguf");
      await synthesize({ shape: "tiny-llama", quant: "Q8_0", out: model });
      const ports = [await freePort(), await freePort()];
      const recipe = join(dir, "rpc.json5");
      // Long enough to be interrupted (~700 tokens/s here): generation runs until the signal.
      writeFileSync(recipe, recipeText(model, p, ports, 16000, 16384));
      const child = startCli(["run", recipe]);
      let out = "";
      child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
      child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
      // Wait until llama-completion is generating over both servers.
      const deadline = Date.now() + 60_000;
      while (!/model buffer size/.test(out) || processesOf(p.completion).length === 0) {
        assert(Date.now() < deadline, `run did not start:\n${out}`);
        assert(child.exitCode === null, `run ended early:\n${out}`);
        await sleep(50);
      }
      assertEquals(processesOf(p.rpcServer).length, 2, "two rpc-servers running");
      child.kill(signal);
      const code = await new Promise<number | null>((r) => child.once("exit", (c) => r(c)));
      if (signal === "SIGINT") assert(code !== 0, "interrupted run exits non-zero");
      // SIGKILL: the kernel ends the guarded children (PR_SET_PDEATHSIG); give it a moment.
      const until = Date.now() + 5000;
      while ((processesOf(p.rpcServer).length || processesOf(p.completion).length) && Date.now() < until) await sleep(100);
      assertEquals(processesOf(p.rpcServer), [], `rpc-server left after ${signal}`);
      assertEquals(processesOf(p.completion), [], `llama-completion left after ${signal}`);
      for (const port of ports) assert(!(await portOpen(port)), `port ${port} still open after ${signal}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test("spillway bench --rpc measures a server's devices, round trip and transfer rates", async () => {
  const p = await programs();
  const port = await freePort();
  const { spawn } = await import("node:child_process");
  const server = spawn(p.rpcServer, ["-H", "127.0.0.1", "-p", String(port), "-t", "1"], { stdio: "ignore" });
  try {
    const until = Date.now() + 20_000;
    while (!(await portOpen(port))) {
      assert(Date.now() < until, "rpc-server did not listen");
      await sleep(100);
    }
    // portOpen's connection used the server's one client slot; let it go back to accept().
    await sleep(200);
    const r = runCli(["bench", "--rpc", `127.0.0.1:${port}`, "--json", "--quick"], { timeoutMs: 120_000 });
    assertEquals(r.status, 0, r.stderr);
    const [report] = JSON.parse(r.stdout);
    assertEquals(report.node.version.split(".")[0], "7");
    assertGreater(report.node.devices.length, 0);
    assertGreater(report.node.devices[0].totalBytes, 0);
    assertGreater(report.link.rttMs.median, 0);
    assertGreater(report.link.uploadGBps.median, 0);
    assertGreater(report.link.downloadGBps.median, 0);
    process.stderr.write(r.stderr);
  } finally {
    server.kill("SIGKILL");
  }
});


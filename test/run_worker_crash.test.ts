// Issue 14 item 2: a native abort inside node-llama-cpp (llama.cpp's GGML_ASSERT) killed
// `spillway run` without a word (exit 134). node-llama-cpp now runs in a worker process; a planted
// abort there (SPILLWAY_WORKER_ABORT) must be reported by name with the worker's last output, with
// the worker's exit status, nothing left running, and spillway itself alive to say it.
import { test } from "node:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { runCli } from "./_spillway_cli.ts";
import { startNodeLlamaCppWorker, RuntimeCrashedError } from "../engine/runtimes/node_llama_cpp_process.ts";

function recipe(dir: string): string {
  const file = join(dir, "tiny.json5");
  writeFileSync(file, `{ model: { id: "tiny-moe", quant: "q8_0", synth: true }, runtime: { name: "node-llama-cpp", prompt: "Hello" },
    context: 256, batch: 256, ubatch: 256, threads: 2, workload: { promptTokens: 16, generatedTokens: 8 } }`);
  return file;
}

for (const at of ["load", "generate"]) {
  test(`spillway run: a native abort in the node-llama-cpp worker (at ${at}) is reported, exit 134`, () => {
    const dir = mkdtempSync(join(tmpdir(), "spillway-crash-"));
    try {
      const r = runCli(["run", recipe(dir), "--json"], { env: { SPILLWAY_WORKER_ABORT: at } });
      assertEquals(r.status, 134, `stderr: ${r.stderr}`);
      assertMatch(r.stderr, /spillway: runtime crashed: signal SIGABRT \(exit status 134\) in the node-llama-cpp worker process \(pid \d+\)/);
      const report = JSON.parse(r.stdout) as { exitStatus: number; error?: string; result?: unknown };
      assertEquals(report.exitStatus, 134);
      assertMatch(report.error ?? "", /^runtime crashed: signal SIGABRT/);
      assertEquals(report.result, undefined);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test("the worker's crash error carries its status, signal and last output lines", async () => {
  process.env.SPILLWAY_WORKER_ABORT = "load";
  try {
    const w = startNodeLlamaCppWorker({ modelPath: "/nonexistent.gguf", gpu: false, gpuLayers: 0, threads: 1, contextSize: 64, batchSize: 64, useMmap: true, promptTokens: 4, genTokens: 1 });
    const e = await w.result.then(() => null, (x: unknown) => x);
    assert(e instanceof RuntimeCrashedError, `got ${e}`);
    assertEquals(e.status, 134);
    assertEquals(e.signal, "SIGABRT");
    assertEquals(e.pid, w.pid);
    assertMatch(e.message, /running \/nonexistent\.gguf/);
  } finally {
    delete process.env.SPILLWAY_WORKER_ABORT;
  }
});

test("a failure the worker reports (a missing model) stays an ordinary error, not a crash", async () => {
  const w = startNodeLlamaCppWorker({ modelPath: "/nonexistent.gguf", gpu: false, gpuLayers: 0, threads: 1, contextSize: 64, batchSize: 64, useMmap: true, promptTokens: 4, genTokens: 1 });
  const e = await w.result.then(() => null, (x: unknown) => x);
  assert(e instanceof Error && !(e instanceof RuntimeCrashedError), `got ${e}`);
  assertMatch((e as Error).message, /nonexistent\.gguf/);
});

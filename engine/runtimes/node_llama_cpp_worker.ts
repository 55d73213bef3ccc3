/**
 * The node-llama-cpp worker process: runs one {@link NodeLlamaCppRun} (argv[2], JSON) with
 * {@link runNodeLlamaCpp} and reports to its parent (engine/runtimes/node_llama_cpp_process.ts)
 * as JSON lines on stdout prefixed with {@link WORKER_MARK}: `progress`, then `result` or `error`.
 * SIGTERM / SIGINT abort the run (the model and context are freed) and it exits 0 after an
 * `error` line with `aborted: true`. A native abort inside llama.cpp ends only this process; the
 * parent reports it.
 *
 * Fault injection for tests: SPILLWAY_WORKER_ABORT=load|generate makes it call process.abort()
 * (SIGABRT, as ggml's GGML_ASSERT does) before loading or at the first generated token;
 * SPILLWAY_WORKER_STALL_MS=N blocks it for N ms before loading, writing nothing (as a long native
 * load or prompt evaluation does), so a test can see whether it outlives a SIGKILLed spillway.
 *
 * @example
 * ```sh
 * node --import tsx engine/runtimes/node_llama_cpp_worker.ts '{"modelPath":"m.gguf","gpu":false,...}'
 * ```
 *
 * @module
 */
import process from "node:process";
import { runNodeLlamaCpp, type NodeLlamaCppRun } from "./node_llama_cpp.ts";
import { WORKER_MARK, type WorkerMessage } from "./node_llama_cpp_protocol.ts";

function send(m: WorkerMessage): void {
  process.stdout.write(`${WORKER_MARK}${JSON.stringify(m)}\n`);
}

const plantedAbort = process.env.SPILLWAY_WORKER_ABORT;
const run = JSON.parse(process.argv[2] ?? "null") as NodeLlamaCppRun | null;
if (run === null || typeof run.modelPath !== "string") {
  send({ type: "error", name: "LaunchError", message: "node-llama-cpp worker: no run given (argv[2] must be the run as JSON)" });
  process.exit(2);
}
const ac = new AbortController();
for (const sig of ["SIGTERM", "SIGINT", "SIGHUP"] as const) process.on(sig, () => ac.abort(new Error(`interrupted by ${sig}`)));
if (plantedAbort === "load") process.abort();
const stallMs = Number(process.env.SPILLWAY_WORKER_STALL_MS ?? 0);
if (stallMs > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, stallMs);
try {
  const result = await runNodeLlamaCpp(run, {
    signal: ac.signal,
    onProgress: (phase, done, total) => {
      if (plantedAbort === "generate" && phase === "generate" && done >= 1) process.abort();
      send({ type: "progress", phase, done, total });
    },
  });
  send({ type: "result", result });
} catch (e) {
  const err = e as Error;
  send({ type: "error", name: err?.name ?? "Error", message: err?.message ?? String(e), aborted: ac.signal.aborted });
}
// Exit explicitly: native handles of node-llama-cpp may keep the event loop alive.
process.exit(0);

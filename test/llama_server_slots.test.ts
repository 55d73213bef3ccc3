// Issue 21 item 3 on a real llama-server (CPU): `spillway run` of a recipe with promptCache creates
// the slot directory 0700 and starts llama-server with --slot-save-path; a saved slot is restored
// and the next request with the same prompt evaluates only what was not restored. Needs a
// llama-server binary: SPILLWAY_LLAMA_SERVER, or llama-server on PATH (skipped otherwise; build one
// from node-llama-cpp's bundled llama.cpp: docs/recipes.md, promptCache).
import { test } from "node:test";
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { freePort } from "./_net.ts";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { assert, assertEquals, assertGreaterOrEqual, assertLessOrEqual } from "./_assert.ts";
import { getShape } from "../engine/model/shapes.ts";
import { synthesize } from "../engine/model/synth.ts";
import { measureSlotRestore } from "../bench/harness/slot_restore.ts";
import { promptTokenIds } from "../bench/harness/server.ts";
import { startCli } from "./_spillway_cli.ts";

function findServer(): string | null {
  const env = process.env.SPILLWAY_LLAMA_SERVER;
  if (env) return existsSync(env) ? env : null;
  for (const d of (process.env.PATH ?? "").split(delimiter)) {
    const p = join(d, "llama-server");
    if (d && existsSync(p)) return p;
  }
  return null;
}

async function waitHealthy(port: number, ms: number, exited: () => boolean): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end && !exited()) {
    try {
      const r = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(1000) });
      await r.text();
      if (r.status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`llama-server on ${port} not healthy within ${ms} ms`);
}

const server = findServer();

for (const kv of ["f16", "q8_0"] as const) {
  test(`llama_server_slot_restore_${kv}: spillway run with promptCache, save and restore a slot on a real llama-server (CPU)`, { skip: server === null ? "no llama-server (SPILLWAY_LLAMA_SERVER or PATH)" : false, timeout: 180_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "spillway-slots-real-"));
    const port = await freePort();
    const model = join(dir, "tiny.gguf");
    // llama.cpp quantizes the cache in blocks of 32 elements: a q8_0 cache needs a head size of 32
    // or more (tiny-llama's is 16; the planner then plans f16, see planner_kv.test.ts).
    const shape = { ...getShape("tiny-llama")!, id: "tiny-llama-hd32", heads: 2, headsKv: 1, headDim: 32 };
    await synthesize({ shape, quant: "Q8_0", out: model });
    const recipe = join(dir, "r.json5");
    writeFileSync(recipe, JSON.stringify({
      model: { path: model },
      runtime: { name: "llama.cpp", binary: server },
      context: 512,
      batch: 512,
      threads: 1,
      workload: { promptTokens: 400, generatedTokens: 8 },
      kvCache: { types: [kv] },
      promptCache: { dir: "slots", reuse: 0 },
    }));
    const child = startCli(["run", recipe, "--", "--port", String(port), "--host", "127.0.0.1", "--cache-ram", "0"]);
    let out = "";
    child.stdout!.on("data", (c) => (out += c));
    child.stderr!.on("data", (c) => (out += c));
    let exited = false;
    const done = new Promise<void>((r) => child.on("exit", () => { exited = true; r(); }));
    try {
      await waitHealthy(port, 90_000, () => exited).catch((e) => { throw new Error(`${(e as Error).message}; output:\n${out.slice(-2000)}`); });
      const slots = join(dir, "slots");
      assertEquals(statSync(slots).mode & 0o777, 0o700);
      if (kv === "q8_0") assert(/-ctk q8_0 -ctv q8_0 -fa on/.test(out), `launch line with the KV flags: ${out.slice(-1500)}`);
      assert(/--slot-save-path \S*slots/.test(out), `launch line with --slot-save-path: ${out.slice(-1500)}`);
      const ids = promptTokenIds(400, 512, 3);
      const r = await measureSlotRestore(port, ids, "doc.bin", 60_000);
      assertGreaterOrEqual(r.restored, 399);
      assertLessOrEqual(r.afterPromptN, 2);
      assertGreaterOrEqual(r.recomputeMs, r.afterPromptMs);
      assertEquals(readdirSync(slots), ["doc.bin"]);
      console.log(`slot restore (${kv}, tiny llama, 400 tokens, CPU): recompute ${r.recomputeMs.toFixed(1)} ms, restore ${r.restoreMs.toFixed(1)} ms (wall ${r.restoreWallMs.toFixed(1)}), ready ${r.readyMs.toFixed(1)} ms, file ${r.bytes} B`);
    } finally {
      if (!exited) child.kill("SIGTERM");
      await Promise.race([done, new Promise((r) => setTimeout(r, 20_000))]);
      if (!exited) child.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

// Issue 21: harness support for the long-context run: workload depth (llama-bench -d), planned KV
// types, the server section's slot restore (against a fake llama-server), and the summary.
import { test } from "node:test";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { assert, assertEquals, assertMatch, assertRejects, assertThrows } from "./_assert.ts";
import { loadMatrix, parseMatrix } from "../bench/harness/matrix.ts";
import { contextOf, testFlags } from "../bench/harness/runner.ts";
import { serverArgv, serverContext, serverRecipe } from "../bench/harness/server.ts";
import { measureSlotRestore, slotRestoreMarkdown } from "../bench/harness/slot_restore.ts";
import { contextSummaryLines } from "../bench/harness/context_summary.ts";
import type { MethodResult, RunResults } from "../bench/harness/results.ts";

test("matrix_context_12g_parses: depth, the KV-type methods, the slot restore; 64k companion too", () => {
  const m = loadMatrix("bench/matrices/context-12g.json5");
  const w = m.workloads[0];
  assertEquals(w, { id: "d32k", prompt: 512, gen: 64, endToEnd: false, depth: 31744 });
  assertEquals(contextOf(w), 32512);
  assertEquals(testFlags(w, 1, 16), ["-p", "512", "-n", "64", "-r", "1", "-t", "16", "-o", "json", "-d", "31744"]);
  assertEquals(m.methods.map((x) => x.id), ["all-vram", "default", "hand-f16", "hand-q8", "kv-q4_0", "spillway"]);
  const q8 = m.methods.find((x) => x.id === "hand-q8")!.config;
  assert(q8.kind === "flags" && q8.flags.join(" ").endsWith("-ctk q8_0 -ctv q8_0 -fa on"));
  assertEquals(m.checkContext, 16384);
  assertEquals(m.server?.slotRestore, { prompt: 16384 });
  assertEquals(m.server?.args, ["--cache-ram", "0"]);
  // The slot prompt fits the servers' context.
  assertEquals(serverContext(m.server!), 16640);
  const m64 = loadMatrix("bench/matrices/context-12g-64k.json5");
  assertEquals(contextOf(m64.workloads[0]), 65536);
  assertEquals(m64.server, null);
  // Without depth a workload is as before.
  assertEquals(testFlags({ id: "p", prompt: 16, gen: 4, endToEnd: false, depth: 0 }, 2, 1).includes("-d"), false);
});

test("matrix_context_errors: depth, kvTypes and slotRestore are checked with their field paths", () => {
  const base = (extra: string, method = "") => `{ name: "x", models: [{ id: "m", shape: "tiny-moe", quant: "Q8_0" }], freeVramGiB: [1],
    workloads: [{ id: "w", prompt: 16, gen: 4 ${extra} }], methods: [{ id: "p", config: "planned" ${method} }] }`;
  assertThrows(() => parseMatrix(base(", depth: -1"), "bad.json5"), Error, "workloads[0].depth");
  assertThrows(() => parseMatrix(base("", ', kvTypes: ["q5_1"]'), "bad.json5"), Error, "methods[0].kvTypes[0]");
  assertThrows(() => parseMatrix(base("", ", kvTypes: []"), "bad.json5"), Error, "methods[0].kvTypes");
  const ok = parseMatrix(base("", ', kvTypes: ["f16", "q4_0"]'), "ok.json5");
  assertEquals(ok.methods[0].config, { kind: "planned", objective: "custom", autotune: false, kvTypes: ["f16", "q4_0"] });
  const srv = (s: string) => `{ name: "x", models: [{ id: "m", shape: "tiny-moe", quant: "Q8_0" }], freeVramGiB: [1],
    server: { slotRestore: ${s}, methods: [{ id: "a", config: "all-vram" }] } }`;
  assertThrows(() => parseMatrix(srv("{ prompt: 8 }"), "s.json5"), Error, "server.slotRestore.prompt");
  assertThrows(() => parseMatrix(srv("{ tokens: 8 }"), "s.json5"), Error, "server.slotRestore.tokens");
  assertEquals(parseMatrix(srv("{}"), "s.json5").server?.slotRestore, { prompt: 16384 });
});

test("server_slot_flags: llama-server methods get --slot-save-path, spillway run gets the recipe's promptCache", () => {
  const m = loadMatrix("bench/matrices/context-12g.json5");
  const s = m.server!;
  const progs = { llamaBin: "/b", node: "/n", spillwayCli: "/s.mjs" };
  const flags = { id: "h", label: "h", ballast: true, config: { kind: "flags" as const, flags: ["-ngl", "99"] } };
  assertEquals(serverArgv(progs, s, flags, "/m.gguf", 16, null, "/w/slots-h"), [
    "/b/llama-server", "-m", "/m.gguf", "-c", "16640", "-t", "16", "-ngl", "99", "--slot-save-path", "/w/slots-h",
    "--port", "18080", "--host", "127.0.0.1", "--cache-ram", "0",
  ]);
  const run = s.methods[0];
  assertEquals(serverRecipe(s, run, "/m.gguf", "/b", 16, "/w/slots-spillway-run").promptCache, { dir: "/w/slots-spillway-run", reuse: 0 });
  assertEquals(serverRecipe(s, run, "/m.gguf", "/b", 16).promptCache, undefined);
});

/** A fake llama-server: a slot holding tokens, files in a Map, prompt_ms proportional to evaluated tokens. */
function fakeServer(opts: { ramCache?: boolean } = {}) {
  let slot: number[] = [];
  const files = new Map<string, number[]>();
  const calls: string[] = [];
  const srv = createServer((req: IncomingMessage, res: ServerResponse) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      const b = body ? JSON.parse(body) : {};
      const url = req.url ?? "";
      calls.push(url);
      const send = (o: unknown, status = 200) => {
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify(o));
      };
      if (url === "/slots/0?action=erase") { slot = []; return send({ id_slot: 0, n_erased: 1 }); }
      if (url === "/slots/0?action=save") { files.set(b.filename, [...slot]); return send({ id_slot: 0, filename: b.filename, n_saved: slot.length, n_written: slot.length * 1024, timings: { save_ms: 3 } }); }
      if (url === "/slots/0?action=restore") {
        const f = files.get(b.filename);
        if (!f) return send({ error: { code: 400, message: "failed to restore" } }, 400);
        slot = [...f];
        return send({ id_slot: 0, filename: b.filename, n_restored: f.length, n_read: f.length * 1024, timings: { restore_ms: 2 } });
      }
      if (url === "/completion") {
        const p: number[] = b.prompt;
        let common = 0;
        while (common < slot.length && common < p.length - 1 && slot[common] === p[common]) common++;
        if (opts.ramCache) common = p.length - 1;
        const n = p.length - common;
        slot = [...p];
        return send({ tokens: [1], timings: { prompt_n: n, prompt_ms: n * 0.5, prompt_per_second: 2000, predicted_n: 1, predicted_ms: 1, predicted_per_second: 1000 } });
      }
      send({ error: "not found" }, 404);
    });
  });
  return { srv, calls, files };
}

async function listen(srv: ReturnType<typeof createServer>): Promise<number> {
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  return (srv.address() as AddressInfo).port;
}

test("slot_restore_sequence: recompute, save, erase, restore, one-token follow-up; the ratio from the server's timings", async () => {
  const { srv, calls, files } = fakeServer();
  const port = await listen(srv);
  try {
    const prompt = Array.from({ length: 2000 }, (_, i) => 100 + i);
    const r = await measureSlotRestore(port, prompt, "restore-x.bin", 5000);
    assertEquals(calls, ["/slots/0?action=erase", "/completion", "/slots/0?action=save", "/slots/0?action=erase", "/slots/0?action=restore", "/completion"]);
    assertEquals(files.get("restore-x.bin")?.length, 2000);
    assertEquals([r.prompt, r.recomputeMs, r.restored, r.afterPromptN, r.afterPromptMs, r.restoreMs, r.bytes], [2000, 1000, 2000, 1, 0.5, 2, 2000 * 1024]);
    assert(r.readyMs >= r.afterPromptMs && r.readyMs < r.recomputeMs, `${r.readyMs}`);
    assertEquals(r.ratio, r.readyMs / 1000);
    const md = slotRestoreMarkdown([{ id: "spillway-run", slotRestore: r }, { id: "other" }, { id: "bad", slotRestore: { error: "POST /slots/0?action=save: HTTP 501" } }]).join("\n");
    assertMatch(md, /\| spillway-run \| 2000 \| 1000 \| 2 \/ \d+ \| 1, 0\.5 \| \d+ \| 0\.\d{3} \| 2 \|/);
    assertMatch(md, /\| bad \|.*failed: POST \/slots\/0\?action=save: HTTP 501/);
  } finally {
    srv.close();
  }
});

test("slot_restore_refuses_a_cached_recompute: a server answering from its RAM prompt cache is reported, not timed", async () => {
  const { srv } = fakeServer({ ramCache: true });
  const port = await listen(srv);
  try {
    await assertRejects(() => measureSlotRestore(port, Array.from({ length: 64 }, (_, i) => i + 1), "f.bin", 5000), Error, "--cache-ram 0");
  } finally {
    srv.close();
  }
});

function row(id: string, decode: number, prefill: number, meanKld?: number): MethodResult {
  return {
    id, label: id, runtime: "llama.cpp", model: "moe30b", freeVramGiB: 12, ballastFreeBytes: null, workload: "d32k", command: [], env: {},
    prefill: { tokens: 512, tps: prefill, stddev: 0, samples: [prefill] }, decode: { tokens: 64, tps: decode, stddev: 0, samples: [decode] },
    endToEnd: null, check: { mode: "close", pass: true, how: "kld", ...(meanKld !== undefined ? { meanKld, sameTopPct: 99 } : {}) }, seconds: 1, status: "ok",
  };
}

test("context_summary: plan vs default and best hand-tuned per workload, KL per KV type", () => {
  const results = [row("default", 20, 1000), row("hand-f16", 28, 2500, 0.0001), row("hand-q8", 30, 2400, 0.002), row("kv-q4_0", 31, 2300, 0.02), row("spillway", 30.5, 2450, 0.002)];
  const r = { results, notes: [] } as unknown as RunResults;
  const text = contextSummaryLines(r).join("\n");
  assertMatch(text, /## Long context \(issue 21\)\n\n### d32k/);
  assertMatch(text, /spillway: decode 1\.52x of llama\.cpp's default \(target >= 1\.2x at 32k\), 1\.02x of the best hand-tuned \(hand-q8; target >= 1\.0x\); prefill 2\.45x and 0\.98x; KL divergence vs f16 all-in-VRAM: 2\.00e-3/);
  assertMatch(text, /kv-q4_0 2\.00e-2, 31\.00/);
  assertEquals(contextSummaryLines({ results: [row("default", 1, 1)], notes: [] } as unknown as RunResults), []);
});

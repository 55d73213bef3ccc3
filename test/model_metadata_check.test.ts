// GGUF metadata checked against the tensors actually present (issue 14 item 4): a header that
// claims more blocks than the file holds, no experts for a file with expert tensors, or no
// attention heads is refused with an error naming the file and the metadata key, at once,
// instead of a runaway plan or absurd predictions.
import { test } from "node:test";
import { closeSync, mkdtempSync, openSync, rmSync, truncateSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assert, assertEquals, assertLess, assertMatch, assertRejects } from "./_assert.ts";
import { ModelFileError } from "../core/errors.ts";
import { readModel } from "../engine/model/mod.ts";
import { GGUF_TYPE } from "../engine/model/gguf.ts";
import { type GgufWriteValue, layoutGguf } from "../engine/model/gguf_writer.ts";
import { ggmlTypeByName } from "../engine/model/ggml_types.ts";
import { getShape, listShapes, shapeTensors } from "../engine/model/shapes.ts";
import { shapeMetadata, synthesize } from "../engine/model/synth.ts";
import { runCli } from "./_spillway_cli.ts";

/** A tiny-moe GGUF (2 blocks, 4 experts) with some metadata replaced; data is a hole. */
function craft(path: string, overrides: Record<string, number>): void {
  const shape = getShape("tiny-moe")!;
  const md = shapeMetadata(shape, "Q8_0");
  for (const [k, v] of Object.entries(overrides)) md.set(k, { type: GGUF_TYPE.UINT32, value: v } as GgufWriteValue);
  const q8 = ggmlTypeByName("Q8_0")!, f32 = ggmlTypeByName("F32")!;
  const tensors = shapeTensors(shape).map((t) => ({ name: t.name, shape: t.dims, type: t.kind === "weight" ? q8 : f32 }));
  const layout = layoutGguf(md, tensors);
  const fd = openSync(path, "w");
  try {
    writeSync(fd, layout.header, 0, layout.header.length, 0);
  } finally {
    closeSync(fd);
  }
  truncateSync(path, layout.fileSize);
}

async function withTmp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "spillway-mdcheck-"));
  try {
    await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const cases: [string, Record<string, number>, RegExp][] = [
  ["block_count 2^31-1", { "qwen3moe.block_count": 2 ** 31 - 1 }, /qwen3moe\.block_count is 2147483647 but the file has tensors for blocks 0\.\.1/],
  ["block_count 100000", { "qwen3moe.block_count": 100000 }, /qwen3moe\.block_count is 100000 but the file has tensors for blocks 0\.\.1/],
  ["block_count 1 (fewer than present)", { "qwen3moe.block_count": 1 }, /qwen3moe\.block_count is 1 but the file has tensors for blocks 0\.\.1/],
  ["expert_count 0", { "qwen3moe.expert_count": 0 }, /qwen3moe\.expert_count is 0 but blk\.0\.ffn_gate_exps\.weight holds 4 experts/],
  ["expert_count 7", { "qwen3moe.expert_count": 7 }, /qwen3moe\.expert_count is 7 but blk\.0\.ffn_gate_exps\.weight holds 4 experts/],
  ["expert_used_count 9", { "qwen3moe.expert_used_count": 9 }, /qwen3moe\.expert_used_count is 9; expected 1\.\.4/],
  ["head_count 0", { "qwen3moe.attention.head_count": 0 }, /qwen3moe\.attention\.head_count is 0/],
  ["head_count 5 (q is 64 wide)", { "qwen3moe.attention.head_count": 5 }, /qwen3moe\.attention\.head_count is 5 but blk\.0\.attn_q\.weight has 64 outputs/],
  ["head_count_kv 0", { "qwen3moe.attention.head_count_kv": 0 }, /qwen3moe\.attention\.head_count_kv is 0/],
  ["embedding_length 0", { "qwen3moe.embedding_length": 0 }, /qwen3moe\.embedding_length is 0 but token_embd\.weight rows are 64 wide/],
];

for (const [name, overrides, message] of cases) {
  test(`GGUF metadata contradicting the tensors is refused: ${name}`, async () => {
    await withTmp(async (dir) => {
      const path = join(dir, "bad.gguf");
      craft(path, overrides);
      const t0 = performance.now();
      const e = await assertRejects(() => readModel(path), ModelFileError);
      assertLess(performance.now() - t0, 2000, "refused at once, not after a runaway");
      assertMatch(e.message, new RegExp(path.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")), "names the file");
      assertMatch(e.message, message);
    });
  });
}

test("GGUF metadata check: the untouched file reads, and real shapes' synthesized headers pass", async () => {
  await withTmp(async (dir) => {
    const path = join(dir, "good.gguf");
    craft(path, {});
    const m = await readModel(path);
    assertEquals([m.layerCount, m.expertCount, m.expertUsedCount, m.headCount], [2, 4, 2, 4]);
    // Every named shape (Qwen3-30B-A3B, GLM-4.7-Flash's MLA, Llama ...) passes the check.
    for (const shape of listShapes()) {
      const out = join(dir, `${shape.id}.gguf`);
      await synthesize({ shape: shape.id, quant: "Q8_0", out, sparse: true });
      assertEquals((await readModel(out)).layerCount, shape.layers, shape.id);
      rmSync(out);
    }
  });
});

test("spillway plan on a GGUF claiming 2^31-1 blocks: exit 2 and a located error within seconds (CLI)", async () => {
  await withTmp(async (dir) => {
    const path = join(dir, "huge-claim.gguf");
    craft(path, { "qwen3moe.block_count": 2 ** 31 - 1 });
    const recipe = join(dir, "r.json5");
    writeFileSync(recipe, JSON.stringify({ model: { path }, runtime: { name: "llama.cpp" }, hardware: "cpu-only" }));
    const t0 = performance.now();
    const r = runCli(["plan", recipe], { timeoutMs: 60_000 });
    assertLess(performance.now() - t0, 30_000);
    assertEquals(r.status, 2, r.stderr);
    assertMatch(r.stderr, /huge-claim\.gguf: qwen3moe\.block_count is 2147483647/);
    assert(!/\n\s+at /.test(r.stderr), "no stack trace");
  });
});

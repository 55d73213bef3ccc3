// What synth writes: metadata llama.cpp reads, data contents (small Q8_0 scales, norms of 1.0,
// random routers), determinism per seed, sparse files, no leftovers on failure, the command.
import { test } from "node:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assert, assertAlmostEquals, assertEquals, assertGreater, assertLess, assertNotEquals, assertRejects } from "./_assert.ts";
import { InterruptedError, ModelFileError } from "../core/errors.ts";
import { readModel } from "../engine/model/mod.ts";
import { synthesize, toF16 } from "../engine/model/synth.ts";
import { listShapes, synthCommand } from "../commands/synth.ts";

async function withTmp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "spillway-synth-"));
  try {
    await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function f16ToNumber(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

test("f16 conversion", () => {
  assertEquals(toF16(1), 0x3c00);
  assertEquals(toF16(-2), 0xc000);
  assertAlmostEquals(f16ToNumber(toF16(2.7e-4)), 2.7e-4, 1e-6);
});

test("tensor data: small Q8_0 scales, norms 1.0, random routers, zero selection bias", async () => {
  await withTmp(async (dir) => {
    const out = join(dir, "m.gguf");
    let calls = 0;
    let last = 0;
    const { bytes } = await synthesize({
      shape: "tiny-mla",
      quant: "Q8_0",
      out,
      vocabSize: 300,
      onProgress: (done, total) => {
        calls++;
        assert(done >= last && done <= total);
        last = done;
      },
    });
    assertEquals(last, bytes);
    assertGreater(calls, 2);
    const m = await readModel(out);
    const buf = readFileSync(out);
    const tensor = (name: string) => m.tensors.find((t) => t.name === name)!;
    // Q8_0: 34-byte blocks, f16 scale then 32 int8 quants.
    const q = tensor("blk.1.ffn_up_exps.weight");
    assertEquals(q.dtype, "Q8_0");
    const quants = new Set<number>();
    for (let o = q.offset; o < q.offset + q.bytes; o += 34) {
      const d = f16ToNumber(buf.readUInt16LE(o));
      assert(d > 1e-4 && d < 5e-4, `scale ${d}`);
      quants.add(buf.readInt8(o + 2 + (o % 32)));
    }
    assertGreater(quants.size, 100); // random quants, not a constant
    const norm = tensor("blk.0.attn_norm.weight");
    assertEquals(norm.dtype, "F32");
    for (let i = 0; i < norm.bytes; i += 4) assertEquals(buf.readFloatLE(norm.offset + i), 1);
    const router = tensor("blk.1.ffn_gate_inp.weight");
    assertEquals(router.dtype, "F32");
    const rv = Array.from({ length: router.bytes / 4 }, (_, i) => buf.readFloatLE(router.offset + 4 * i));
    assert(rv.every((v) => Math.abs(v) <= 0.1));
    assertGreater(new Set(rv).size, rv.length / 2);
    const bias = tensor("blk.1.exp_probs_b.bias");
    for (let i = 0; i < bias.bytes; i++) assertEquals(buf[bias.offset + i], 0);
  });
});

test("same seed writes the same file, another seed another; sparse writes a hole", async () => {
  await withTmp(async (dir) => {
    const a = join(dir, "a.gguf"), b = join(dir, "b.gguf"), c = join(dir, "c.gguf"), s = join(dir, "s.gguf");
    await synthesize({ shape: "tiny-moe", quant: "Q4_0", out: a, seed: 3, vocabSize: 300 });
    await synthesize({ shape: "tiny-moe", quant: "Q4_0", out: b, seed: 3, vocabSize: 300 });
    await synthesize({ shape: "tiny-moe", quant: "Q4_0", out: c, seed: 4, vocabSize: 300 });
    await synthesize({ shape: "tiny-moe", quant: "Q4_0", out: s, seed: 3, vocabSize: 300, sparse: true });
    const [ba, bb, bc, bs] = [a, b, c, s].map((p) => readFileSync(p));
    assert(ba.equals(bb));
    assert(!ba.equals(bc));
    assertEquals(bs.length, ba.length);
    const m = await readModel(s);
    const t = m.tensors.find((x) => x.class === "ffn_experts")!;
    assert(bs.subarray(t.offset, t.offset + t.bytes).every((x) => x === 0));
    assertNotEquals(ba.subarray(t.offset, t.offset + 64).reduce((x, y) => x + y, 0), 0);
  });
});

test("metadata matches the shape (llama.cpp keys)", async () => {
  await withTmp(async (dir) => {
    for (const shape of listShapes().filter((s) => s.id.startsWith("tiny-"))) {
      const out = join(dir, `${shape.id}.gguf`);
      await synthesize({ shape: shape.id, quant: "F16", out });
      const m = await readModel(out);
      const a = shape.architecture;
      assertEquals(m.architecture, a);
      assertEquals(m.layerCount, shape.layers);
      assertEquals(m.embeddingLength, shape.embedding);
      assertEquals(m.contextLength, shape.contextLength);
      assertEquals(m.vocabSize, shape.vocab);
      assertEquals(m.expertCount, shape.experts);
      assertEquals(m.metadata["tokenizer.ggml.model"], "gpt2");
      assertEquals(m.metadata["tokenizer.ggml.merges"], [] as unknown);
      assertEquals(m.metadata["tokenizer.ggml.tokens"], shape.vocab);
      assertEquals(m.metadata["general.file_type"], 1);
      assertEquals(m.quantization, "F16");
    }
  });
});

test("failures leave nothing behind; bad arguments are refused", async () => {
  await withTmp(async (dir) => {
    const out = join(dir, "no-such-dir", "x.gguf");
    const e = await assertRejects(() => synthesize({ shape: "tiny-llama", quant: "Q8_0", out }), ModelFileError, "cannot create");
    assert(e.message.startsWith(out));
    await assertRejects(() => synthesize({ shape: "nope", quant: "Q8_0", out: join(dir, "y.gguf") }), RangeError, "unknown shape");
    await assertRejects(() => synthesize({ shape: "tiny-llama", quant: "Q6_K" as "Q8_0", out: join(dir, "y.gguf") }), RangeError, "Q6_K");
    await assertRejects(() => synthesize({ shape: "tiny-llama", quant: "Q8_0", out: join(dir, "y.gguf"), vocabSize: 100 }), RangeError, "258");
    assertEquals(readdirSync(dir), []);
  });
});

test("synthCommand: exit codes and output", async () => {
  await withTmp(async (dir) => {
    const out = join(dir, "cmd.gguf");
    const log = console.log, err = console.error;
    const lines: string[] = [];
    console.log = (...a: unknown[]) => void lines.push(a.join(" "));
    console.error = (...a: unknown[]) => void lines.push(a.join(" "));
    let codes: number[];
    try {
      codes = [
        await synthCommand({ shape: "tiny-llama", quant: "q8_0", out, sparse: true, seed: 1 }),
        await synthCommand({ shape: "huge", quant: "Q8_0", out }),
        await synthCommand({ shape: "tiny-llama", quant: "Q3", out }),
      ];
    } finally {
      console.log = log;
      console.error = err;
    }
    assertEquals(codes, [0, 2, 2]);
    assert(existsSync(out));
    assertLess(0, statSync(out).size);
    assert(lines.some((l) => l.includes("wrote") && l.includes(out)), lines.join("\n"));
    assert(lines.some((l) => l.includes("qwen3moe-30b-a3b")), "unknown shape lists the known ones");
  });
});

test("synth: an aborted write rejects with the signal's reason and leaves no file behind", async () => {
  const dir = mkdtempSync(join(tmpdir(), "spillway-synth-abort-"));
  try {
    const out = join(dir, "tiny.gguf");
    const ac = new AbortController();
    ac.abort(new InterruptedError("stop"));
    await assertRejects(() => synthesize({ shape: "tiny-llama", quant: "Q8_0", out, signal: ac.signal }), InterruptedError, "stop");
    assertEquals(readdirSync(dir), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

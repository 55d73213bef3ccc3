// safetensors headers: single file, sharded through model.safetensors.index.json, config.json
// numbers, and malformed files.
import { test } from "node:test";
import { mkdtempSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assert, assertEquals, assertRejects } from "./_assert.ts";
import { ModelFileError } from "../core/errors.ts";
import { readModel } from "../engine/model/mod.ts";

async function withTmp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "spillway-st-"));
  try {
    await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const SIZE: Record<string, number> = { F32: 4, BF16: 2, F16: 2, I8: 1 };

/** Writes a safetensors file whose data is zeros; returns the data offset. */
function writeSafetensors(path: string, tensors: [string, string, number[]][], extra: Record<string, unknown> = {}): number {
  const header: Record<string, unknown> = { __metadata__: { format: "pt" }, ...extra };
  let off = 0;
  for (const [name, dtype, shape] of tensors) {
    const bytes = shape.reduce((a, b) => a * b, 1) * SIZE[dtype];
    header[name] = { dtype, shape, data_offsets: [off, off + bytes] };
    off += bytes;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - ((8 + json.length) % 8)) % 8); // the format pads the header with spaces
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(path, Buffer.concat([len, Buffer.from(json), Buffer.alloc(off)]));
  return 8 + json.length;
}

function qwenLayer(l: number): [string, string, number[]][] {
  const p = `model.layers.${l}.`;
  return [
    [`${p}input_layernorm.weight`, "BF16", [64]],
    [`${p}self_attn.q_proj.weight`, "BF16", [64, 64]],
    [`${p}self_attn.k_proj.weight`, "BF16", [32, 64]],
    [`${p}self_attn.v_proj.weight`, "BF16", [32, 64]],
    [`${p}self_attn.o_proj.weight`, "BF16", [64, 64]],
    [`${p}mlp.gate.weight`, "BF16", [4, 64]],
    ...[0, 1, 2, 3].flatMap((e): [string, string, number[]][] => [
      [`${p}mlp.experts.${e}.gate_proj.weight`, "BF16", [32, 64]],
      [`${p}mlp.experts.${e}.up_proj.weight`, "BF16", [32, 64]],
      [`${p}mlp.experts.${e}.down_proj.weight`, "BF16", [64, 32]],
    ]),
  ];
}

const QWEN_CONFIG = {
  architectures: ["Qwen3MoeForCausalLM"],
  model_type: "qwen3_moe",
  num_hidden_layers: 2,
  hidden_size: 64,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 16,
  vocab_size: 300,
  max_position_embeddings: 4096,
  num_experts: 4,
  num_experts_per_tok: 2,
};

test("single safetensors file with config.json", async () => {
  await withTmp(async (dir) => {
    const p = join(dir, "model.safetensors");
    const tensors: [string, string, number[]][] = [
      ["model.embed_tokens.weight", "BF16", [300, 64]],
      ...qwenLayer(0),
      ...qwenLayer(1),
      ["model.norm.weight", "F32", [64]],
      ["lm_head.weight", "BF16", [300, 64]],
    ];
    const dataOffset = writeSafetensors(p, tensors);
    writeFileSync(join(dir, "config.json"), JSON.stringify(QWEN_CONFIG));
    for (const path of [p, dir]) {
      const m = await readModel(path);
      assertEquals(m.format, "safetensors");
      assertEquals(m.files, [p]);
      assertEquals(m.architecture, "qwen3moe");
      assertEquals(m.quantization, "BF16");
      assertEquals([m.layerCount, m.embeddingLength, m.headCount, m.headCountKv, m.keyLength, m.valueLength], [2, 64, 4, 2, 16, 16]);
      assertEquals([m.expertCount, m.expertUsedCount, m.vocabSize, m.contextLength], [4, 2, 300, 4096]);
      assertEquals(m.kvBytesPerToken, 2 * 2 * (16 + 16) * 2);
      assertEquals(m.tensors.length, tensors.length);
      assertEquals(m.fileBytes, statSync(p).size);
      assertEquals(m.tensorBytes, statSync(p).size - dataOffset);
      const emb = m.tensors.find((t) => t.name === "model.embed_tokens.weight")!;
      assertEquals([emb.offset, emb.bytes, emb.class, emb.layer], [dataOffset, 300 * 64 * 2, "embedding", null]);
      const ex = m.tensors.filter((t) => t.class === "ffn_experts");
      assertEquals(ex.length, 24);
      assertEquals(m.tensors.filter((t) => t.class === "router").map((t) => t.layer), [0, 1]);
    }
  });
});

test("sharded checkpoint through model.safetensors.index.json (MLA config)", async () => {
  await withTmp(async (dir) => {
    const shards: [string, string, number[]][][] = [
      [["model.embed_tokens.weight", "BF16", [300, 64]], ["model.layers.0.self_attn.kv_a_proj_with_mqa.weight", "BF16", [96, 64]]],
      [["model.layers.1.mlp.experts.0.up_proj.weight", "BF16", [32, 64]], ["model.layers.1.mlp.shared_experts.up_proj.weight", "BF16", [32, 64]]],
      [["lm_head.weight", "BF16", [300, 64]]],
    ];
    const weightMap: Record<string, string> = {};
    shards.forEach((tensors, i) => {
      const f = `model-0000${i + 1}-of-00003.safetensors`;
      writeSafetensors(join(dir, f), tensors);
      for (const [name] of tensors) weightMap[name] = f;
    });
    writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
    writeFileSync(join(dir, "config.json"), JSON.stringify({
      model_type: "deepseek_v3",
      num_hidden_layers: 61,
      hidden_size: 7168,
      num_attention_heads: 128,
      num_key_value_heads: 128,
      kv_lora_rank: 512,
      qk_rope_head_dim: 64,
      qk_nope_head_dim: 128,
      v_head_dim: 128,
      n_routed_experts: 256,
      num_experts_per_tok: 8,
      vocab_size: 129280,
    }));
    for (const path of [dir, join(dir, "model.safetensors.index.json"), join(dir, "model-00002-of-00003.safetensors")]) {
      const m = await readModel(path);
      assertEquals(m.files.length, 3, path);
      assertEquals(m.tensors.length, 5);
      assertEquals(m.architecture, "deepseek2");
      assertEquals(m.kvBytesPerToken, 61 * (512 + 64) * 2);
      assertEquals([m.keyLength, m.valueLength, m.expertCount, m.expertUsedCount], [192, 128, 256, 8]);
      assertEquals(m.tensors.find((t) => t.name === "lm_head.weight")!.file, join(dir, "model-00003-of-00003.safetensors"));
      assertEquals(m.tensors.find((t) => t.name.includes("shared_experts"))!.class, "ffn_shared_expert");
    }
    // The index names a tensor the shard does not hold.
    weightMap["model.layers.9.mlp.gate.weight"] = "model-00001-of-00003.safetensors";
    writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify({ weight_map: weightMap }));
    await assertRejects(() => readModel(dir), ModelFileError, "model.layers.9.mlp.gate.weight");
    // A missing shard.
    delete weightMap["model.layers.9.mlp.gate.weight"];
    writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify({ weight_map: weightMap }));
    rmSync(join(dir, "model-00003-of-00003.safetensors"));
    const e = await assertRejects(() => readModel(dir), ModelFileError, "not found");
    assert(e.message.includes("model-00003-of-00003.safetensors"));
  });
});

test("malformed safetensors: truncated header, data beyond EOF, size mismatch, bad dtype", async () => {
  await withTmp(async (dir) => {
    const p = join(dir, "x.safetensors");
    const dataOffset = writeSafetensors(p, [["a.weight", "F32", [16, 16]]]);
    truncateSync(p, dataOffset - 10);
    let e = await assertRejects(() => readModel(p), ModelFileError, "truncated");
    assert(e.message.startsWith(p));
    writeSafetensors(p, [["a.weight", "F32", [16, 16]]]);
    truncateSync(p, dataOffset + 100);
    await assertRejects(() => readModel(p), ModelFileError, "beyond the end of the file");
    // data_offsets that do not match dtype x shape.
    writeSafetensors(p, [["a.weight", "F32", [16, 16]]], { "b.weight": { dtype: "F32", shape: [4], data_offsets: [0, 8] } });
    e = await assertRejects(() => readModel(p), ModelFileError, "b.weight");
    assert(e.message.includes("needs 16 bytes"));
    writeSafetensors(p, [], { "c.weight": { dtype: "Q9", shape: [4], data_offsets: [0, 4] } });
    await assertRejects(() => readModel(p), ModelFileError, "unknown dtype");
    writeSafetensors(p, [], { "": { dtype: "F32", shape: [1], data_offsets: [0, 4] } });
    await assertRejects(() => readModel(p), ModelFileError, "empty name");
  });
});

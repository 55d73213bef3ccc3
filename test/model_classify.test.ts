// Tensor classification of real llama.cpp GGUF and Hugging Face names, and KV cache sizes.
import { test } from "node:test";
import { assertEquals } from "./_assert.ts";
import { classifyTensor } from "../engine/model/classify.ts";
import { kvBytesPerToken } from "../engine/model/kv.ts";
import { getShape, listShapes, shapeTensors } from "../engine/model/shapes.ts";
import type { TensorClass } from "../core/types.ts";

function check(cases: [string, TensorClass, number | null][]): void {
  for (const [name, cls, layer] of cases) {
    assertEquals(classifyTensor(name), { class: cls, layer }, name);
  }
}

test("llama GGUF names", () => {
  check([
    ["token_embd.weight", "embedding", null],
    ["rope_freqs.weight", "other", null],
    ["blk.0.attn_norm.weight", "norm", 0],
    ["blk.0.attn_q.weight", "attention", 0],
    ["blk.0.attn_k.weight", "attention", 0],
    ["blk.0.attn_v.weight", "attention", 0],
    ["blk.0.attn_output.weight", "attention", 0],
    ["blk.31.ffn_norm.weight", "norm", 31],
    ["blk.31.ffn_gate.weight", "ffn_dense", 31],
    ["blk.31.ffn_up.weight", "ffn_dense", 31],
    ["blk.31.ffn_down.weight", "ffn_dense", 31],
    ["output_norm.weight", "norm", null],
    ["output.weight", "output", null],
  ]);
});

test("qwen3moe GGUF names", () => {
  check([
    ["blk.47.attn_q_norm.weight", "norm", 47],
    ["blk.47.attn_k_norm.weight", "norm", 47],
    ["blk.47.ffn_gate_inp.weight", "router", 47],
    ["blk.47.ffn_gate_exps.weight", "ffn_experts", 47],
    ["blk.47.ffn_up_exps.weight", "ffn_experts", 47],
    ["blk.47.ffn_down_exps.weight", "ffn_experts", 47],
    ["blk.3.ffn_gate_up_exps.weight", "ffn_experts", 3],
  ]);
});

test("deepseek2 / GLM-4.7-Flash GGUF names (MLA, shared experts)", () => {
  check([
    ["blk.1.attn_q_a_norm.weight", "norm", 1],
    ["blk.1.attn_kv_a_norm.weight", "norm", 1],
    ["blk.1.attn_q_a.weight", "attention", 1],
    ["blk.1.attn_q_b.weight", "attention", 1],
    ["blk.1.attn_kv_a_mqa.weight", "attention", 1],
    ["blk.1.attn_kv_b.weight", "attention", 1],
    ["blk.1.attn_k_b.weight", "attention", 1],
    ["blk.1.attn_v_b.weight", "attention", 1],
    ["blk.1.exp_probs_b.bias", "router", 1],
    ["blk.1.ffn_gate_shexp.weight", "ffn_shared_expert", 1],
    ["blk.1.ffn_up_shexp.weight", "ffn_shared_expert", 1],
    ["blk.1.ffn_down_shexp.weight", "ffn_shared_expert", 1],
    ["blk.0.ffn_gate.weight", "ffn_dense", 0],
  ]);
});

test("Hugging Face safetensors names", () => {
  check([
    ["model.embed_tokens.weight", "embedding", null],
    ["lm_head.weight", "output", null],
    ["model.norm.weight", "norm", null],
    ["model.layers.5.input_layernorm.weight", "norm", 5],
    ["model.layers.5.post_attention_layernorm.weight", "norm", 5],
    ["model.layers.5.self_attn.q_proj.weight", "attention", 5],
    ["model.layers.5.self_attn.o_proj.weight", "attention", 5],
    ["model.layers.5.self_attn.q_norm.weight", "norm", 5],
    ["model.layers.5.self_attn.kv_a_proj_with_mqa.weight", "attention", 5],
    ["model.layers.5.self_attn.kv_a_layernorm.weight", "norm", 5],
    ["model.layers.5.self_attn.q_a_proj.weight", "attention", 5],
    ["model.layers.5.mlp.gate_proj.weight", "ffn_dense", 5],
    ["model.layers.5.mlp.down_proj.weight", "ffn_dense", 5],
    ["model.layers.5.mlp.gate.weight", "router", 5],
    ["model.layers.5.mlp.gate.e_score_correction_bias", "router", 5],
    ["model.layers.5.mlp.experts.17.up_proj.weight", "ffn_experts", 5],
    ["model.layers.5.mlp.shared_experts.down_proj.weight", "ffn_shared_expert", 5],
    ["model.layers.5.mlp.shared_expert.up_proj.weight", "ffn_shared_expert", 5],
    ["model.layers.5.mlp.shared_expert_gate.weight", "router", 5],
    ["model.layers.2.block_sparse_moe.gate.weight", "router", 2],
    ["model.layers.2.block_sparse_moe.experts.7.w1.weight", "ffn_experts", 2],
  ]);
});

test("every tensor of every named shape gets a class other than 'other'", () => {
  for (const s of listShapes()) {
    for (const t of shapeTensors(s)) {
      const r = classifyTensor(t.name);
      assertEquals(r.class === "other", false, `${s.id}: ${t.name}`);
    }
  }
});

test("KV bytes per token: GQA, per-layer heads, MLA", () => {
  // qwen3moe-30b-a3b: 48 layers, 4 KV heads of 128 + 128, F16.
  assertEquals(kvBytesPerToken({ layerCount: 48, headCountKv: 4, keyLength: 128, valueLength: 128 }), 98304);
  // llama 3.1 8B: 32 * 8 * 256 * 2.
  const l8 = getShape("llama-8b")!;
  assertEquals(kvBytesPerToken({ layerCount: l8.layers, headCountKv: l8.headsKv, keyLength: l8.headDim, valueLength: l8.headDim }), 131072);
  // Per-layer KV heads (layers without attention contribute nothing).
  assertEquals(kvBytesPerToken({ layerCount: 3, headCountKv: [2, 0, 4], keyLength: 64, valueLength: 64 }), (2 + 4) * 128 * 2);
  // MLA (DeepSeek-V3: 61 layers, kv_lora_rank 512, rope 64): latent + rope key only.
  assertEquals(kvBytesPerToken({ layerCount: 61, headCountKv: 1, keyLength: 576, valueLength: 512, kvLoraRank: 512, ropeDim: 64 }), 61 * 576 * 2);
  // q8_0-sized cache elements.
  assertEquals(kvBytesPerToken({ layerCount: 1, headCountKv: 1, keyLength: 32, valueLength: 32 }, 1), 64);
});

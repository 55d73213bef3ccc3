/**
 * Tensor roles from tensor names, for llama.cpp GGUF names (`blk.N.ffn_up_exps.weight`) and
 * Hugging Face safetensors names (`model.layers.N.mlp.experts.3.up_proj.weight`). The role drives
 * placement: dense tensors read for every token go to VRAM first, routed experts spill first.
 *
 * @module
 */

import type { TensorClass } from "../../core/types.ts";

/** Role and transformer block of a tensor. */
export interface TensorRole {
  class: TensorClass;
  /** Block index from `blk.N.` / `layers.N.`, or null outside the blocks. */
  layer: number | null;
}

const LAYER_RE = /(?:^|\.)(?:blk|layers|layer|h|blocks)\.(\d+)\./;

// Order matters: router and expert names contain "gate"/"up"; norms contain "attn_q"/"kv_a".
const RULES: [RegExp, TensorClass][] = [
  // Router: GGUF ffn_gate_inp (+ the shared-expert gate), exp_probs_b (selection bias);
  // HF mlp.gate.weight, block_sparse_moe.gate, router, e_score_correction_bias, shared_expert_gate.
  [/ffn_gate_inp|exp_probs_b|\.mlp\.gate\.(?:weight|bias)$|block_sparse_moe\.gate\.|\.router\.|e_score_correction_bias|shared_expert_gate\./, "router"],
  // Routed experts: GGUF *_exps / *_chexps; HF .experts.
  [/_exps\b|_chexps\b|\.experts\./, "ffn_experts"],
  // Shared experts: GGUF *_shexp; HF shared_expert(s).
  [/_shexp\b|\.shared_experts?\./, "ffn_shared_expert"],
  // Norms: GGUF *_norm (attn_norm, ffn_norm, attn_q_a_norm, output_norm, token_embd_norm);
  // HF *layernorm*, *.norm.*, q_norm / k_norm, ln_*.
  [/_norm\b|layernorm|(?:^|\.)norm\.|(?:^|\.)ln_|(?:^|\.)[qk]_norm\./, "norm"],
  // Token embedding.
  [/(?:^|\.)token_embd\.|embed_tokens\.|(?:^|\.)wte\.|word_embeddings\.|per_layer_token_embd\./, "embedding"],
  // Output head: GGUF top-level output.weight; HF lm_head.
  [/^output\.|(?:^|\.)lm_head\./, "output"],
  // Attention: GGUF attn_* (q/k/v/output, qkv, MLA q_a/q_b/kv_a_mqa/kv_b/k_b/v_b, sinks);
  // HF self_attn.* / attention.* / attn.*.
  [/(?:^|\.)attn_|\.self_attn\.|\.attention\.|\.attn\./, "attention"],
  // Dense FFN: GGUF ffn_up/gate/down; HF mlp.* / feed_forward.*.
  [/(?:^|\.)ffn_(?:up|gate|down)\b|\.mlp\.|\.feed_forward\./, "ffn_dense"],
];

/** Classifies one tensor name. */
export function classifyTensor(name: string): TensorRole {
  const m = LAYER_RE.exec(name);
  const layer = m ? Number(m[1]) : null;
  for (const [re, cls] of RULES) {
    if (re.test(name)) return { class: cls, layer };
  }
  return { class: "other", layer };
}

/**
 * KV cache size per token from the attention shape: GQA (K and V per KV head) or MLA (one latent
 * vector plus the decoupled RoPE key per layer, as llama.cpp caches deepseek2-style models).
 *
 * @module
 */

/** What the KV cache size depends on. */
export interface AttentionShape {
  /** Blocks holding attention (llama.cpp `{arch}.block_count`). */
  layerCount: number;
  /** KV heads, one number for all layers or one per layer (`{arch}.attention.head_count_kv`). */
  headCountKv: number | readonly number[];
  /** Key head size (`{arch}.attention.key_length`, default embedding / heads). */
  keyLength: number;
  /** Value head size (`{arch}.attention.value_length`). */
  valueLength: number;
  /** MLA latent size (`{arch}.attention.kv_lora_rank`); set for MLA models only. */
  kvLoraRank?: number;
  /** MLA decoupled RoPE key size (`{arch}.rope.dimension_count`, HF `qk_rope_head_dim`). */
  ropeDim?: number;
}

/**
 * KV cache bytes per token for all layers at `bytesPerElement` (2: the F16 cache llama.cpp uses
 * by default).
 *
 * - GQA: sum over layers of headCountKv * (keyLength + valueLength) * bytes.
 * - MLA: layers * (kvLoraRank + ropeDim) * bytes; llama.cpp caches only the compressed latent and
 *   the RoPE part of the key (no V cache: src/llama-kv-cache.cpp `has_v = !is_mla`).
 */
export function kvBytesPerToken(a: AttentionShape, bytesPerElement = 2): number {
  if (a.kvLoraRank && a.kvLoraRank > 0) {
    return a.layerCount * (a.kvLoraRank + (a.ropeDim ?? 0)) * bytesPerElement;
  }
  const perLayer = (l: number): number =>
    typeof a.headCountKv === "number" ? a.headCountKv : (a.headCountKv[l] ?? 0);
  let total = 0;
  for (let l = 0; l < a.layerCount; l++) total += perLayer(l) * (a.keyLength + a.valueLength);
  return total * bytesPerElement;
}

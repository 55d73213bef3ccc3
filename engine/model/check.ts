/**
 * `checkGgufShape`: GGUF architecture metadata checked against the tensors the file actually holds.
 * A header is only a claim: `block_count` = 2^31-1 on a 2-block file made the planner iterate two
 * billion layers, `expert_count` = 0 on a MoE file predicted 0 t/s prefill, `head_count` = 0
 * predicted millions of t/s. llama.cpp refuses such files when it loads them; spillway refuses
 * them when it reads the header, naming the file and the metadata key.
 *
 * @example
 * ```ts
 * checkGgufShape("m.gguf", "qwen3moe", (k) => md.get(k), tensors); // throws ModelFileError
 * ```
 *
 * @module
 */
import { ModelFileError } from "../../core/errors.ts";
import type { TensorInfo } from "../../core/types.ts";

/** A metadata number (or per-layer numbers) by key without the architecture prefix; undefined when absent. */
export type MetadataLookup = (key: string) => number | number[] | undefined;

const EXPERT_RE = /^blk\.\d+\.ffn_(?:gate|up|down)_exps\.weight$/;

/**
 * Throws ModelFileError (`<file>: <arch>.<key> is N but ...`) when the metadata that sizes the
 * model contradicts the tensors: block count, expert count and experts used, attention heads, KV
 * heads, embedding width, vocabulary size.
 */
export function checkGgufShape(file: string, arch: string, get: MetadataLookup, tensors: readonly TensorInfo[]): void {
  const bad = (key: string, detail: string): never => {
    throw new ModelFileError(file, `${arch}.${key} ${detail}; the header contradicts the tensors in the file (corrupt or hand-edited metadata)`);
  };
  const scalar = (key: string): number | undefined => {
    const v = get(key);
    return Array.isArray(v) ? (v.length ? Math.max(...v) : undefined) : v;
  };
  const byName = new Map(tensors.map((t) => [t.name, t]));

  // Blocks: llama.cpp builds block_count blocks and requires every tensor of each.
  let maxLayer = -1;
  for (const t of tensors) if (t.name.startsWith("blk.") && t.layer !== null && t.layer > maxLayer) maxLayer = t.layer;
  const blocks = scalar("block_count");
  if (blocks !== undefined && maxLayer >= 0 && blocks !== maxLayer + 1) {
    bad("block_count", `is ${blocks} but the file has tensors for blocks 0..${maxLayer}`);
  }
  if (blocks !== undefined && maxLayer < 0 && blocks > 0 && tensors.length > 0) {
    bad("block_count", `is ${blocks} but the file has no block tensors (blk.N.*)`);
  }

  // Experts: the third dimension of the stacked expert tensors is the expert count.
  const exps = tensors.find((t) => EXPERT_RE.test(t.name));
  if (exps) {
    const have = exps.shape[2] ?? 1;
    const count = scalar("expert_count");
    if (count !== have) bad("expert_count", `is ${count ?? "missing"} but ${exps.name} holds ${have} experts`);
    const used = scalar("expert_used_count");
    if (used === undefined || !(used >= 1 && used <= have)) bad("expert_used_count", `is ${used ?? "missing"}; expected 1..${have} (the experts in ${exps.name})`);
  }

  // Attention heads: the query projection's output width is heads * head size.
  const q = byName.get("blk.0.attn_q.weight") ?? byName.get("blk.0.attn_q_b.weight");
  const k = byName.get("blk.0.attn_k.weight");
  const attention = q ?? k ?? byName.get("blk.0.attn_qkv.weight");
  if (attention) {
    const heads = get("attention.head_count");
    const hMax = scalar("attention.head_count");
    if (hMax === undefined || !(hMax >= 1)) bad("attention.head_count", `is ${hMax ?? "missing"} but ${attention.name} is an attention projection (at least 1 head)`);
    const h0 = Array.isArray(heads) ? heads[0] : heads;
    const qOut = q?.shape[1];
    if (q && qOut !== undefined && h0 !== undefined && h0 > 0 && qOut % h0 !== 0) {
      bad("attention.head_count", `is ${h0} but ${q.name} has ${qOut} outputs, not a multiple of it`);
    }
    const kvMax = scalar("attention.head_count_kv");
    if (kvMax !== undefined && !(kvMax >= 1)) bad("attention.head_count_kv", `is ${kvMax} but ${attention.name} is an attention projection (at least 1 KV head)`);
    const kv = get("attention.head_count_kv");
    const kv0 = Array.isArray(kv) ? kv[0] : kv;
    const kOut = k?.shape[1];
    if (k && kOut !== undefined && kv0 !== undefined && kv0 > 0 && kOut % kv0 !== 0) {
      bad("attention.head_count_kv", `is ${kv0} but ${k.name} has ${kOut} outputs, not a multiple of it`);
    }
  }

  // Embedding width and vocabulary: token_embd is [embedding, vocab].
  const embd = byName.get("token_embd.weight");
  if (embd) {
    const width = scalar("embedding_length");
    if (width !== undefined && width !== embd.shape[0]) bad("embedding_length", `is ${width} but token_embd.weight rows are ${embd.shape[0]} wide`);
    const vocab = scalar("vocab_size");
    if (vocab !== undefined && vocab !== embd.shape[1]) bad("vocab_size", `is ${vocab} but token_embd.weight has ${embd.shape[1]} rows`);
  }
}

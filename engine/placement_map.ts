/**
 * Access-aware placement for programs that load a model through the shim (transformers, any
 * `spillway run -- python3 script.py` whose model spillway can find): which weight allocations go to
 * host memory, chosen by the bytes a decoded token reads from them, written as the shim's placement
 * map (SPILLWAY_PLACEMENT, docs/shim.md).
 *
 * The shim places allocations, not tensors. PyTorch's `model.to("cuda")` copies parameters in module
 * order, and its caching allocator gives every tensor of 10 MiB or more its own `cudaMalloc` (the
 * size rounded up to 2 MiB) and packs smaller ones into 2 MiB and 20 MiB segments. So the allocations
 * the shim can spill (>= SPILLWAY_MIN_SPILL) are known from the model header alone, in order; a rule
 * `min=<min spill> nth=K host` names the K-th of them.
 *
 * Order of spilling: gathered tables first (the token embedding: one row per token is read), then
 * whole layers from the last, never norms, the output head or the KV cache unless nothing else is
 * left (the KV cache is not a weight and never appears here).
 *
 * @example
 * ```ts
 * import { placementForTensors, tensorsFromConfig } from "./placement_map.ts";
 * const tensors = tensorsFromConfig({ hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32,
 *   num_attention_heads: 32, num_key_value_heads: 8, vocab_size: 128256 }, 2);
 * const p = placementForTensors(tensors, { vramForWeights: 10 * 2 ** 30, minSpill: 32 * 2 ** 20 });
 * console.log(p.hostBytes, p.hostReadPerToken); // ~5 GB to host, of which ~4 GB read per token
 * ```
 *
 * @module
 */
import { classifyTensor } from "./model/classify.ts";
import type { PlacementRule } from "../shim/placement.ts";

/** One weight tensor as the runtime holds it on the GPU. */
export interface WeightTensor {
  name: string;
  /** Bytes on the GPU (elements x element size of the dtype the runtime uses). */
  bytes: number;
  /** Bytes of it one decoded token reads (the embedding: one row). */
  readPerToken: number;
}

/** One allocation the caching allocator makes, as the shim sees it. */
export interface PlannedAllocation {
  /** Position among allocations of at least `minSpill` bytes (the rule's `nth`); null below it. */
  nth: number | null;
  size: number;
  tensors: string[];
  /** Bytes of the tensors in it read per decoded token. */
  readPerToken: number;
  /** Spill priority class: 0 gathered tables, 1 layers, 2 never unless nothing else (norms, head). */
  rank: 0 | 1 | 2;
  layer: number | null;
  place: "host" | "auto";
}

/** The outcome: rules for the shim and what they do. */
export interface PlacementPlan {
  rules: PlacementRule[];
  allocations: PlannedAllocation[];
  /** Bytes of the allocations the rules put in host memory. */
  hostBytes: number;
  /** Of those, bytes a decoded token reads (the roofline's host traffic). */
  hostReadPerToken: number;
  /** Weight bytes left in VRAM (every allocation, small ones included). */
  vramBytes: number;
  /** All weight bytes read per token. */
  readPerToken: number;
  /** True when VRAM could not hold even the never-spilled allocations. */
  overflow: boolean;
}

/** Options of {@linkcode placementForTensors}. */
export interface PlacementOptions {
  /** VRAM the weights may use (the shim's budget for them). */
  vramForWeights: number;
  /** The shim's SPILLWAY_MIN_SPILL: smaller allocations are never spilled (and not counted by `nth`). */
  minSpill: number;
  /**
   * Which layers spill first: `last` (default; the order, matching native offload runtimes)
   * or `first` (the early layers: PyTorch's host-side launch work then runs ahead while the GPU reads
   * the spilled layers over PCIe, and the fast VRAM layers that follow are already queued).
   */
  layerOrder?: "last" | "first";
}

const MiB = 2 ** 20;

/** PyTorch CUDACachingAllocator sizes (c10/cuda/CUDACachingAllocator.cpp): kSmallSize, kLargeBuffer, kMinLargeAlloc, kRoundLarge. */
const SMALL = 1 * MiB;
const LARGE_BUFFER = 20 * MiB;
const MIN_LARGE_ALLOC = 10 * MiB;
const ROUND_LARGE = 2 * MiB;

const roundUp = (n: number, m: number) => Math.ceil(n / m) * m;

/**
 * The allocations PyTorch's caching allocator makes for tensors created one after another (nothing
 * freed in between), as (size, tensors). Requests round up to 512 bytes; up to 1 MiB come from 2 MiB
 * segments; up to 10 MiB from 20 MiB segments whose remainders later requests reuse (best fit);
 * larger ones get a segment of their size rounded up to 2 MiB.
 */
export function torchAllocations(tensors: readonly WeightTensor[]): { size: number; tensors: WeightTensor[] }[] {
  const out: { size: number; tensors: WeightTensor[] }[] = [];
  const small: { free: number; seg: number }[] = [];
  const large: { free: number; seg: number }[] = [];
  for (const t of tensors) {
    const req = roundUp(Math.max(1, t.bytes), 512);
    const pool = req <= SMALL ? small : large;
    // Best fit among cached free blocks of the pool.
    let best: { free: number; seg: number } | null = null;
    for (const b of pool) if (b.free >= req && (!best || b.free < best.free)) best = b;
    if (best) {
      best.free -= req;
      out[best.seg]!.tensors.push(t);
      continue;
    }
    const size = req <= SMALL ? 2 * MiB : req < MIN_LARGE_ALLOC ? LARGE_BUFFER : roundUp(req, ROUND_LARGE);
    out.push({ size, tensors: [t] });
    // A block is split when the remainder is worth keeping (large pool: more than 1 MiB).
    const rest = size - req;
    if (pool === small ? rest > 0 : rest > SMALL) pool.push({ free: rest, seg: out.length - 1 });
  }
  return out;
}

function rankOf(names: string[]): { rank: 0 | 1 | 2; layer: number | null } {
  let rank: 0 | 1 | 2 = 0;
  let layer: number | null = null;
  for (const n of names) {
    const role = classifyTensor(n);
    const r = role.class === "embedding" ? 0 : role.class === "norm" || role.class === "output" || (role.class === "other" && role.layer === null) ? 2 : 1;
    if (r > rank) rank = r as 0 | 1 | 2;
    if (role.layer !== null) layer = Math.max(layer ?? 0, role.layer);
  }
  return { rank, layer };
}

/**
 * Choose the allocations to spill so the rest fits `vramForWeights`, least-read bytes per token
 * first, and write the rules. Allocations not chosen are left to the shim's default policy
 * (`auto`), so a budget smaller than assumed spills the last of them rather than failing.
 */
export function placementForTensors(tensors: readonly WeightTensor[], opts: PlacementOptions): PlacementPlan {
  const allocs = torchAllocations(tensors);
  let nth = 0;
  const planned: PlannedAllocation[] = allocs.map((a) => {
    const names = a.tensors.map((t) => t.name);
    const big = a.size >= opts.minSpill;
    const p: PlannedAllocation = {
      nth: big ? nth++ : null,
      size: a.size,
      tensors: names,
      readPerToken: a.tensors.reduce((s, t) => s + t.readPerToken, 0),
      ...rankOf(names),
      place: "auto" as const,
    };
    // A table read in full every token (tied embedding = output head) is not a gathered one.
    if (p.rank === 0 && p.readPerToken > p.size / 2) p.rank = 2;
    return p;
  });
  const total = planned.reduce((s, a) => s + a.size, 0);
  let need = total - opts.vramForWeights;
  const order = planned.filter((a) => a.nth !== null).sort((a, b) => {
    if (a.rank !== b.rank) return a.rank - b.rank;
    // Gathered tables: least read per byte first.
    if (a.rank === 0) return a.readPerToken / a.size - b.readPerToken / b.size;
    const la = a.layer ?? 0, lb = b.layer ?? 0;
    if (la !== lb) return opts.layerOrder === "first" ? la - lb : lb - la;
    return (b.nth ?? 0) - (a.nth ?? 0);
  });
  for (const a of order) {
    if (need <= 0) break;
    a.place = "host";
    need -= a.size;
  }
  const host = planned.filter((a) => a.place === "host");
  const rules: PlacementRule[] = host.map((a) => ({
    min: opts.minSpill,
    nth: a.nth!,
    action: "host" as const,
    comment: a.tensors.length === 1 ? a.tensors[0] : `${a.tensors[0]} +${a.tensors.length - 1}`,
  }));
  const hostBytes = host.reduce((s, a) => s + a.size, 0);
  return {
    rules,
    allocations: planned,
    hostBytes,
    hostReadPerToken: host.reduce((s, a) => s + a.readPerToken, 0),
    vramBytes: total - hostBytes,
    readPerToken: planned.reduce((s, a) => s + a.readPerToken, 0),
    overflow: need > 0,
  };
}

/** Bytes per element of safetensors / torch dtype names. */
export function dtypeBytes(dtype: string): number {
  const d = dtype.toLowerCase().replace(/^torch\./, "");
  if (/^(f64|float64|i64|int64|u64|uint64)$/.test(d)) return 8;
  if (/^(f32|float32|float|i32|int32|u32|uint32)$/.test(d)) return 4;
  if (/^(f16|float16|half|bf16|bfloat16|i16|int16|u16|uint16)$/.test(d)) return 2;
  if (/^(i8|int8|u8|uint8|bool|f8_e4m3|f8_e5m2|float8_e4m3fn|float8_e5m2)$/.test(d)) return 1;
  throw new RangeError(`unknown dtype '${dtype}'`);
}

/** Read per token: a gathered table (the embedding) one row, anything else all of it. */
function readOf(name: string, shape: readonly number[], bytes: number): number {
  const role = classifyTensor(name);
  if (role.class === "embedding" && shape.length === 2) return bytes / Math.max(1, shape[0]!);
  if (role.class === "ffn_experts") return bytes; // per-expert tensors: read when routed; whole here (no routing data)
  return bytes;
}

// Module registration order of Hugging Face decoder-only models (LlamaForCausalLM and kin):
// model.embed_tokens, model.layers[i].{self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj,
// input_layernorm, post_attention_layernorm}, model.norm, lm_head.
const IN_LAYER = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj", "input_layernorm", "post_attention_layernorm"];

/** Sort key of a Hugging Face parameter name in module (= `model.to()`) order. */
function moduleKey(name: string, headerPos: number): [number, number, number, number] {
  if (/embed_tokens\.|(?:^|\.)wte\.|word_embeddings\./.test(name)) return [0, 0, 0, headerPos];
  const m = /(?:^|\.)layers\.(\d+)\.(.*)$/.exec(name);
  if (m) {
    const sub = IN_LAYER.findIndex((p) => m[2]!.startsWith(p));
    return [1, Number(m[1]), sub < 0 ? IN_LAYER.length : sub, headerPos];
  }
  if (/lm_head\./.test(name)) return [3, 0, 0, headerPos];
  return [2, 0, 0, headerPos];
}

/**
 * Weight tensors in `model.to("cuda")` order from safetensors header entries (any order; files sort
 * their keys). `dtype` overrides the stored dtype (a bf16 checkpoint loaded as fp32).
 */
export function tensorsFromHeader(entries: readonly { name: string; dtype: string; shape: number[] }[], dtype?: string): WeightTensor[] {
  return entries
    .map((e, i) => ({ e, key: moduleKey(e.name, i) }))
    .sort((a, b) => a.key[0] - b.key[0] || a.key[1] - b.key[1] || a.key[2] - b.key[2] || a.key[3] - b.key[3])
    .map(({ e }) => {
      const n = e.shape.reduce((p, d) => p * d, 1);
      const bytes = n * dtypeBytes(dtype ?? e.dtype);
      return { name: e.name, bytes, readPerToken: readOf(e.name, e.shape, bytes) };
    });
}

/** The fields of a Llama-family Hugging Face config.json this module reads. */
export interface LlamaLikeConfig {
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads?: number;
  head_dim?: number;
  vocab_size: number;
  tie_word_embeddings?: boolean;
}

/**
 * The weight tensors of a Llama-family model from its config.json (a model directory without
 * weights, or a script that builds the model from its config), `elementBytes` per element.
 * @throws RangeError naming the config field that is missing or not a positive whole number.
 */
export function tensorsFromConfig(cfg: LlamaLikeConfig, elementBytes: number): WeightTensor[] {
  for (const k of ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size"] as const) {
    const v = cfg[k];
    if (!Number.isSafeInteger(v) || v <= 0) throw new RangeError(`config.json: ${k} must be a positive whole number, got ${JSON.stringify(v)}`);
  }
  const h = cfg.hidden_size, heads = cfg.num_attention_heads, kv = cfg.num_key_value_heads ?? heads;
  const hd = cfg.head_dim ?? h / heads;
  const entries: { name: string; dtype: string; shape: number[] }[] = [];
  const dt = elementBytes === 4 ? "F32" : elementBytes === 2 ? "BF16" : "I8";
  entries.push({ name: "model.embed_tokens.weight", dtype: dt, shape: [cfg.vocab_size, h] });
  for (let i = 0; i < cfg.num_hidden_layers; i++) {
    const p = `model.layers.${i}.`;
    entries.push(
      { name: `${p}self_attn.q_proj.weight`, dtype: dt, shape: [heads * hd, h] },
      { name: `${p}self_attn.k_proj.weight`, dtype: dt, shape: [kv * hd, h] },
      { name: `${p}self_attn.v_proj.weight`, dtype: dt, shape: [kv * hd, h] },
      { name: `${p}self_attn.o_proj.weight`, dtype: dt, shape: [h, heads * hd] },
      { name: `${p}mlp.gate_proj.weight`, dtype: dt, shape: [cfg.intermediate_size, h] },
      { name: `${p}mlp.up_proj.weight`, dtype: dt, shape: [cfg.intermediate_size, h] },
      { name: `${p}mlp.down_proj.weight`, dtype: dt, shape: [h, cfg.intermediate_size] },
      { name: `${p}input_layernorm.weight`, dtype: dt, shape: [h] },
      { name: `${p}post_attention_layernorm.weight`, dtype: dt, shape: [h] },
    );
  }
  entries.push({ name: "model.norm.weight", dtype: dt, shape: [h] });
  if (!cfg.tie_word_embeddings) entries.push({ name: "lm_head.weight", dtype: dt, shape: [cfg.vocab_size, h] });
  const tensors = tensorsFromHeader(entries);
  // Tied: the embedding is also the output head, read in full every token.
  if (cfg.tie_word_embeddings) tensors[0]!.readPerToken = tensors[0]!.bytes;
  return tensors;
}

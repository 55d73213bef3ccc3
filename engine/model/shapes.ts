/**
 * Named model shapes: the architecture numbers of real models (and tiny test models), enough to
 * write a GGUF that llama.cpp loads (`synth`) and to plan for a model without downloading it.
 * Tensor names and dimensions follow llama.cpp's loaders (src/models/llama.cpp, qwen3moe.cpp,
 * deepseek2.cpp); metadata keys follow src/llama-arch.cpp.
 *
 * @module
 */

/** Architecture numbers of one model. */
export interface ModelShape {
  /** Short id, e.g. `qwen3moe-30b-a3b`. */
  id: string;
  description: string;
  /** llama.cpp architecture (`general.architecture`). */
  architecture: "llama" | "qwen3moe" | "deepseek2";
  layers: number;
  embedding: number;
  heads: number;
  /** KV heads as llama.cpp stores them (1 for MLA models: MQA over the latent). */
  headsKv: number;
  /** Per-head key/value size (GQA models). */
  headDim: number;
  /** Dense FFN width (llama; deepseek2 leading dense blocks; qwen3moe metadata only). */
  ffn: number;
  vocab: number;
  contextLength: number;
  ropeFreqBase: number;
  rmsEps: number;
  /** Routed experts per MoE block (0: dense). */
  experts: number;
  expertsUsed: number;
  /** Width of one expert's FFN. */
  expertFfn: number;
  /** deepseek2: leading dense blocks, shared experts and MLA sizes. */
  leadingDense?: number;
  sharedExperts?: number;
  qLoraRank?: number;
  kvLoraRank?: number;
  qkNopeDim?: number;
  qkRopeDim?: number;
  vHeadDim?: number;
  /** deepseek2 routing: 1 softmax, 2 sigmoid (`{arch}.expert_gating_func`). */
  expertGatingFunc?: number;
  expertWeightsScale?: number;
  expertWeightsNorm?: boolean;
  /** Output head shares the embedding (no output.weight). */
  tiedEmbeddings?: boolean;
  /** Where the numbers come from. */
  source: string;
}

const QWEN3_30B_A3B: ModelShape = {
  id: "qwen3moe-30b-a3b",
  description: "Qwen3-30B-A3B: MoE, 48 blocks, 128 experts (8 used), GQA 32/4",
  architecture: "qwen3moe",
  layers: 48, embedding: 2048, heads: 32, headsKv: 4, headDim: 128, ffn: 6144,
  vocab: 151936, contextLength: 40960, ropeFreqBase: 1_000_000, rmsEps: 1e-6,
  experts: 128, expertsUsed: 8, expertFfn: 768,
  source: "Qwen/Qwen3-30B-A3B config.json",
};

const SHAPES: ModelShape[] = [
  QWEN3_30B_A3B,
  {
    // The 30B's blocks, fewer of them: llama.cpp's CPU decode of these experts measured on machines
    // whose RAM cannot hold the full model (runtimes/llama.cpp/README.md, patch 0006).
    ...QWEN3_30B_A3B,
    id: "qwen3moe-30b-a3b-8blocks",
    description: "bench shape: Qwen3-30B-A3B's blocks (128 experts, 8 used), 8 of its 48 blocks",
    layers: 8,
    source: "Qwen/Qwen3-30B-A3B config.json, blocks cut to 8",
  },
  {
    id: "llama-8b",
    description: "Llama 3.1 8B: dense, 32 blocks, GQA 32/8",
    architecture: "llama",
    layers: 32, embedding: 4096, heads: 32, headsKv: 8, headDim: 128, ffn: 14336,
    vocab: 128256, contextLength: 131072, ropeFreqBase: 500_000, rmsEps: 1e-5,
    experts: 0, expertsUsed: 0, expertFfn: 0,
    source: "meta-llama/Llama-3.1-8B config.json",
  },
  {
    id: "llama-70b",
    description: "Llama 3.1 70B: dense, 80 blocks, GQA 64/8",
    architecture: "llama",
    layers: 80, embedding: 8192, heads: 64, headsKv: 8, headDim: 128, ffn: 28672,
    vocab: 128256, contextLength: 131072, ropeFreqBase: 500_000, rmsEps: 1e-5,
    experts: 0, expertsUsed: 0, expertFfn: 0,
    source: "meta-llama/Llama-3.1-70B config.json",
  },
  {
    // llama.cpp converts Glm4MoeLiteForCausalLM to deepseek2 (conversion/glm.py Glm4MoeLiteModel):
    // MLA stored as MQA over the latent (head_count_kv 1, key_length 576, value_length 512).
    id: "glm-4.7-flash",
    description: "GLM-4.7-Flash (30B-A3B): deepseek2 MLA + MoE, 47 blocks, 64 experts (4 used) + 1 shared",
    architecture: "deepseek2",
    layers: 47, embedding: 2048, heads: 20, headsKv: 1, headDim: 256, ffn: 10240,
    vocab: 154880, contextLength: 202752, ropeFreqBase: 1_000_000, rmsEps: 1e-5,
    experts: 64, expertsUsed: 4, expertFfn: 1536,
    leadingDense: 1, sharedExperts: 1,
    qLoraRank: 768, kvLoraRank: 512, qkNopeDim: 192, qkRopeDim: 64, vHeadDim: 256,
    expertGatingFunc: 2, expertWeightsScale: 1.8, expertWeightsNorm: true,
    source: "zai-org/GLM-4.7-Flash config.json (Glm4MoeLiteForCausalLM)",
  },
  {
    id: "tiny-llama",
    description: "test shape: llama, 2 blocks, 64 wide",
    architecture: "llama",
    layers: 2, embedding: 64, heads: 4, headsKv: 2, headDim: 16, ffn: 128,
    vocab: 512, contextLength: 512, ropeFreqBase: 10_000, rmsEps: 1e-5,
    experts: 0, expertsUsed: 0, expertFfn: 0,
    source: "test shape",
  },
  {
    id: "tiny-moe",
    description: "test shape: qwen3moe, 2 blocks, 4 experts (2 used)",
    architecture: "qwen3moe",
    layers: 2, embedding: 64, heads: 4, headsKv: 2, headDim: 16, ffn: 128,
    vocab: 512, contextLength: 512, ropeFreqBase: 1_000_000, rmsEps: 1e-6,
    experts: 4, expertsUsed: 2, expertFfn: 32,
    source: "test shape",
  },
  {
    id: "tiny-mla",
    description: "test shape: deepseek2 MLA + MoE, 2 blocks (1 dense), 4 experts (2 used) + 1 shared",
    architecture: "deepseek2",
    layers: 2, embedding: 64, heads: 4, headsKv: 1, headDim: 32, ffn: 128,
    vocab: 512, contextLength: 512, ropeFreqBase: 10_000, rmsEps: 1e-5,
    experts: 4, expertsUsed: 2, expertFfn: 32,
    leadingDense: 1, sharedExperts: 1,
    qLoraRank: 64, kvLoraRank: 64, qkNopeDim: 32, qkRopeDim: 32, vHeadDim: 32,
    expertGatingFunc: 2, expertWeightsScale: 1.0, expertWeightsNorm: true,
    source: "test shape",
  },
];

/** All named shapes. */
export function listShapes(): ModelShape[] {
  return SHAPES.map((s) => ({ ...s }));
}

/** The shape named `id`, or undefined. */
export function getShape(id: string): ModelShape | undefined {
  const s = SHAPES.find((x) => x.id === id);
  return s ? { ...s } : undefined;
}

/** What a tensor holds, which decides its stored type and its synthetic contents. */
export type TensorKind =
  /** A matrix: stored in the file's quantization. */
  | "weight"
  /** RMS norm scale: F32, all 1.0. */
  | "norm"
  /** MoE router: F32, random (tokens pick varied experts). */
  | "router"
  /** Bias: F32, zero. */
  | "bias";

/** One tensor of a shape: GGUF name, ggml dimensions (ne[0] first), kind. */
export interface ShapeTensor {
  name: string;
  dims: number[];
  kind: TensorKind;
}

/** The tensors llama.cpp expects for `shape`, in file order. */
export function shapeTensors(shape: ModelShape): ShapeTensor[] {
  const t: ShapeTensor[] = [];
  const E = shape.embedding, V = shape.vocab;
  t.push({ name: "token_embd.weight", dims: [E, V], kind: "weight" });
  for (let i = 0; i < shape.layers; i++) {
    const b = `blk.${i}.`;
    t.push({ name: `${b}attn_norm.weight`, dims: [E], kind: "norm" });
    if (shape.architecture === "deepseek2") {
      deepseek2Block(shape, i, t);
      continue;
    }
    const q = shape.heads * shape.headDim, kv = shape.headsKv * shape.headDim;
    t.push({ name: `${b}attn_q.weight`, dims: [E, q], kind: "weight" });
    t.push({ name: `${b}attn_k.weight`, dims: [E, kv], kind: "weight" });
    t.push({ name: `${b}attn_v.weight`, dims: [E, kv], kind: "weight" });
    t.push({ name: `${b}attn_output.weight`, dims: [q, E], kind: "weight" });
    if (shape.architecture === "qwen3moe") {
      t.push({ name: `${b}attn_q_norm.weight`, dims: [shape.headDim], kind: "norm" });
      t.push({ name: `${b}attn_k_norm.weight`, dims: [shape.headDim], kind: "norm" });
    }
    t.push({ name: `${b}ffn_norm.weight`, dims: [E], kind: "norm" });
    if (shape.experts > 0) {
      const F = shape.expertFfn, X = shape.experts;
      t.push({ name: `${b}ffn_gate_inp.weight`, dims: [E, X], kind: "router" });
      t.push({ name: `${b}ffn_gate_exps.weight`, dims: [E, F, X], kind: "weight" });
      t.push({ name: `${b}ffn_down_exps.weight`, dims: [F, E, X], kind: "weight" });
      t.push({ name: `${b}ffn_up_exps.weight`, dims: [E, F, X], kind: "weight" });
    } else {
      t.push({ name: `${b}ffn_gate.weight`, dims: [E, shape.ffn], kind: "weight" });
      t.push({ name: `${b}ffn_down.weight`, dims: [shape.ffn, E], kind: "weight" });
      t.push({ name: `${b}ffn_up.weight`, dims: [E, shape.ffn], kind: "weight" });
    }
  }
  t.push({ name: "output_norm.weight", dims: [E], kind: "norm" });
  if (!shape.tiedEmbeddings) t.push({ name: "output.weight", dims: [E, V], kind: "weight" });
  return t;
}

// llama_model_deepseek2::load_arch_tensors, MLA (split k_b / v_b) layout.
function deepseek2Block(s: ModelShape, i: number, t: ShapeTensor[]): void {
  const b = `blk.${i}.`;
  const E = s.embedding, H = s.heads;
  const qLora = s.qLoraRank ?? 0, kvLora = s.kvLoraRank ?? 0;
  const nope = s.qkNopeDim ?? 0, rope = s.qkRopeDim ?? 0, v = s.vHeadDim ?? 0;
  const kMla = nope + rope;
  if (qLora > 0) {
    t.push({ name: `${b}attn_q_a_norm.weight`, dims: [qLora], kind: "norm" });
  }
  t.push({ name: `${b}attn_kv_a_norm.weight`, dims: [kvLora], kind: "norm" });
  if (qLora > 0) {
    t.push({ name: `${b}attn_q_a.weight`, dims: [E, qLora], kind: "weight" });
    t.push({ name: `${b}attn_q_b.weight`, dims: [qLora, H * kMla], kind: "weight" });
  } else {
    t.push({ name: `${b}attn_q.weight`, dims: [E, H * kMla], kind: "weight" });
  }
  t.push({ name: `${b}attn_kv_a_mqa.weight`, dims: [E, kvLora + rope], kind: "weight" });
  t.push({ name: `${b}attn_k_b.weight`, dims: [nope, kvLora, H], kind: "weight" });
  t.push({ name: `${b}attn_v_b.weight`, dims: [kvLora, v, H], kind: "weight" });
  t.push({ name: `${b}attn_output.weight`, dims: [H * v, E], kind: "weight" });
  t.push({ name: `${b}ffn_norm.weight`, dims: [E], kind: "norm" });
  if (i < (s.leadingDense ?? 0)) {
    t.push({ name: `${b}ffn_gate.weight`, dims: [E, s.ffn], kind: "weight" });
    t.push({ name: `${b}ffn_down.weight`, dims: [s.ffn, E], kind: "weight" });
    t.push({ name: `${b}ffn_up.weight`, dims: [E, s.ffn], kind: "weight" });
    return;
  }
  const F = s.expertFfn, X = s.experts, S = F * (s.sharedExperts ?? 0);
  t.push({ name: `${b}ffn_gate_inp.weight`, dims: [E, X], kind: "router" });
  t.push({ name: `${b}exp_probs_b.bias`, dims: [X], kind: "bias" });
  t.push({ name: `${b}ffn_gate_exps.weight`, dims: [E, F, X], kind: "weight" });
  t.push({ name: `${b}ffn_down_exps.weight`, dims: [F, E, X], kind: "weight" });
  t.push({ name: `${b}ffn_up_exps.weight`, dims: [E, F, X], kind: "weight" });
  if (S > 0) {
    t.push({ name: `${b}ffn_gate_shexp.weight`, dims: [E, S], kind: "weight" });
    t.push({ name: `${b}ffn_down_shexp.weight`, dims: [S, E], kind: "weight" });
    t.push({ name: `${b}ffn_up_shexp.weight`, dims: [E, S], kind: "weight" });
  }
}

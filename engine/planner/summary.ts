/**
 * A model reduced to what placement and cost depend on: per transformer block the bytes and
 * parameters of its attention (read every token), dense FFN (read every token) and routed experts
 * (only `expertUsedCount / expertCount` of them read per token), plus the output head and the
 * token embedding (one row per token).
 *
 * @module
 */
import type { ModelInfo, TensorClass, TensorInfo } from "../../core/types.ts";

/** A group of tensors placed together. */
export type UnitGroup = "attention" | "ffn_dense" | "ffn_experts" | "output" | "embedding";

/** Bytes and parameters of one group in one block (or outside the blocks). */
export interface UnitSize {
  bytes: number;
  params: number;
}

/** What the planner knows about a model. */
export interface ModelSummary {
  path: string;
  architecture: string;
  quantization: string;
  layerCount: number;
  /** Per block: attention (+ norms, router, other), dense FFN (+ shared experts), routed experts. */
  layers: { attention: UnitSize; ffn_dense: UnitSize; ffn_experts: UnitSize }[];
  output: UnitSize;
  embedding: UnitSize;
  totalBytes: number;
  expertCount: number;
  expertUsedCount: number;
  /** Fraction of a block's routed-expert bytes read per token (used / count; 0 for dense models). */
  expertFraction: number;
  /** Largest expert FFN width times experts used (activation width of the MoE part). */
  vocabSize: number;
  embeddingLength: number;
  /** Widest FFN activation per token (dense ffn or used experts' combined width). */
  ffnActiveWidth: number;
  headCount: number;
  keyLength: number;
  kvBytesPerToken: number;
}

function elements(t: TensorInfo): number {
  return t.shape.reduce((a, b) => a * b, 1);
}

function groupOf(cls: TensorClass, layer: number | null): UnitGroup {
  if (cls === "embedding") return "embedding";
  if (layer === null) return "output";
  if (cls === "ffn_experts") return "ffn_experts";
  if (cls === "ffn_dense" || cls === "ffn_shared_expert") return "ffn_dense";
  return "attention";
}

/** Summarize a ModelInfo for planning. */
export function summarizeModel(model: ModelInfo): ModelSummary {
  const zero = (): UnitSize => ({ bytes: 0, params: 0 });
  const maxLayer = model.tensors.reduce((m, t) => (t.layer !== null ? Math.max(m, t.layer) : m), -1);
  const layerCount = Math.max(model.layerCount, maxLayer + 1);
  const layers = Array.from({ length: layerCount }, () => ({ attention: zero(), ffn_dense: zero(), ffn_experts: zero() }));
  const output = zero();
  const embedding = zero();
  let denseFfnWidth = 0;
  for (const t of model.tensors) {
    const g = groupOf(t.class, t.layer);
    const u = g === "output" ? output : g === "embedding" ? embedding : layers[t.layer!][g];
    u.bytes += t.bytes;
    u.params += elements(t);
    if (t.class === "ffn_dense" && t.shape.length === 2) denseFfnWidth = Math.max(denseFfnWidth, Math.min(...t.shape));
  }
  const expertCount = model.expertCount;
  const used = model.expertUsedCount;
  let expertWidth = 0;
  if (expertCount > 0) {
    const gate = model.tensors.find((t) => t.class === "ffn_experts" && t.shape.length === 3);
    if (gate) expertWidth = Math.min(gate.shape[0], gate.shape[1]);
  }
  return {
    path: model.files[0] ?? "",
    architecture: model.architecture,
    quantization: model.quantization,
    layerCount,
    layers,
    output,
    embedding,
    totalBytes: model.tensorBytes,
    expertCount,
    expertUsedCount: used,
    expertFraction: expertCount > 0 ? Math.min(1, used / expertCount) : 0,
    vocabSize: model.vocabSize ?? embedding.params / Math.max(1, model.embeddingLength),
    embeddingLength: model.embeddingLength,
    ffnActiveWidth: Math.max(denseFfnWidth, used * expertWidth),
    headCount: model.headCount,
    keyLength: model.keyLength,
    kvBytesPerToken: model.kvBytesPerToken,
  };
}

/** Is this a mixture-of-experts model (routed experts present)? */
export function isMoe(s: ModelSummary): boolean {
  return s.expertCount > 0 && s.layers.some((l) => l.ffn_experts.bytes > 0);
}

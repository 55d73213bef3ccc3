/**
 * A ModelInfo built from a named shape (engine/model/shapes.ts) without a file: the tensors
 * llama.cpp would load, sized for a quantization the way `spillway synth` and llama-quantize store
 * them (matrices quantized; norms, routers and biases F32). Lets `spillway plan` work before the
 * model is downloaded or synthesized.
 *
 * @module
 */
import { ModelFileError } from "../../core/errors.ts";
import { classifyTensor, kvBytesPerToken } from "../model/mod.ts";
import { ggmlTensorBytes, ggmlTypeByName } from "../model/ggml_types.ts";
import { getShape, listShapes, shapeTensors } from "../model/shapes.ts";
import { KNOWN_MODELS } from "../recipe/models.ts";
import type { ModelInfo, TensorInfo } from "../../core/types.ts";

/** Shape id for a recipe id or shape id, or undefined. */
export function shapeIdFor(id: string): string | undefined {
  const s = KNOWN_MODELS[id]?.shape ?? id;
  return getShape(s) ? s : undefined;
}

/**
 * Describe the model of shape `id` at quantization `quant` (`q8_0`, `Q4_0`, `f16`), as if read
 * from a file at `path`.
 * @throws ModelFileError when the shape is unknown.
 */
export function modelInfoFromShape(id: string, quant: string, path = `${id}-${quant.toLowerCase()}.gguf`): ModelInfo {
  const shapeId = shapeIdFor(id);
  const shape = shapeId ? getShape(shapeId) : undefined;
  if (!shape) {
    throw new ModelFileError(path, `no known shape ${JSON.stringify(id)} to plan from (known: ${listShapes().map((s) => s.id).join(", ")})`);
  }
  const q = ggmlTypeByName(quant.toUpperCase());
  const f32 = ggmlTypeByName("F32")!;
  if (!q) throw new ModelFileError(path, `unknown quantization ${JSON.stringify(quant)}`);
  const tensors: TensorInfo[] = [];
  let offset = 0;
  for (const t of shapeTensors(shape)) {
    const type = t.kind === "weight" ? q : f32;
    const bytes = ggmlTensorBytes(type, t.dims);
    const role = classifyTensor(t.name);
    tensors.push({ name: t.name, shape: t.dims, dtype: type.name, bytes, offset, file: path, layer: role.layer, class: role.class });
    offset += Math.ceil(bytes / 32) * 32;
  }
  const mla = shape.architecture === "deepseek2";
  const tensorBytes = tensors.reduce((a, t) => a + t.bytes, 0);
  return {
    format: "gguf",
    files: [path],
    architecture: shape.architecture,
    name: shape.description,
    quantization: q.name,
    fileBytes: offset,
    tensorBytes,
    layerCount: shape.layers,
    embeddingLength: shape.embedding,
    contextLength: shape.contextLength,
    vocabSize: shape.vocab,
    headCount: shape.heads,
    headCountKv: mla ? shape.heads : shape.headsKv,
    keyLength: mla ? (shape.qkNopeDim ?? 0) + (shape.qkRopeDim ?? 0) : shape.headDim,
    valueLength: mla ? (shape.vHeadDim ?? shape.headDim) : shape.headDim,
    expertCount: shape.experts,
    expertUsedCount: shape.expertsUsed,
    kvBytesPerToken: kvBytesPerToken({
      layerCount: shape.layers,
      headCountKv: shape.headsKv,
      keyLength: shape.headDim,
      valueLength: shape.headDim,
      kvLoraRank: mla ? shape.kvLoraRank : undefined,
      ropeDim: shape.qkRopeDim,
    }),
    tensors,
    metadata: { "spillway.from_shape": shape.id },
  };
}

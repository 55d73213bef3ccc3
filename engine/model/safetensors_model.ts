/**
 * The safetensors translator of readModel: a checkpoint's headers (one file, a sharded one through
 * its index, or a directory) and its config.json -> ModelInfo, tensors classified, the
 * architecture named as llama.cpp names it.
 *
 * @module
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ModelFileError } from "../../core/errors.ts";
import type { ModelInfo, TensorInfo } from "../../core/types.ts";
import { classifyTensor } from "./classify.ts";
import { kvBytesPerToken } from "./kv.ts";
import { readSafetensorsHeader, readSafetensorsIndex, type SafetensorsHeader } from "./safetensors.ts";
import { dominantDtype } from "./dtype.ts";

/** The index file of a sharded safetensors checkpoint. */
export const SAFETENSORS_INDEX = "model.safetensors.index.json";

/** True when the checkpoint index `index` lists the shard `file`. */
export function indexLists(index: string, file: string): boolean {
  try {
    const map = JSON.parse(readFileSync(index, "utf8")).weight_map ?? {};
    return Object.values(map).includes(file);
  } catch {
    return false;
  }
}

/** The safetensors checkpoint in a directory: its index, or its one .safetensors file. */
export function readSafetensorsDir(dir: string): ModelInfo {
  const index = join(dir, SAFETENSORS_INDEX);
  if (existsSync(index)) return fromSafetensors(readSafetensorsIndex(index).headers, dir);
  const files = readdirSync(dir).filter((f) => f.endsWith(".safetensors")).sort();
  if (files.length === 0) {
    throw new ModelFileError(dir, `directory has no ${SAFETENSORS_INDEX} and no .safetensors file`);
  }
  if (files.length > 1) {
    throw new ModelFileError(dir, `directory has ${files.length} .safetensors files but no ${SAFETENSORS_INDEX}; pass one file`);
  }
  return fromSafetensors([readSafetensorsHeader(join(dir, files[0]))], dir);
}

/** HF `model_type` -> llama.cpp architecture name, where they differ (llama.cpp convert_hf_to_gguf). */
const HF_ARCH: Record<string, string> = {
  qwen3_moe: "qwen3moe",
  qwen2_moe: "qwen2moe",
  mixtral: "llama",
  mistral: "llama",
  deepseek_v2: "deepseek2",
  deepseek_v3: "deepseek2",
  glm4_moe_lite: "deepseek2",
  glm4_moe: "glm4moe",
  gpt_oss: "gpt-oss",
};

type Config = Record<string, unknown>;

function readConfig(dir: string): Config | undefined {
  const p = join(dir, "config.json");
  if (!existsSync(p)) return undefined;
  let c: unknown;
  try {
    c = JSON.parse(readFileSync(p, "utf8"));
  } catch (e) {
    throw new ModelFileError(p, `not valid JSON: ${(e as Error).message}`, { cause: e });
  }
  if (typeof c !== "object" || c === null) throw new ModelFileError(p, "config.json is not a JSON object");
  const cfg = c as Config;
  // Multimodal checkpoints nest the language model's numbers.
  if (cfg.num_hidden_layers === undefined && typeof cfg.text_config === "object" && cfg.text_config !== null) {
    return { ...(cfg.text_config as Config), architectures: cfg.architectures, model_type: cfg.model_type };
  }
  return cfg;
}

/** A safetensors checkpoint (its shards' headers and `config.json` in `dir`) described. */
export function fromSafetensors(headers: SafetensorsHeader[], dir: string): ModelInfo {
  const cfg = readConfig(dir) ?? {};
  const n = (...keys: string[]): number | undefined => {
    for (const k of keys) if (typeof cfg[k] === "number") return cfg[k] as number;
    return undefined;
  };
  const tensors: TensorInfo[] = headers.flatMap((h) =>
    h.tensors.map((t) => {
      const role = classifyTensor(t.name);
      return { name: t.name, shape: t.shape, dtype: t.dtype, bytes: t.bytes, offset: t.offset, file: t.file, layer: role.layer, class: role.class };
    })
  );
  const modelType = typeof cfg.model_type === "string" ? cfg.model_type : undefined;
  const architecture = modelType ? (HF_ARCH[modelType] ?? modelType) : "unknown";
  const maxLayer = tensors.reduce((m, t) => (t.layer !== null && t.layer > m ? t.layer : m), -1);
  const embd = tensors.find((t) => t.class === "embedding");
  const layerCount = n("num_hidden_layers", "n_layer", "num_layers") ?? maxLayer + 1;
  const embeddingLength = n("hidden_size", "n_embd", "d_model") ?? embd?.shape[1] ?? 0;
  const headCount = n("num_attention_heads", "n_head") ?? 0;
  const kvLoraRank = n("kv_lora_rank");
  const mla = kvLoraRank !== undefined && kvLoraRank > 0;
  const headDim = n("head_dim") ?? (headCount ? Math.floor(embeddingLength / headCount) : 0);
  const headCountKv = mla ? headCount : (n("num_key_value_heads", "n_head_kv") ?? headCount);
  const ropeDim = n("qk_rope_head_dim") ?? 0;
  const keyLength = mla ? (n("qk_nope_head_dim") ?? 0) + ropeDim : headDim;
  const valueLength = mla ? (n("v_head_dim") ?? headDim) : headDim;
  const vocabSize = n("vocab_size") ?? embd?.shape[0];
  const contextLength = n("max_position_embeddings", "n_positions", "max_seq_len");
  const name = typeof cfg._name_or_path === "string" ? cfg._name_or_path : undefined;
  const metadata: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(cfg)) {
    metadata[k] = Array.isArray(v) && v.length > 64 ? v.length : v;
  }
  return {
    format: "safetensors",
    files: headers.map((h) => h.path),
    architecture,
    ...(name ? { name } : {}),
    quantization: dominantDtype(tensors),
    fileBytes: headers.reduce((a, h) => a + h.fileSize, 0),
    tensorBytes: tensors.reduce((a, t) => a + t.bytes, 0),
    layerCount,
    embeddingLength,
    ...(contextLength !== undefined ? { contextLength } : {}),
    ...(vocabSize !== undefined ? { vocabSize } : {}),
    headCount,
    headCountKv,
    keyLength,
    valueLength,
    expertCount: n("num_experts", "n_routed_experts", "num_local_experts") ?? 0,
    expertUsedCount: n("num_experts_per_tok", "moe_topk") ?? 0,
    kvBytesPerToken: kvBytesPerToken({
      layerCount,
      headCountKv,
      keyLength,
      valueLength,
      kvLoraRank: mla ? kvLoraRank : undefined,
      ropeDim,
    }),
    tensors,
    metadata,
  };
}

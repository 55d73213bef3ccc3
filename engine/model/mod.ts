/**
 * `readModel(path)`: the header-derived description of a model file (GGUF, split GGUF,
 * safetensors, sharded safetensors), with every tensor classified and the KV cache size per
 * token. Reads headers only: a 30 GB file is described in milliseconds.
 *
 * @example
 * ```ts
 * import { readModel } from "./engine/model/mod.ts";
 * const m = await readModel("Qwen3-30B-A3B-Q8_0.gguf");
 * console.log(m.architecture, m.layerCount, m.kvBytesPerToken);
 * ```
 *
 * @module
 */

import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { ModelFileError } from "../../core/errors.ts";
import type { ModelInfo, TensorInfo } from "../../core/types.ts";
import { ByteReader } from "./byte_reader.ts";
import { checkGgufShape } from "./check.ts";
import { classifyTensor } from "./classify.ts";
import { type GgufHeader, type GgufKv, type GgufValue, readGgufHeader } from "./gguf.ts";
import { kvBytesPerToken } from "./kv.ts";
import { readSafetensorsHeader, readSafetensorsIndex, type SafetensorsHeader } from "./safetensors.ts";

export { classifyTensor, type TensorRole } from "./classify.ts";
export { kvBytesPerToken, type AttentionShape } from "./kv.ts";

const SPLIT_RE = /^(.*)-(\d{5})-of-(\d{5})\.gguf$/;
const INDEX_NAME = "model.safetensors.index.json";

/**
 * Reads the headers of the model at `path` and describes it. `path` may be a GGUF file (any part
 * of a split GGUF: all parts are read), a safetensors file, a shard of a sharded checkpoint, its
 * `model.safetensors.index.json`, or a directory holding a safetensors checkpoint.
 * Throws ModelFileError naming the file and the problem.
 */
export async function readModel(path: string): Promise<ModelInfo> {
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    throw new ModelFileError(path, "file not found", { cause: e });
  }
  if (st.isDirectory()) return readSafetensorsDir(path);
  if (path.endsWith(".json")) return fromSafetensors(readSafetensorsIndex(path).headers, dirname(path));
  const magic = sniff(path);
  if (magic === "gguf") return readGguf(path);
  if (magic === "safetensors") {
    const index = join(dirname(path), INDEX_NAME);
    if (existsSync(index) && indexLists(index, basename(path))) {
      return fromSafetensors(readSafetensorsIndex(index).headers, dirname(path));
    }
    return fromSafetensors([readSafetensorsHeader(path)], dirname(path));
  }
  throw new ModelFileError(path, "not a GGUF or safetensors file (unrecognized header)");
}

function sniff(path: string): "gguf" | "safetensors" | "unknown" {
  const r = new ByteReader(path);
  try {
    if (r.size < 9) return r.size >= 4 && new TextDecoder().decode(r.bytes(4)) === "GGUF" ? "gguf" : "unknown";
    const head = r.bytes(9);
    if (head[0] === 0x47 && head[1] === 0x47 && head[2] === 0x55 && head[3] === 0x46) return "gguf";
    // safetensors: u64 header length then a JSON object.
    if (head[8] === 0x7b && head[6] === 0 && head[7] === 0) return "safetensors";
    return "unknown";
  } finally {
    r.close();
  }
}

function indexLists(index: string, file: string): boolean {
  try {
    const map = JSON.parse(readFileSync(index, "utf8")).weight_map ?? {};
    return Object.values(map).includes(file);
  } catch {
    return false;
  }
}

function readSafetensorsDir(dir: string): ModelInfo {
  const index = join(dir, INDEX_NAME);
  if (existsSync(index)) return fromSafetensors(readSafetensorsIndex(index).headers, dir);
  const files = readdirSync(dir).filter((f) => f.endsWith(".safetensors")).sort();
  if (files.length === 0) {
    throw new ModelFileError(dir, `directory has no ${INDEX_NAME} and no .safetensors file`);
  }
  if (files.length > 1) {
    throw new ModelFileError(dir, `directory has ${files.length} .safetensors files but no ${INDEX_NAME}; pass one file`);
  }
  return fromSafetensors([readSafetensorsHeader(join(dir, files[0]))], dir);
}

// ---------------------------------------------------------------- GGUF

function readGguf(path: string): ModelInfo {
  const first = readGgufHeader(path);
  const count = num(first.metadata.get("split.count")?.value);
  if (!count || count <= 1) return fromGguf([first]);
  const m = SPLIT_RE.exec(basename(path));
  if (!m) {
    throw new ModelFileError(path, `split.count is ${count} but the name does not follow <name>-00001-of-${String(count).padStart(5, "0")}.gguf`);
  }
  if (Number(m[3]) !== count) {
    throw new ModelFileError(path, `file name says ${Number(m[3])} parts but split.count is ${count}`);
  }
  const parts: GgufHeader[] = [];
  for (let i = 1; i <= count; i++) {
    const p = join(dirname(path), `${m[1]}-${String(i).padStart(5, "0")}-of-${m[3]}.gguf`);
    if (p === path) {
      parts.push(first);
      continue;
    }
    if (!existsSync(p)) throw new ModelFileError(p, `part ${i} of ${count} of split model ${basename(path)} is missing`);
    parts.push(readGgufHeader(p));
  }
  let total = 0;
  parts.forEach((h, i) => {
    const no = num(h.metadata.get("split.no")?.value);
    if (no !== undefined && no !== i) throw new ModelFileError(h.path, `split.no is ${no}, expected ${i} from the file name`);
    const c = num(h.metadata.get("split.count")?.value);
    if (c !== undefined && c !== count) throw new ModelFileError(h.path, `split.count is ${c}, but part 1 says ${count}`);
    total += h.tensors.length;
  });
  const expected = num(first.metadata.get("split.tensors.count")?.value);
  if (expected !== undefined && expected !== total) {
    throw new ModelFileError(parts[0].path, `split.tensors.count is ${expected} but the ${count} parts hold ${total} tensors`);
  }
  const seen = new Set<string>();
  for (const h of parts) {
    for (const t of h.tensors) {
      if (seen.has(t.name)) throw new ModelFileError(h.path, `tensor '${t.name}' appears in more than one part`);
      seen.add(t.name);
    }
  }
  return fromGguf(parts);
}

function num(v: GgufValue | undefined): number | undefined {
  if (typeof v === "number") return v;
  if (typeof v === "bigint") return Number(v);
  if (typeof v === "boolean") return v ? 1 : 0;
  return undefined;
}

/** A metadata number, or per-layer array of numbers. */
function numOrArr(kv: GgufKv | undefined): number | number[] | undefined {
  if (!kv) return undefined;
  const v = kv.value;
  if (typeof v === "object" && v !== null && typeof v !== "bigint") {
    return v.values ? v.values.map((x) => num(x) ?? 0) : undefined;
  }
  return num(v);
}

function maxOf(v: number | number[] | undefined): number | undefined {
  return Array.isArray(v) ? (v.length ? Math.max(...v) : undefined) : v;
}

function fromGguf(parts: GgufHeader[]): ModelInfo {
  const md = parts[0].metadata;
  const path = parts[0].path;
  const archV = md.get("general.architecture")?.value;
  if (typeof archV !== "string" || archV.length === 0) {
    throw new ModelFileError(path, "metadata has no general.architecture");
  }
  const arch = archV;
  const get = (k: string): number | undefined => num(md.get(`${arch}.${k}`)?.value);

  const tensors: TensorInfo[] = [];
  for (const h of parts) {
    for (const t of h.tensors) {
      const role = classifyTensor(t.name);
      tensors.push({
        name: t.name,
        shape: t.shape,
        dtype: t.type.name,
        bytes: t.bytes,
        offset: t.offset,
        file: h.path,
        layer: role.layer,
        class: role.class,
      });
    }
  }

  // The header's numbers size everything downstream: refuse those the tensors contradict.
  checkGgufShape(path, arch, (k) => numOrArr(md.get(`${arch}.${k}`)), tensors);
  const maxLayer = tensors.reduce((m, t) => (t.layer !== null && t.layer > m ? t.layer : m), -1);
  const layerCount = get("block_count") ?? maxLayer + 1;
  const embeddingLength = get("embedding_length") ?? 0;
  const headArr = numOrArr(md.get(`${arch}.attention.head_count`));
  const headCount = maxOf(headArr) ?? 0;
  const headKvArr = numOrArr(md.get(`${arch}.attention.head_count_kv`)) ?? headArr ?? 0;
  let headCountKv = maxOf(headKvArr) ?? headCount;
  const defHead = headCount > 0 ? Math.floor(embeddingLength / headCount) : 0;
  let keyLength = get("attention.key_length") ?? defHead;
  let valueLength = get("attention.value_length") ?? defHead;
  const kvLoraRank = get("attention.kv_lora_rank");
  const ropeDim = get("rope.dimension_count") ?? keyLength;
  const mla = kvLoraRank !== undefined && kvLoraRank > 0;
  const kvBytes = kvBytesPerToken({
    layerCount,
    headCountKv: headKvArr,
    keyLength,
    valueLength,
    kvLoraRank: mla ? kvLoraRank : undefined,
    ropeDim,
  });
  if (mla) {
    // Report the per-head sizes after decompression (MHA view); the cache size is the latent's.
    keyLength = get("attention.key_length_mla") ?? keyLength;
    valueLength = get("attention.value_length_mla") ?? valueLength;
    headCountKv = headCount;
  }

  const tokens = md.get("tokenizer.ggml.tokens")?.value;
  const embd = tensors.find((t) => t.name === "token_embd.weight");
  const vocabSize = get("vocab_size") ??
    (typeof tokens === "object" && tokens !== null && typeof tokens !== "bigint" ? tokens.length : undefined) ??
    embd?.shape[1];
  const name = md.get("general.name")?.value;

  return {
    format: "gguf",
    files: parts.map((p) => p.path),
    architecture: arch,
    ...(typeof name === "string" ? { name } : {}),
    quantization: dominantDtype(tensors),
    fileBytes: parts.reduce((a, p) => a + p.fileSize, 0),
    tensorBytes: tensors.reduce((a, t) => a + t.bytes, 0),
    layerCount,
    embeddingLength,
    ...(get("context_length") !== undefined ? { contextLength: get("context_length") } : {}),
    ...(vocabSize !== undefined ? { vocabSize } : {}),
    headCount,
    headCountKv,
    keyLength,
    valueLength,
    expertCount: get("expert_count") ?? 0,
    expertUsedCount: maxOf(numOrArr(md.get(`${arch}.expert_used_count`))) ?? 0,
    kvBytesPerToken: kvBytes,
    tensors,
    metadata: summarize(md),
  };
}

/** Metadata as plain JSON: arrays longer than 64 entries become their length, big integers strings. */
function summarize(md: Map<string, GgufKv>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const plain = (v: GgufValue): unknown => {
    if (typeof v === "bigint") return v.toString();
    if (typeof v === "object" && v !== null) {
      if (v.length > 64 || !v.values) return v.length;
      return v.values.map(plain);
    }
    return v;
  };
  for (const [k, kv] of md) out[k] = plain(kv.value);
  return out;
}

function dominantDtype(tensors: { dtype: string; bytes: number }[]): string {
  const by = new Map<string, number>();
  for (const t of tensors) by.set(t.dtype, (by.get(t.dtype) ?? 0) + t.bytes);
  let best = "unknown";
  let bestBytes = -1;
  for (const [d, b] of by) if (b > bestBytes) (best = d), (bestBytes = b);
  return best;
}

// ---------------------------------------------------------------- safetensors

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

function fromSafetensors(headers: SafetensorsHeader[], dir: string): ModelInfo {
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

/**
 * The GGUF translator of readModel: GGUF headers (one file or a split model) -> ModelInfo,
 * every tensor classified, the attention shape and KV bytes per token from the metadata.
 *
 * @module
 */
import { existsSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { ModelFileError } from "../../core/errors.ts";
import type { ModelInfo, TensorInfo } from "../../core/types.ts";
import { checkGgufShape } from "./check.ts";
import { classifyTensor } from "./classify.ts";
import { type GgufHeader, type GgufKv, type GgufValue, readGgufHeader } from "./gguf.ts";
import { kvBytesPerToken } from "./kv.ts";
import { dominantDtype } from "./dtype.ts";

const SPLIT_RE = /^(.*)-(\d{5})-of-(\d{5})\.gguf$/;

/**
 * A GGUF model: the file, or every part of a split GGUF (`<name>-0000N-of-0000M.gguf`, checked
 * against split.count, split.no and split.tensors.count), described from its headers.
 * Throws ModelFileError naming the file and the problem.
 */
export function readGgufModel(path: string): ModelInfo {
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
    metadata: plainMetadata(md),
  };
}

/** Metadata as plain JSON: arrays longer than 64 entries become their length, big integers strings. */
function plainMetadata(md: Map<string, GgufKv>): Record<string, unknown> {
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

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

import { existsSync, statSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { ModelFileError } from "../../core/errors.ts";
import type { ModelInfo } from "../../core/types.ts";
import { ByteReader } from "./byte_reader.ts";
import { readSafetensorsHeader, readSafetensorsIndex } from "./safetensors.ts";
import { readGgufModel } from "./gguf_model.ts";
import { fromSafetensors, indexLists, readSafetensorsDir, SAFETENSORS_INDEX } from "./safetensors_model.ts";

export { classifyTensor, type TensorRole } from "./classify.ts";
export { kvBytesPerToken, type AttentionShape } from "./kv.ts";

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
  if (magic === "gguf") return readGgufModel(path);
  if (magic === "safetensors") {
    const index = join(dirname(path), SAFETENSORS_INDEX);
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


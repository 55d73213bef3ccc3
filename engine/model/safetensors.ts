/**
 * safetensors header reader: 8-byte little-endian header length, a JSON header
 * `{name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?: {...}}`, then the data.
 * Sharded checkpoints list their shards in `model.safetensors.index.json` (`weight_map`).
 * Reads headers only.
 *
 * @module
 */

import { readFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { ModelFileError } from "../../core/errors.ts";
import { ByteReader } from "./byte_reader.ts";

/** Bytes per element of each safetensors dtype (F4 packs two elements per byte). */
const DTYPE_BITS: Record<string, number> = {
  BOOL: 8, U8: 8, I8: 8, F8_E5M2: 8, F8_E4M3: 8, F8_E8M0: 8,
  I16: 16, U16: 16, F16: 16, BF16: 16,
  I32: 32, U32: 32, F32: 32,
  I64: 64, U64: 64, F64: 64, C64: 64,
  F4: 4,
};

// The safetensors crate refuses headers above 100 MB; so do we (a corrupt length would otherwise
// make us read gigabytes).
const MAX_HEADER = 100_000_000;

/** One tensor of a safetensors file. */
export interface SafetensorsTensor {
  name: string;
  dtype: string;
  /** Dimensions as stored (row-major, outermost first). */
  shape: number[];
  /** Absolute offset in `file`. */
  offset: number;
  bytes: number;
  file: string;
}

/** A parsed safetensors header. */
export interface SafetensorsHeader {
  path: string;
  fileSize: number;
  /** Absolute offset of the data section (8 + header length). */
  dataOffset: number;
  tensors: SafetensorsTensor[];
  /** `__metadata__` (string to string). */
  metadata: Record<string, string>;
}

/** Reads the header of one safetensors file; throws ModelFileError on anything malformed. */
export function readSafetensorsHeader(path: string): SafetensorsHeader {
  const r = new ByteReader(path);
  try {
    r.context = "safetensors header";
    if (r.size < 8) throw new ModelFileError(path, `file is ${r.size} bytes, too small for a safetensors header`);
    const n = r.u64n("safetensors header length");
    if (n < 2 || n > MAX_HEADER) {
      throw new ModelFileError(path, `safetensors header length ${n} is not plausible (not a safetensors file?)`);
    }
    if (8 + n > r.size) {
      throw new ModelFileError(path, `truncated safetensors header: it claims ${n} bytes but the file has ${r.size - 8} after the length`);
    }
    const text = r.utf8(n);
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new ModelFileError(path, `safetensors header is not valid JSON: ${(e as Error).message}`, { cause: e });
    }
    if (typeof json !== "object" || json === null || Array.isArray(json)) {
      throw new ModelFileError(path, "safetensors header is not a JSON object");
    }
    const dataOffset = 8 + n;
    const dataSize = r.size - dataOffset;
    const tensors: SafetensorsTensor[] = [];
    let metadata: Record<string, string> = {};
    for (const [name, entry] of Object.entries(json as Record<string, unknown>)) {
      if (name === "__metadata__") {
        if (typeof entry === "object" && entry !== null) metadata = entry as Record<string, string>;
        continue;
      }
      tensors.push(parseEntry(path, name, entry, dataOffset, dataSize));
    }
    const sorted = [...tensors].sort((a, b) => a.offset - b.offset);
    for (let i = 1; i < sorted.length; i++) {
      const p = sorted[i - 1];
      if (p.offset + p.bytes > sorted[i].offset) {
        throw new ModelFileError(path, `tensors '${p.name}' and '${sorted[i].name}' overlap (corrupt header)`);
      }
    }
    return { path, fileSize: r.size, dataOffset, tensors, metadata };
  } finally {
    r.close();
  }
}

function parseEntry(path: string, name: string, entry: unknown, dataOffset: number, dataSize: number): SafetensorsTensor {
  if (name.length === 0) throw new ModelFileError(path, "a tensor has an empty name");
  const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
  if (typeof e !== "object" || e === null) throw new ModelFileError(path, `tensor '${name}': entry is not an object`);
  if (typeof e.dtype !== "string" || !(e.dtype in DTYPE_BITS)) {
    throw new ModelFileError(path, `tensor '${name}': unknown dtype ${JSON.stringify(e.dtype)} (known: ${Object.keys(DTYPE_BITS).join(", ")})`);
  }
  if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new ModelFileError(path, `tensor '${name}': shape ${JSON.stringify(e.shape)} is not a list of non-negative integers`);
  }
  const off = e.data_offsets;
  if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => Number.isSafeInteger(d) && d >= 0) || off[1] < off[0]) {
    throw new ModelFileError(path, `tensor '${name}': data_offsets ${JSON.stringify(off)} is not [begin, end]`);
  }
  const shape = e.shape as number[];
  const elements = shape.reduce((a, b) => a * b, 1);
  const bytes = Math.ceil((elements * DTYPE_BITS[e.dtype]) / 8);
  const [begin, end] = off as [number, number];
  if (end - begin !== bytes) {
    throw new ModelFileError(path, `tensor '${name}': ${e.dtype} [${shape}] needs ${bytes} bytes but data_offsets span ${end - begin}`);
  }
  if (end > dataSize) {
    throw new ModelFileError(
      path,
      `tensor '${name}' ends at ${dataOffset + end}, beyond the end of the file at ${dataOffset + dataSize} (truncated?)`,
    );
  }
  return { name, dtype: e.dtype, shape, offset: dataOffset + begin, bytes, file: path };
}

/** A sharded checkpoint read through its index. */
export interface SafetensorsShards {
  index: string;
  files: string[];
  headers: SafetensorsHeader[];
}

/**
 * Reads every shard listed in a `model.safetensors.index.json` and checks each tensor of the
 * `weight_map` is in the shard it names.
 */
export function readSafetensorsIndex(indexPath: string): SafetensorsShards {
  let json: { weight_map?: Record<string, string> };
  try {
    json = JSON.parse(readFileSync(indexPath, "utf8"));
  } catch (e) {
    const code = (e as { code?: string }).code;
    throw new ModelFileError(indexPath, code === "ENOENT" ? "file not found" : `not a valid index: ${(e as Error).message}`, {
      cause: e,
    });
  }
  const map = json.weight_map;
  if (typeof map !== "object" || map === null || Object.keys(map).length === 0) {
    throw new ModelFileError(indexPath, "index has no weight_map (expected {\"weight_map\": {tensor: shard file}})");
  }
  const dir = dirname(indexPath);
  const files = [...new Set(Object.values(map))].sort();
  const headers = files.map((f) => {
    if (typeof f !== "string" || f.length === 0 || basename(f) !== f) {
      throw new ModelFileError(indexPath, `weight_map names shard ${JSON.stringify(f)}, expected a file name next to the index`);
    }
    return readSafetensorsHeader(join(dir, f));
  });
  const byFile = new Map(headers.map((h, i) => [files[i], new Set(h.tensors.map((t) => t.name))]));
  for (const [tensor, file] of Object.entries(map)) {
    if (!byFile.get(file)?.has(tensor)) {
      throw new ModelFileError(join(dir, file), `index ${basename(indexPath)} lists tensor '${tensor}' in this shard but it is not there`);
    }
  }
  return { index: indexPath, files: files.map((f) => join(dir, f)), headers };
}

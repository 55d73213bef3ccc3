/**
 * GGUF header reader (versions 2 and 3, little-endian): metadata, tensor infos, alignment and the
 * start of the data section. Reads only the header, incrementally; validates what it reads so a
 * truncated or corrupt file fails with a message naming the file and the problem.
 *
 * Format: ggml/src/gguf.cpp and docs/gguf.md of llama.cpp.
 *
 * @module
 */

import { ModelFileError } from "../../core/errors.ts";
import { ByteReader } from "./byte_reader.ts";
import { type GgmlType, ggmlTypeById } from "./ggml_types.ts";

/** GGUF metadata value types (`enum gguf_type`). */
export const GGUF_TYPE = {
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
} as const;

/** One of the GGUF_TYPE values. */
export type GgufType = (typeof GGUF_TYPE)[keyof typeof GGUF_TYPE];

const TYPE_NAMES: string[] = [
  "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64",
];
const FIXED_SIZE: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

/** A metadata array; `values` is present unless the array was too long to decode (see `maxDecoded`). */
export interface GgufArray {
  itemType: GgufType;
  length: number;
  values?: GgufValue[];
}

/** A decoded metadata value. 64-bit integers are numbers when exact, bigint otherwise. */
export type GgufValue = number | bigint | boolean | string | GgufArray;

/** A metadata entry with its stored type. */
export interface GgufKv {
  type: GgufType;
  value: GgufValue;
}

/** One tensor info record. */
export interface GgufTensor {
  name: string;
  /** ne[0] first. */
  shape: number[];
  type: GgmlType;
  /** Offset relative to the data section, as stored. */
  relativeOffset: number;
  /** Absolute offset in the file. */
  offset: number;
  bytes: number;
}

/** A parsed GGUF header. */
export interface GgufHeader {
  path: string;
  version: number;
  fileSize: number;
  alignment: number;
  /** Absolute offset of the data section. */
  dataOffset: number;
  metadata: Map<string, GgufKv>;
  tensors: GgufTensor[];
}

/** Options of readGgufHeader. */
export interface ReadGgufOptions {
  /** Numeric arrays up to this length are decoded (per-layer values); longer ones keep only their length. Default 65536. */
  maxNumericArray?: number;
  /** String arrays up to this length are decoded; longer ones (token lists) are skipped. Default 64. */
  maxStringArray?: number;
}

// Sanity bounds: far above any real model, far below what a corrupt count would claim.
const MAX_TENSORS = 1_000_000;
const MAX_KV = 1_000_000;
const MAX_DIMS = 4; // GGML_MAX_DIMS

/** Reads the GGUF header of `path`. Throws ModelFileError on anything malformed. */
export function readGgufHeader(path: string, options: ReadGgufOptions = {}): GgufHeader {
  const r = new ByteReader(path);
  try {
    return parse(r, options);
  } finally {
    r.close();
  }
}

function fail(r: ByteReader, detail: string): never {
  throw new ModelFileError(r.path, detail);
}

function parse(r: ByteReader, options: ReadGgufOptions): GgufHeader {
  const maxNumeric = options.maxNumericArray ?? 65536;
  const maxString = options.maxStringArray ?? 64;
  r.context = "GGUF header";
  if (r.size < 4) fail(r, `file is ${r.size} bytes, too small to be a GGUF file`);
  const magic = r.bytes(4);
  if (magic[0] !== 0x47 || magic[1] !== 0x47 || magic[2] !== 0x55 || magic[3] !== 0x46) {
    fail(r, `not a GGUF file (magic ${JSON.stringify(String.fromCharCode(...magic))}, expected "GGUF")`);
  }
  const version = r.u32();
  if ((version & 0xffff) === 0 && version !== 0) {
    fail(r, `GGUF version field is ${version}: a big-endian GGUF file, which spillway does not read`);
  }
  if (version === 1) fail(r, "GGUF version 1 is obsolete (llama.cpp no longer loads it); re-convert the model");
  if (version !== 2 && version !== 3) fail(r, `unsupported GGUF version ${version} (expected 2 or 3)`);
  const tensorCount = r.u64n("tensor count");
  const kvCount = r.u64n("metadata count");
  // Each tensor info needs at least 8+1+4+4+8 bytes, each kv at least 8+1+4+1 bytes.
  if (tensorCount > MAX_TENSORS || tensorCount * 25 > r.size) {
    fail(r, `tensor count ${tensorCount} is not plausible for a ${r.size}-byte file (corrupt header?)`);
  }
  if (kvCount > MAX_KV || kvCount * 14 > r.size) {
    fail(r, `metadata count ${kvCount} is not plausible for a ${r.size}-byte file (corrupt header?)`);
  }

  const readString = (what: string): string => {
    const at = r.pos;
    const n = r.u64n(`length of ${what}`);
    if (n > r.remaining) fail(r, `${what} at offset ${at} claims ${n} bytes but only ${r.remaining} remain (truncated?)`);
    return r.utf8(n);
  };

  const readScalar = (type: number, what: string): GgufValue => {
    switch (type) {
      case 0: return r.u8();
      case 1: return r.i8();
      case 2: return r.u16();
      case 3: return r.i16();
      case 4: return r.u32();
      case 5: return r.i32();
      case 6: return r.f32();
      case 7: {
        const b = r.u8();
        if (b > 1) fail(r, `${what}: bool value ${b} is not 0 or 1`);
        return b === 1;
      }
      case 8: return readString(what);
      case 10: {
        const v = r.u64();
        return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
      }
      case 11: {
        const v = r.i64();
        return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v;
      }
      case 12: return r.f64();
      default: return fail(r, `${what}: unknown value type ${type}`);
    }
  };

  const readValue = (type: number, what: string, depth: number): GgufValue => {
    if (type !== GGUF_TYPE.ARRAY) return readScalar(type, what);
    if (depth > 4) fail(r, `${what}: arrays nested too deeply`);
    const itemType = r.u32();
    if (itemType > 12) fail(r, `${what}: unknown array item type ${itemType}`);
    const at = r.pos;
    const length = r.u64n(`length of array ${what}`);
    const fixed = FIXED_SIZE[itemType];
    if (fixed !== undefined) {
      if (length * fixed > r.remaining) {
        fail(r, `${what}: array of ${length} ${TYPE_NAMES[itemType]} at offset ${at} runs past the end of the file (truncated)`);
      }
      if (length <= maxNumeric) {
        const values: GgufValue[] = new Array(length);
        for (let i = 0; i < length; i++) values[i] = readScalar(itemType, what);
        return { itemType: itemType as GgufType, length, values };
      }
      r.skip(length * fixed);
      return { itemType: itemType as GgufType, length };
    }
    // Strings and nested arrays: each item carries its own length, so walk them.
    if (length * 8 > r.remaining) fail(r, `${what}: array of ${length} items at offset ${at} runs past the end of the file (truncated)`);
    if (itemType === GGUF_TYPE.STRING && length > maxString) {
      const label = `length of an item of ${what}`; // built once: this loop runs per token
      for (let i = 0; i < length; i++) {
        const n = r.u64n(label);
        if (n > r.remaining) fail(r, `${what}[${i}] at offset ${r.pos - 8} claims ${n} bytes but only ${r.remaining} remain (truncated)`);
        r.skip(n);
      }
      return { itemType: itemType as GgufType, length };
    }
    const values: GgufValue[] = new Array(length);
    for (let i = 0; i < length; i++) values[i] = readValue(itemType, `${what}[${i}]`, depth + 1);
    return { itemType: itemType as GgufType, length, values };
  };

  const metadata = new Map<string, GgufKv>();
  r.context = "GGUF metadata";
  for (let i = 0; i < kvCount; i++) {
    const key = readString(`metadata key #${i}`);
    if (key.length === 0) fail(r, `metadata key #${i} is empty`);
    if (metadata.has(key)) fail(r, `duplicate metadata key '${key}'`);
    const type = r.u32();
    if (type > 12) fail(r, `metadata '${key}' has unknown value type ${type}`);
    metadata.set(key, { type: type as GgufType, value: readValue(type, `metadata '${key}'`, 0) });
  }

  let alignment = 32; // GGUF_DEFAULT_ALIGNMENT
  const al = metadata.get("general.alignment");
  if (al) {
    if (al.type !== GGUF_TYPE.UINT32) fail(r, `general.alignment has type ${TYPE_NAMES[al.type]}, expected u32`);
    alignment = al.value as number;
    if (alignment === 0 || (alignment & (alignment - 1)) !== 0) fail(r, `general.alignment ${alignment} is not a power of 2`);
  }

  r.context = "GGUF tensor infos";
  const raw: { name: string; shape: number[]; type: GgmlType; rel: number }[] = [];
  const names = new Set<string>();
  for (let i = 0; i < tensorCount; i++) {
    const name = readString(`name of tensor #${i}`);
    if (name.length === 0) fail(r, `tensor #${i} has an empty name`);
    if (names.has(name)) fail(r, `duplicate tensor name '${name}'`);
    names.add(name);
    const nDims = r.u32();
    if (nDims > MAX_DIMS) fail(r, `tensor '${name}' has ${nDims} dimensions (at most ${MAX_DIMS})`);
    const shape: number[] = [];
    let elements = 1;
    for (let d = 0; d < nDims; d++) {
      const ne = r.i64();
      if (ne < 0n) fail(r, `tensor '${name}' dimension ${d} is negative (${ne})`);
      if (ne > BigInt(Number.MAX_SAFE_INTEGER)) fail(r, `tensor '${name}' dimension ${d} is ${ne}, too large`);
      shape.push(Number(ne));
      elements *= Number(ne);
    }
    if (!Number.isSafeInteger(elements)) fail(r, `tensor '${name}' shape [${shape}] has too many elements`);
    const typeId = r.u32();
    const type = ggmlTypeById(typeId);
    if (!type) fail(r, `tensor '${name}' has unknown ggml type ${typeId}`);
    if ((shape[0] ?? 1) % type.blockSize !== 0) {
      fail(r, `tensor '${name}' (${type.name}) has ${shape[0]} elements per row, not a multiple of the block size ${type.blockSize}`);
    }
    const rel = r.u64n(`offset of tensor '${name}'`);
    raw.push({ name, shape, type, rel });
  }

  const dataOffset = tensorCount > 0 ? Math.ceil(r.pos / alignment) * alignment : r.pos;
  if (dataOffset > r.size) fail(r, `data section starts at ${dataOffset} but the file ends at ${r.size} (truncated)`);

  const tensors: GgufTensor[] = raw.map(({ name, shape, type, rel }) => {
    if (rel % alignment !== 0) fail(r, `tensor '${name}' offset ${rel} is not a multiple of the alignment ${alignment}`);
    let elements = 1;
    for (const d of shape) elements *= d;
    const bytes = (elements / type.blockSize) * type.typeSize;
    const offset = dataOffset + rel;
    if (offset + bytes > r.size) {
      fail(
        r,
        `tensor '${name}' (${bytes} bytes at offset ${offset}) ends at ${offset + bytes}, beyond the end of the file at ${r.size} (truncated?)`,
      );
    }
    return { name, shape, type, relativeOffset: rel, offset, bytes };
  });

  // Overlapping tensors mean a corrupt tensor table.
  const sorted = [...tensors].sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1];
    if (prev.offset + prev.bytes > sorted[i].offset) {
      fail(r, `tensors '${prev.name}' and '${sorted[i].name}' overlap (corrupt tensor table)`);
    }
  }

  return { path: r.path, version, fileSize: r.size, alignment, dataOffset, metadata, tensors };
}

/** Name of a GGUF value type (`u32`, `string`, ...). */
export function ggufTypeName(type: number): string {
  return TYPE_NAMES[type] ?? `type ${type}`;
}

/**
 * GGUF v3 header encoder: typed metadata, tensor infos laid out back to back with padding to the
 * alignment (the layout llama.cpp's gguf.cpp requires), and the padded header bytes.
 *
 * @module
 */

import { type GgmlType, ggmlTensorBytes } from "./ggml_types.ts";
import { GGUF_TYPE, type GgufType } from "./gguf.ts";

type Scalar = number | bigint | boolean | string;

/**
 * A metadata entry to write. Arrays give their item type; values are written as that type. A long
 * array (a vocabulary of millions of tokens) can be given as `length` and an iterable that makes
 * the items as they are written, so they are never all in memory.
 */
export type GgufWriteValue =
  | { type: Exclude<GgufType, typeof GGUF_TYPE.ARRAY>; value: Scalar }
  | { type: typeof GGUF_TYPE.ARRAY; itemType: Exclude<GgufType, typeof GGUF_TYPE.ARRAY>; value: readonly Scalar[] }
  | { type: typeof GGUF_TYPE.ARRAY; itemType: Exclude<GgufType, typeof GGUF_TYPE.ARRAY>; length: number; value: Iterable<Scalar> };

/** A tensor to lay out. */
export interface GgufWriteTensor {
  name: string;
  /** ne[0] first. */
  shape: number[];
  type: GgmlType;
}

/** Where each tensor's data goes, once the header is written. */
export interface GgufPlacement {
  /** Header bytes (padded to the alignment): the data section starts here. */
  headerBytes: number;
  /** Absolute offset and byte size of each tensor, in input order. */
  tensors: { name: string; offset: number; bytes: number }[];
  /** Total file size (header + data, each tensor padded to the alignment). */
  fileSize: number;
  alignment: number;
}

/** The encoded header and where each tensor's data goes. */
export interface GgufLayout extends GgufPlacement {
  /** Header bytes, padded to the alignment: the data section starts at `header.length`. */
  header: Uint8Array;
}

/** Bytes the header encoder buffers before handing a chunk to the sink. */
const FLUSH_BYTES = 1 << 20;

class Out {
  private _buf = new Uint8Array(1 << 16);
  private _view = new DataView(this._buf.buffer);
  /** Bytes in the buffer now. */
  len = 0;
  /** Bytes handed to the sink so far. */
  flushed = 0;
  private _enc = new TextEncoder();
  /** With a sink, full buffers go to it (the header streams); without, the buffer grows. */
  constructor(private readonly _sink?: (chunk: Uint8Array) => void) {}
  /** Total bytes encoded. */
  get total(): number {
    return this.flushed + this.len;
  }
  /** Hands the buffered bytes to the sink (no-op without one). */
  flush(): void {
    if (!this._sink || this.len === 0) return;
    this._sink(this._buf.subarray(0, this.len));
    this.flushed += this.len;
    this.len = 0;
  }
  private _grow(n: number): void {
    // Streaming: hand over what is buffered before it passes FLUSH_BYTES.
    if (this._sink && this.len > 0 && this.len + n > FLUSH_BYTES) this.flush();
    if (this.len + n <= this._buf.length) return;
    let size = this._buf.length * 2;
    while (size < this.len + n) size *= 2;
    const b = new Uint8Array(size);
    b.set(this._buf.subarray(0, this.len));
    this._buf = b;
    this._view = new DataView(b.buffer);
  }
  u8(v: number): void { this._grow(1); this._view.setUint8(this.len, v); this.len += 1; }
  i8(v: number): void { this._grow(1); this._view.setInt8(this.len, v); this.len += 1; }
  u16(v: number): void { this._grow(2); this._view.setUint16(this.len, v, true); this.len += 2; }
  i16(v: number): void { this._grow(2); this._view.setInt16(this.len, v, true); this.len += 2; }
  u32(v: number): void { this._grow(4); this._view.setUint32(this.len, v, true); this.len += 4; }
  i32(v: number): void { this._grow(4); this._view.setInt32(this.len, v, true); this.len += 4; }
  f32(v: number): void { this._grow(4); this._view.setFloat32(this.len, v, true); this.len += 4; }
  f64(v: number): void { this._grow(8); this._view.setFloat64(this.len, v, true); this.len += 8; }
  u64(v: number | bigint): void {
    this._grow(8);
    if (typeof v === "number") {
      // Two u32 halves: much faster than a BigInt per length prefix.
      this._view.setUint32(this.len, v >>> 0, true);
      this._view.setUint32(this.len + 4, Math.floor(v / 4294967296), true);
    } else {
      this._view.setBigUint64(this.len, v, true);
    }
    this.len += 8;
  }
  i64(v: number | bigint): void { this._grow(8); this._view.setBigInt64(this.len, BigInt(v), true); this.len += 8; }
  str(s: string): void {
    this._grow(8 + s.length * 3);
    const { written } = this._enc.encodeInto(s, this._buf.subarray(this.len + 8));
    this.u64(written);
    this.len += written;
  }
  pad(alignment: number): void {
    const n = (alignment - (this.total % alignment)) % alignment;
    this._grow(n);
    this._buf.fill(0, this.len, this.len + n);
    this.len += n;
  }
  bytes(): Uint8Array {
    return this._buf.slice(0, this.len);
  }
}

function writeScalar(o: Out, type: number, v: number | bigint | boolean | string, key: string): void {
  if (type === GGUF_TYPE.STRING) return o.str(String(v));
  if (type === GGUF_TYPE.BOOL) return o.u8(v ? 1 : 0);
  if (type === GGUF_TYPE.UINT64) return o.u64(v as number | bigint);
  if (type === GGUF_TYPE.INT64) return o.i64(v as number | bigint);
  if (typeof v !== "number") throw new TypeError(`GGUF metadata '${key}': expected a number, got ${typeof v}`);
  switch (type) {
    case GGUF_TYPE.UINT8: return o.u8(v);
    case GGUF_TYPE.INT8: return o.i8(v);
    case GGUF_TYPE.UINT16: return o.u16(v);
    case GGUF_TYPE.INT16: return o.i16(v);
    case GGUF_TYPE.UINT32: return o.u32(v);
    case GGUF_TYPE.INT32: return o.i32(v);
    case GGUF_TYPE.FLOAT32: return o.f32(v);
    case GGUF_TYPE.FLOAT64: return o.f64(v);
    default: throw new TypeError(`GGUF metadata '${key}': cannot write value type ${type}`);
  }
}

/**
 * Lays out a GGUF v3 file: encodes the header for `metadata` (in insertion order) and `tensors`
 * (data back to back in the given order, each padded to `alignment`). `general.alignment` is
 * written when the alignment is not the default 32. The whole header is returned in memory; use
 * {@link streamGgufHeader} for headers too large for that.
 *
 * @example
 * ```ts
 * const { header, tensors } = layoutGguf(new Map([["general.architecture", { type: GGUF_TYPE.STRING, value: "llama" }]]), []);
 * ```
 */
export function layoutGguf(
  metadata: ReadonlyMap<string, GgufWriteValue> | Record<string, GgufWriteValue>,
  tensors: readonly GgufWriteTensor[],
  alignment = 32,
): GgufLayout {
  const o = new Out();
  const placement = encodeHeader(o, metadata, tensors, alignment);
  return { header: o.bytes(), ...placement };
}

/**
 * Encodes the header like {@link layoutGguf} but hands it to `write` in chunks of about 1 MiB as
 * it is encoded, so a header with a huge vocabulary is never whole in memory (give long arrays as
 * `length` + iterable). Tensor offsets are relative to the data section, so nothing needs the
 * header's size before it is written.
 *
 * @example
 * ```ts
 * const fd = openSync("m.gguf", "w");
 * const placed = streamGgufHeader(metadata, tensors, (chunk) => writeSync(fd, chunk));
 * ```
 */
export function streamGgufHeader(
  metadata: ReadonlyMap<string, GgufWriteValue> | Record<string, GgufWriteValue>,
  tensors: readonly GgufWriteTensor[],
  write: (chunk: Uint8Array) => void,
  alignment = 32,
): GgufPlacement {
  const o = new Out(write);
  const placement = encodeHeader(o, metadata, tensors, alignment);
  o.flush();
  return placement;
}

function encodeHeader(
  o: Out,
  metadata: ReadonlyMap<string, GgufWriteValue> | Record<string, GgufWriteValue>,
  tensors: readonly GgufWriteTensor[],
  alignment: number,
): GgufPlacement {
  const entries = metadata instanceof Map ? [...metadata.entries()] : Object.entries(metadata);
  if (alignment !== 32 && !entries.some(([k]) => k === "general.alignment")) {
    entries.push(["general.alignment", { type: GGUF_TYPE.UINT32, value: alignment }]);
  }
  o.u8(0x47), o.u8(0x47), o.u8(0x55), o.u8(0x46); // "GGUF"
  o.u32(3);
  o.u64(tensors.length);
  o.u64(entries.length);
  for (const [key, e] of entries) {
    o.str(key);
    o.u32(e.type);
    if (e.type === GGUF_TYPE.ARRAY) {
      const length = "length" in e ? e.length : e.value.length;
      o.u32(e.itemType);
      o.u64(length);
      let n = 0;
      for (const v of e.value) {
        writeScalar(o, e.itemType, v, key);
        n++;
      }
      if (n !== length) throw new RangeError(`GGUF metadata '${key}': array declared ${length} items but gave ${n}`);
    } else {
      writeScalar(o, e.type, e.value, key);
    }
  }
  const placed: GgufLayout["tensors"] = [];
  let rel = 0;
  for (const t of tensors) {
    const bytes = ggmlTensorBytes(t.type, t.shape);
    o.str(t.name);
    o.u32(t.shape.length);
    for (const d of t.shape) o.i64(d);
    o.u32(t.type.id);
    o.u64(rel);
    placed.push({ name: t.name, offset: rel, bytes });
    rel += Math.ceil(bytes / alignment) * alignment;
  }
  o.pad(alignment);
  const headerBytes = o.total;
  for (const p of placed) p.offset += headerBytes;
  return { headerBytes, tensors: placed, fileSize: headerBytes + rel, alignment };
}

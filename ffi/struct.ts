/**
 * C structs as byte layouts with explicit offsets, the same on every backend: a struct is a
 * Uint8Array passed as a `buffer` argument, encoded and decoded through a DataView.
 *
 * @example
 * ```ts
 * import { defineStruct } from "./struct.ts";
 * const Point = defineStruct("point", 16, { x: { offset: 0, type: "i32" }, y: { offset: 8, type: "u64" } });
 * const bytes = Point.encode({ x: 1, y: 2n });
 * console.log(Point.decode(bytes)); // { x: 1, y: 2n }
 * ```
 *
 * @module
 */

/** Field types a struct may hold (little-endian, as on x86-64 and arm64 Linux). */
export type FieldType = "i8" | "u8" | "i16" | "u16" | "i32" | "u32" | "i64" | "u64" | "f32" | "f64";

/** A field at an explicit byte offset; `count` makes it a fixed-size array. */
export interface FieldSpec {
  readonly offset: number;
  readonly type: FieldType;
  readonly count?: number;
}

type FieldValue<F extends FieldSpec> = F["count"] extends number
  ? (F["type"] extends "i64" | "u64" ? bigint[] : number[])
  : (F["type"] extends "i64" | "u64" ? bigint : number);

/** The JS object a struct decodes to. */
export type StructValue<F extends Record<string, FieldSpec>> = { [K in keyof F]: FieldValue<F[K]> };

/** A struct layout with its codec. */
export interface StructLayout<F extends Record<string, FieldSpec>> {
  readonly name: string;
  readonly size: number;
  readonly fields: F;
  /** Encode (missing fields are zero). */
  encode(value: Partial<StructValue<F>>): Uint8Array;
  /** Decode from bytes (at least `size` long). */
  decode(bytes: Uint8Array): StructValue<F>;
}

const WIDTH: Record<FieldType, number> = { i8: 1, u8: 1, i16: 2, u16: 2, i32: 4, u32: 4, i64: 8, u64: 8, f32: 4, f64: 8 };

function get(dv: DataView, type: FieldType, at: number): number | bigint {
  switch (type) {
    case "i8": return dv.getInt8(at);
    case "u8": return dv.getUint8(at);
    case "i16": return dv.getInt16(at, true);
    case "u16": return dv.getUint16(at, true);
    case "i32": return dv.getInt32(at, true);
    case "u32": return dv.getUint32(at, true);
    case "i64": return dv.getBigInt64(at, true);
    case "u64": return dv.getBigUint64(at, true);
    case "f32": return dv.getFloat32(at, true);
    case "f64": return dv.getFloat64(at, true);
  }
}

function set(dv: DataView, type: FieldType, at: number, v: number | bigint): void {
  switch (type) {
    case "i8": return dv.setInt8(at, Number(v));
    case "u8": return dv.setUint8(at, Number(v));
    case "i16": return dv.setInt16(at, Number(v), true);
    case "u16": return dv.setUint16(at, Number(v), true);
    case "i32": return dv.setInt32(at, Number(v), true);
    case "u32": return dv.setUint32(at, Number(v), true);
    case "i64": return dv.setBigInt64(at, BigInt(v), true);
    case "u64": return dv.setBigUint64(at, BigInt(v), true);
    case "f32": return dv.setFloat32(at, Number(v), true);
    case "f64": return dv.setFloat64(at, Number(v), true);
  }
}

/** Byte width of a field type. */
export function fieldWidth(type: FieldType): number {
  return WIDTH[type];
}

/**
 * Define a struct layout. Offsets are explicit (mirroring a C header); overlapping or
 * out-of-bounds fields are rejected at definition time.
 */
export function defineStruct<F extends Record<string, FieldSpec>>(name: string, size: number, fields: F): StructLayout<F> {
  const spans: [number, number, string][] = [];
  for (const [k, f] of Object.entries(fields)) {
    const end = f.offset + WIDTH[f.type] * (f.count ?? 1);
    if (f.offset < 0 || end > size) throw new RangeError(`struct ${name}.${k}: bytes ${f.offset}..${end} outside size ${size}`);
    if (f.offset % WIDTH[f.type] !== 0) throw new RangeError(`struct ${name}.${k}: offset ${f.offset} misaligned for ${f.type}`);
    for (const [s, e, other] of spans) {
      if (f.offset < e && s < end) throw new RangeError(`struct ${name}.${k} overlaps ${other}`);
    }
    spans.push([f.offset, end, k]);
  }
  return {
    name,
    size,
    fields,
    encode(value) {
      const bytes = new Uint8Array(size);
      const dv = new DataView(bytes.buffer);
      for (const [k, f] of Object.entries(fields)) {
        const v = (value as Record<string, unknown>)[k];
        if (v === undefined) continue;
        if (f.count !== undefined) {
          const arr = v as (number | bigint)[];
          if (arr.length > f.count) throw new RangeError(`struct ${name}.${k}: ${arr.length} items, room for ${f.count}`);
          arr.forEach((x, i) => set(dv, f.type, f.offset + i * WIDTH[f.type], x));
        } else set(dv, f.type, f.offset, v as number | bigint);
      }
      return bytes;
    },
    decode(bytes) {
      if (bytes.length < size) throw new RangeError(`struct ${name}: ${bytes.length} bytes, needs ${size}`);
      const dv = new DataView(bytes.buffer, bytes.byteOffset, size);
      const out: Record<string, unknown> = {};
      for (const [k, f] of Object.entries(fields)) {
        out[k] = f.count === undefined
          ? get(dv, f.type, f.offset)
          : Array.from({ length: f.count }, (_, i) => get(dv, f.type, f.offset + i * WIDTH[f.type]));
      }
      return out as StructValue<F>;
    },
  };
}

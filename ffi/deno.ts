/**
 * FFI backend for Deno: Deno.dlopen. Imported lazily by ffi/mod.ts only when running on Deno.
 * @module
 */
import { cString, type Conversions, openLibrary } from "./bind.ts";
import type { Ffi, FnDecl, NativeLibrary, NativeType, SymbolDecls } from "./types.ts";

// deno-lint-ignore no-explicit-any
declare const Deno: any;

const DENO_TYPES: Record<NativeType, string> = {
  void: "void",
  i8: "i8",
  u8: "u8",
  i16: "i16",
  u16: "u16",
  i32: "i32",
  u32: "u32",
  i64: "i64",
  u64: "u64",
  f32: "f32",
  f64: "f64",
  ptr: "pointer",
  buffer: "buffer",
  cstring: "buffer",
};


// Deno passes pointers as opaque pointer objects; the interface uses bigint addresses.
function toPointer(address: bigint): unknown {
  return address === 0n ? null : Deno.UnsafePointer.create(address);
}
function fromPointer(p: unknown): bigint {
  return p === null ? 0n : BigInt(Deno.UnsafePointer.value(p));
}

const conv: Conversions = {
  toArg(type, value) {
    switch (type) {
      case "ptr":
        return toPointer(value as bigint);
      case "buffer":
        return value ?? null;
      case "cstring":
        return cString(value as string);
      default:
        return value;
    }
  },
  fromResult(type, value) {
    if (type === "ptr") return fromPointer(value);
    if (type === "i64" || type === "u64") return BigInt(value as number | bigint);
    return value;
  },
};
const declare = (d: FnDecl) => ({ parameters: d.args.map((t) => DENO_TYPES[t]), result: DENO_TYPES[d.result] });

function viewOf(ptr: bigint, length: number): Uint8Array {
  if (length === 0) return new Uint8Array(0);
  return new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(toPointer(ptr), length));
}

/** Create the Deno.dlopen-backed {@linkcode Ffi}. */
export function createDenoFfi(): Ffi {
  const libc = Deno.dlopen("libc.so.6", { __errno_location: { parameters: [], result: "pointer" } });
  return {
    backend: "deno",
    open: <S extends SymbolDecls>(path: string, symbols: S): NativeLibrary<S> =>
      openLibrary(path, symbols, (p, spec) => Deno.dlopen(p, spec), declare, conv),
    errno: () => new Deno.UnsafePointerView(libc.symbols.__errno_location()).getInt32(0),
    view: viewOf,
    read: (ptr, length) => viewOf(ptr, length).slice(),
    write(ptr, bytes) {
      viewOf(ptr, bytes.length).set(bytes);
    },
    addressOf: (bytes) => fromPointer(Deno.UnsafePointer.of(bytes)),
    readCString: (ptr) => (ptr === 0n ? "" : Deno.UnsafePointerView.getCString(toPointer(ptr))),
  };
}

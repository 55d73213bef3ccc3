/**
 * FFI backend for Bun: bun:ffi. Imported lazily by ffi/mod.ts only when running on Bun.
 * @module
 */
import { cString, type Conversions, openLibrary } from "./bind.ts";
import type { Ffi, FnDecl, NativeLibrary, NativeType, SymbolDecls } from "./types.ts";

const BUN_TYPES: Record<NativeType, string> = {
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
  ptr: "ptr",
  buffer: "ptr",
  cstring: "ptr",
};


/** Create the bun:ffi-backed {@linkcode Ffi}. */
export async function createBunFfi(): Promise<Ffi> {
  // A computed specifier keeps Node/Deno bundlers and type checkers from resolving bun:ffi.
  const specifier = "bun:ffi";
  // deno-lint-ignore no-explicit-any
  const bun: any = await import(specifier);

  // Bun passes and returns pointers as numbers; the interface uses bigint.
  const conv: Conversions = {
    toArg(type, value) {
      switch (type) {
        case "ptr":
          return value === 0n ? null : Number(value as bigint);
        case "buffer":
          return value ?? null;
        case "cstring":
          return cString(value as string);
        default:
          return value;
      }
    },
    fromResult(type, value) {
      if (type === "ptr") return value === null ? 0n : BigInt(value as number);
      if (type === "i64" || type === "u64") return BigInt(value as number | bigint);
      return value;
    },
  };
  const declare = (d: FnDecl) => ({ args: d.args.map((t) => BUN_TYPES[t]), returns: BUN_TYPES[d.result] });

  const libc = bun.dlopen("libc.so.6", { __errno_location: { args: [], returns: "ptr" } });

  return {
    backend: "bun",
    open: <S extends SymbolDecls>(path: string, symbols: S): NativeLibrary<S> => openLibrary(path, symbols, bun.dlopen, declare, conv),
    errno: () => bun.read.i32(libc.symbols.__errno_location(), 0),
    view: (ptr, length) => new Uint8Array(bun.toArrayBuffer(Number(ptr), 0, length)),
    read: (ptr, length) => new Uint8Array(bun.toArrayBuffer(Number(ptr), 0, length)).slice(),
    write(ptr, bytes) {
      new Uint8Array(bun.toArrayBuffer(Number(ptr), 0, bytes.length)).set(bytes);
    },
    addressOf: (bytes) => BigInt(bun.ptr(bytes)),
    readCString: (ptr) => (ptr === 0n ? "" : String(new bun.CString(Number(ptr)))),
  };
}

/**
 * FFI backend for Node: koffi. Imported lazily by ffi/mod.ts only when running on Node.
 * @module
 */
import { createRequire } from "node:module";
import { FfiLoadError } from "../core/errors.ts";
import type { Ffi, FnDecl, NativeLibrary, NativeType, SymbolDecls } from "./types.ts";

// koffi is CommonJS with a native addon; require keeps bundlers from inlining it.
// deno-lint-ignore no-explicit-any
const koffi: any = createRequire(import.meta.url)("koffi");

const KOFFI_TYPES: Record<NativeType, string> = {
  void: "void",
  i8: "int8_t",
  u8: "uint8_t",
  i16: "int16_t",
  u16: "uint16_t",
  i32: "int32_t",
  u32: "uint32_t",
  i64: "int64_t",
  u64: "uint64_t",
  f32: "float",
  f64: "double",
  // koffi 3 represents pointers as bigint addresses in and out.
  ptr: "void *",
  buffer: "void *",
  cstring: "const char *",
};

const WIDE = new Set<NativeType>(["i64", "u64", "ptr"]);

function bind(lib: { func(name: string, r: string, a: string[]): (...a: unknown[]) => unknown }, name: string, decl: FnDecl) {
  const fn = lib.func(name, KOFFI_TYPES[decl.result], decl.args.map((t) => KOFFI_TYPES[t]));
  if (!WIDE.has(decl.result)) return fn;
  // koffi returns int64 as a number when it fits; the interface promises bigint.
  return (...args: unknown[]) => {
    const r = fn(...args);
    return r === null ? 0n : BigInt(r as number | bigint);
  };
}

/** Create the koffi-backed {@linkcode Ffi}. */
export function createNodeFfi(): Ffi {
  return {
    backend: "koffi",
    open<S extends SymbolDecls>(path: string, symbols: S): NativeLibrary<S> {
      // deno-lint-ignore no-explicit-any
      let lib: any;
      try {
        lib = koffi.load(path);
      } catch (e) {
        throw new FfiLoadError(path, (e as Error).message, { cause: e });
      }
      // deno-lint-ignore no-explicit-any
      const bound: any = {};
      for (const [name, decl] of Object.entries(symbols)) {
        try {
          bound[name] = bind(lib, name, decl);
        } catch (e) {
          lib.unload?.();
          throw new FfiLoadError(path, `symbol ${name}: ${(e as Error).message}`, { cause: e });
        }
      }
      return { path, symbols: bound, close: () => lib.unload?.() };
    },
    errno: () => koffi.errno(),
    view: (ptr, length) => new Uint8Array(koffi.view(ptr, length)),
    read(ptr, length) {
      return new Uint8Array(koffi.view(ptr, length)).slice();
    },
    write(ptr, bytes) {
      new Uint8Array(koffi.view(ptr, bytes.length)).set(bytes);
    },
    addressOf: (bytes) => BigInt(koffi.address(bytes)) + 0n,
    readCString(ptr) {
      if (ptr === 0n) return "";
      // A char array of length -1 decodes a NUL-terminated string at the address.
      return koffi.decode(ptr, "char", -1) as string;
    },
  };
}

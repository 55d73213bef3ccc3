/**
 * The backend-neutral FFI interface. Every backend (koffi on Node, bun:ffi on Bun, Deno.dlopen on
 * Deno) implements {@linkcode Ffi}; nothing outside ffi/ knows which one runs.
 *
 * One pointer representation crosses this interface: a `bigint` address (`0n` is NULL). 64-bit
 * integers are `bigint`, narrower integers and floats are `number`.
 *
 * @module
 */

/** C types a declared function may take or return. */
export type NativeType =
  | "void"
  | "i8"
  | "u8"
  | "i16"
  | "u16"
  | "i32"
  | "u32"
  | "i64"
  | "u64"
  | "f32"
  | "f64"
  /** A pointer as a bigint address. */
  | "ptr"
  /** A Uint8Array passed as a pointer to its bytes (argument only). */
  | "buffer"
  /** A JS string passed NUL-terminated UTF-8 (argument only). */
  | "cstring";

/** Declaration of one C function: fixed arity, also for variadic C functions. */
export interface FnDecl {
  readonly args: readonly NativeType[];
  readonly result: NativeType;
}

/** A map from symbol name to its declaration. */
export type SymbolDecls = Readonly<Record<string, FnDecl>>;

/** JS value accepted for an argument of the given native type. */
export type ArgValue<T extends NativeType> = T extends "i64" | "u64" | "ptr" ? bigint
  : T extends "buffer" ? Uint8Array | null
  : T extends "cstring" ? string
  : number;

/** JS value returned for a result of the given native type. */
export type ResultValue<T extends NativeType> = T extends "i64" | "u64" | "ptr" ? bigint
  : T extends "void" ? void
  : number;

type ArgValues<A extends readonly NativeType[]> = { -readonly [K in keyof A]: ArgValue<A[K]> };

/** Callable functions for a set of declarations. */
export type BoundSymbols<S extends SymbolDecls> = {
  [K in keyof S]: (...args: ArgValues<S[K]["args"]>) => ResultValue<S[K]["result"]>;
};

/** An opened native library. */
export interface NativeLibrary<S extends SymbolDecls> {
  /** The path or soname it was opened by. */
  readonly path: string;
  readonly symbols: BoundSymbols<S>;
  /** Unload (where the backend supports it). */
  close(): void;
}

/** The FFI core: one per process, chosen by the runtime. */
export interface Ffi {
  /** Which backend runs: `koffi`, `bun` or `deno`. */
  readonly backend: "koffi" | "bun" | "deno";
  /**
   * Open a library by path or soname and bind the declared symbols.
   * @throws FfiLoadError naming the path and the loader's message.
   */
  open<S extends SymbolDecls>(path: string, symbols: S): NativeLibrary<S>;
  /** errno of the last failed libc call on this thread; read it right after the call. */
  errno(): number;
  /** A live view over native memory (e.g. an mmap'd region). Valid until that memory is unmapped. */
  view(ptr: bigint, length: number): Uint8Array;
  /** Copy `length` bytes from native memory. */
  read(ptr: bigint, length: number): Uint8Array;
  /** Copy bytes into native memory. */
  write(ptr: bigint, bytes: Uint8Array): void;
  /** Address of a Uint8Array's first byte (valid while the array is alive and not moved). */
  addressOf(bytes: Uint8Array): bigint;
  /** Read a NUL-terminated string at a pointer. */
  readCString(ptr: bigint): string;
}

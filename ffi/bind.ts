/**
 * What the dlopen-style backends (bun:ffi, Deno.dlopen) share: declaring symbols in the
 * backend's spec format, turning a loader failure into FfiLoadError, and converting arguments and
 * results at the interface (bigint pointers, NUL-terminated strings).
 *
 * @module
 */
import { FfiLoadError } from "../core/errors.ts";
import type { FnDecl, NativeLibrary, NativeType, SymbolDecls } from "./types.ts";

/** How one backend converts values at the interface. */
export interface Conversions {
  toArg(type: NativeType, value: unknown): unknown;
  fromResult(type: NativeType, value: unknown): unknown;
}

/** A backend's opened library: its raw symbols and close. */
interface RawLibrary {
  symbols: Record<string, (...a: unknown[]) => unknown>;
  close(): void;
}

/**
 * Open `path` with `dlopen`, declaring each symbol with `declare`, and wrap every symbol so that
 * it takes and returns interface values.
 * @throws FfiLoadError naming the path and the loader's message.
 */
export function openLibrary<S extends SymbolDecls>(
  path: string,
  symbols: S,
  dlopen: (path: string, spec: Record<string, unknown>) => RawLibrary,
  declare: (decl: FnDecl) => unknown,
  conv: Conversions,
): NativeLibrary<S> {
  const spec: Record<string, unknown> = {};
  for (const [name, d] of Object.entries(symbols)) spec[name] = declare(d);
  let lib: RawLibrary;
  try {
    lib = dlopen(path, spec);
  } catch (e) {
    throw new FfiLoadError(path, (e as Error).message, { cause: e });
  }
  const bound: Record<string, (...a: unknown[]) => unknown> = {};
  for (const [name, d] of Object.entries(symbols)) {
    const fn = lib.symbols[name];
    bound[name] = (...args: unknown[]) => conv.fromResult(d.result, fn(...args.map((a, i) => conv.toArg(d.args[i], a))));
  }
  return { path, symbols: bound as NativeLibrary<S>["symbols"], close: () => lib.close() };
}

const encoder = new TextEncoder();

/** A JS string as NUL-terminated UTF-8 bytes. */
export function cString(value: string): Uint8Array {
  return encoder.encode(`${value}\0`);
}

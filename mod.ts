/**
 * spillway's public API for Node, Bun and Deno apps: read a recipe and a model's headers, probe
 * the hardware, plan placement, launch the runtime with the plan applied, and measure.
 *
 * @example
 * ```ts
 * import { loadFfi } from "spillway";
 * const ffi = await loadFfi();
 * console.log(ffi.backend);
 * ```
 *
 * @module
 */
export * from "./engine/types.ts";
export * from "./engine/errors.ts";
export { currentRuntime, loadFfi } from "./ffi/mod.ts";
export type { Ffi, FnDecl, NativeLibrary, NativeType, SymbolDecls } from "./ffi/types.ts";
export { defineStruct } from "./ffi/struct.ts";
export type { FieldSpec, FieldType, StructLayout, StructValue } from "./ffi/struct.ts";
export { libc } from "./ffi/libc.ts";
export type { Libc } from "./ffi/libc.ts";

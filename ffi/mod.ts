/**
 * The FFI core: one interface over koffi (Node), bun:ffi (Bun) and Deno.dlopen (Deno). The
 * backend is chosen at run time and imported lazily, so the others are never resolved.
 *
 * @example
 * ```ts
 * import { loadFfi } from "./mod.ts";
 * const ffi = await loadFfi();
 * const libc = ffi.open("libc.so.6", { getpid: { args: [], result: "i32" } });
 * console.log(ffi.backend, libc.symbols.getpid());
 * ```
 *
 * @module
 */
import type { Ffi } from "./types.ts";

export type * from "./types.ts";

/** The JavaScript runtime this process runs on. */
export function currentRuntime(): "node" | "bun" | "deno" {
  const g = globalThis as { Bun?: unknown; Deno?: unknown };
  if (g.Bun !== undefined) return "bun";
  if (g.Deno !== undefined) return "deno";
  return "node";
}

let cached: Promise<Ffi> | undefined;

/** Load (once) the FFI backend of the current runtime. */
export function loadFfi(): Promise<Ffi> {
  cached ??= (async () => {
    switch (currentRuntime()) {
      case "bun":
        return (await import("./bun.ts")).createBunFfi();
      case "deno":
        return (await import("./deno.ts")).createDenoFfi();
      default:
        return (await import("./node.ts")).createNodeFfi();
    }
  })();
  return cached;
}

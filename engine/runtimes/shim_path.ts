/**
 * The environment that applies the shim for adapters: shim/build.ts's `shimEnv` with the library
 * path from the adapter options, else {@link defaultShimPath} (SPILLWAY_SHIM, else the shim's
 * content-addressed build location; `spillway run` builds it there before launch, see commands/run.ts).
 *
 * @module
 */
import { shimEnv, shimLibraryPath } from "../../shim/build.ts";
import type { ShimSettings } from "../../core/types.ts";
import type { AdapterOptions } from "./adapter.ts";

/** Where the shim library is (or will be built): SPILLWAY_SHIM, else the content-addressed cache. */
export function defaultShimPath(): string {
  return shimLibraryPath();
}

/**
 * Environment applying `shim` (none when null). `LD_PRELOAD` holds only the shim; the launcher
 * appends any LD_PRELOAD spillway itself runs with.
 */
export function shimEnvironment(shim: ShimSettings | null, options?: AdapterOptions): Record<string, string> {
  if (shim === null) return {};
  return shimEnv(shim, options?.shimPath ?? defaultShimPath());
}

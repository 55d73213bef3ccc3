/**
 * Where adapters get the shim library path from, and the environment that applies it.
 *
 * @module
 */
import type { ShimSettings } from "../types.ts";
import type { AdapterOptions } from "./adapter.ts";
import { shimEnvFor } from "./shim_env.ts";
import { fileURLToPath } from "node:url";

/** The shim library spillway builds (shim/build.ts owns building it). */
export function defaultShimPath(): string {
  // TODO(shim/build.ts): switch to locateShim() once it lands.
  return fileURLToPath(new URL("../../shim/build/libspillway.so", import.meta.url));
}

/** Environment applying `shim` (none when null), with the shim path from options or the default. */
export function shimEnvironment(shim: ShimSettings | null, options?: AdapterOptions): Record<string, string> {
  if (shim === null) return {};
  return shimEnvFor(shim, options?.shimPath ?? defaultShimPath());
}

/**
 * Where spillway keeps what it makes: one cache directory for models, measured profiles,
 * autotune outcomes, built native helpers and kernel module builds.
 *
 * @module
 */
import { homedir } from "node:os";
import { isAbsolute, join } from "node:path";
import process from "node:process";

/**
 * spillway's cache directory: `$SPILLWAY_CACHE`, else `$XDG_CACHE_HOME/spillway`, else
 * `~/.cache/spillway`.
 *
 * @example
 * ```ts
 * import { cacheDir } from "./paths.ts";
 * console.log(cacheDir()); // e.g. /home/me/.cache/spillway
 * ```
 */
export function cacheDir(env: Record<string, string | undefined> = process.env): string {
  if (env.SPILLWAY_CACHE) return env.SPILLWAY_CACHE;
  const xdg = env.XDG_CACHE_HOME;
  return join(xdg && isAbsolute(xdg) ? xdg : join(homedir(), ".cache"), "spillway");
}

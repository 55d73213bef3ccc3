/**
 * The measured profile `spillway bench` writes: `~/.cache/spillway/hardware.json`, in the
 * HardwareProfile shape with source `bench`.
 *
 * @module
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { HardwareProfile } from "../../core/types.ts";
import { cacheDir } from "../../core/paths.ts";

/** Path of the measured profile. */
export function measuredProfilePath(): string {
  return join(cacheDir(), "hardware.json");
}

/** Why a cached profile was not used, or the profile. */
export type CachedProfile = { profile: HardwareProfile } | { profile: null; why: string };

/** Check the parts of the shape the planner relies on; returns what is wrong, or null. */
export function profileShapeError(p: unknown): string | null {
  if (typeof p !== "object" || p === null) return "not an object";
  const o = p as Record<string, any>;
  if (typeof o.name !== "string") return "name is not a string";
  if (typeof o.host !== "object" || o.host === null) return "host is missing";
  for (const k of ["ramBytes", "availableRamBytes", "ramGBps", "cpuCores", "cpuGflops"]) {
    if (typeof o.host[k] !== "number") return `host.${k} is not a number`;
  }
  if (o.gpu !== null) {
    if (typeof o.gpu !== "object") return "gpu is neither null nor an object";
    for (const k of ["vramBytes", "freeVramBytes", "vramGBps", "fp16Tflops", "h2dGBps", "d2hGBps", "zeroCopyGBps"]) {
      if (typeof o.gpu[k] !== "number") return `gpu.${k} is not a number`;
    }
  }
  return null;
}

/** Read the measured profile at `path` (default {@link measuredProfilePath}). Never throws. */
export async function readMeasuredProfile(path: string = measuredProfilePath()): Promise<CachedProfile> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch {
    return { profile: null, why: `${path} does not exist` };
  }
  let p: unknown;
  try {
    p = JSON.parse(text);
  } catch (e) {
    return { profile: null, why: `${path} is not JSON (${(e as Error).message})` };
  }
  const bad = profileShapeError(p);
  if (bad !== null) return { profile: null, why: `${path} is not a hardware profile: ${bad}` };
  const profile = p as HardwareProfile;
  profile.disk ??= { readGBps: 2 };
  return { profile };
}
